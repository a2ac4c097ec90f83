"""Study and comparison reports: mean ± std over seeds per grid point, curves with shaded spread,
the confusion matrix and misclassified images of the best point. Reads only the run store.

A cross-validation (a study record with ``folds``, sweeps.py) has the folds as its spread: mean ±
std over the K fold runs of each point, of their validation metrics (no fold run sees the test
set), and the point with the best mean is named as chosen, with the command that trains it on all
the training data and measures it once on test."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from practicum import fileio
from practicum.report import CURVE_METRICS, plots
from practicum.report.classification import classification_figures
from practicum.report.render import Code, Document, Heading, Image, Paragraph, Table, to_html, to_markdown
from practicum.store import Index, RunRecord, read_metrics


def mean_std(values: list[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (n - 1; 0 for one value) and n, ignoring NaN."""
    vals = [v for v in values if v is not None and not math.isnan(v)]
    if not vals:
        return math.nan, math.nan, 0
    return statistics.fmean(vals), (statistics.stdev(vals) if len(vals) > 1 else 0.0), len(vals)


def fmt_mean_std(values: list[float]) -> str:
    """``mean ± std``; one value has no spread to show, and a count (parameters) stays a count."""
    m, s, n = mean_std(values)
    if n == 0:
        return "—"
    if s == 0 and m == int(m) and abs(m) >= 1000:
        return f"{int(m):,}"
    if n == 1:
        return f"{m:.4f}"
    return f"{m:.4f} ± {s:.4f}"


def group_runs(record: dict, index: Index) -> list[tuple[dict, list, list[RunRecord]]]:
    """[(point, trials, finished runs)] in grid order, from a study.json record."""
    groups: dict[str, tuple[dict, list, list]] = {}
    for t in record["trials"]:
        key = repr(sorted(t["point"].items()))
        point, trials, runs = groups.setdefault(key, (t["point"], [], []))
        trials.append(t)
        done = [r for r in index.by_hash(t["config_hash"]) if r.status == "finished"]
        if done:
            runs.append(done[-1])
    return list(groups.values())


def label(point: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items()) or "base"


def summary_metrics(groups, preferred: list[str]) -> list[str]:
    present = {k for _, _, runs in groups for r in runs for k in r.summary}
    order = [m for m in preferred if m in present]
    order += [m for m in ("test/accuracy", "test/loss", "train/accuracy", "train/loss",
                          "train/seconds_per_epoch", "model/parameters") if m in present and m not in order]
    return order or sorted(present)


def results_table(groups, metrics: list[str], varied: list[str], first: str = "first seed", over: str = "") -> Table:
    rows = []
    for point, trials, runs in groups:
        row = [point.get(k) for k in varied] + [len(runs)]
        row += [fmt_mean_std([r.summary.get(m, math.nan) for r in runs]) for m in metrics]
        row.append(trials[0]["command"] if trials else "")
        rows.append(row)
    return Table([*varied, "n", *[f"{m} (mean ± std{over})" for m in metrics], f"command ({first})"], rows)


# ---------------------------------------------------------------------------------------------
# Cross-validation: the folds are the spread, the best mean validation metric chooses

CV_METRICS = ["val/accuracy", "val/loss"]  # what a fold run measures (it has no test split)


def lower_is_better(metric: str) -> bool:
    return "loss" in metric or "perplexity" in metric


def cv_metric(record: dict) -> str:
    """The metric that chooses: the study's ``select``, else its first val/ metric, else val/accuracy."""
    return record.get("select") or next((m for m in record.get("metrics", []) if m.startswith("val/")),
                                        "val/accuracy")


def cv_choice(record: dict, groups) -> dict | None:
    """The point with the best mean ``cv_metric`` over its fold runs, and how far the runner-up is.

    The gap to the runner-up is paired: both points ran on the same folds (and seeds), so the
    per-fold differences carry its spread; ``gap_se`` is their standard error (n - 1).
    """
    metric = cv_metric(record)
    scored = []
    for point, trials, runs in groups:
        fold_of = {t["config_hash"]: (t["seed"], t.get("fold")) for t in trials}
        values = {fold_of[r.config_hash]: r.summary.get(metric, math.nan) for r in runs}
        m, s, n = mean_std(list(values.values()))
        if n:
            scored.append(dict(point=point, mean=m, std=s, n=n, values=values,
                               final_command=trials[0].get("final_command", trials[0]["command"])))
    if not scored:
        return None
    scored.sort(key=lambda c: c["mean"], reverse=not lower_is_better(metric))
    best = dict(scored[0], metric=metric, runner_up=None)
    if len(scored) > 1:
        other = scored[1]
        common = [k for k in best["values"] if k in other["values"]]
        gaps = [best["values"][k] - other["values"][k] for k in common]
        d, sd, n = mean_std(gaps)
        best["runner_up"] = dict(point=other["point"], mean=other["mean"], std=other["std"], n=other["n"],
                                 gap=d, gap_se=sd / math.sqrt(n) if n > 1 else math.nan, paired=n)
    return best


def cv_blocks(record: dict, groups) -> list:
    choice = cv_choice(record, groups)
    if choice is None:
        return [Heading("Chosen by cross-validation"), Paragraph("No fold run has finished yet.")]
    metric, k = choice["metric"], record["folds"]
    found = f"{choice['mean']:.4f} ± {choice['std']:.4f} (n = {choice['n']})"
    if len(groups) == 1:  # one point: nothing to choose, the folds estimate how well it generalises
        return [Heading("Cross-validation estimate"),
                Paragraph(f"Mean {metric} over the {k} folds: {found}. The final model, trained on all the "
                          "training data (no folds) and measured once on the test set:"),
                Code(choice["final_command"], "bash")]
    text = f"Chosen by the best mean {metric} over the {k} folds: {label(choice['point'])}, {found}."
    r = choice["runner_up"]
    if r:
        text += f" Runner-up: {label(r['point'])}, {r['mean']:.4f} ± {r['std']:.4f}."
        if r["gap"] == 0:
            text += " The two tie on the mean; the first in grid order is taken."
        else:
            text += (f" The gap over the same {r['paired']} folds is {r['gap']:+.4f} ± {r['gap_se']:.4f} (standard "
                     "error of the paired differences)")
            text += (": under two standard errors, so the folds cannot tell the two apart." if
                     not abs(r["gap"]) > 2 * r["gap_se"] else ".")
    return [Heading("Chosen by cross-validation"), Paragraph(text),
            Paragraph("Train the chosen point on all the training data (no folds) and measure it once on the "
                      "test set:"), Code(choice["final_command"], "bash")]


def aligned_curves(runs: list[RunRecord], name: str, split: str):
    """x values common to every run and the (n_runs, n_x) matrix of the metric at those x."""
    per_run = []
    for r in runs:
        xs, ys = plots.series(read_metrics(Path(r.dir))).get(name, {}).get(split, ([], []))
        per_run.append(dict(zip(xs, ys)))
    if not per_run or not all(per_run):
        return None, None
    common = sorted(set.intersection(*(set(d) for d in per_run)))
    if not common:
        return None, None
    return np.array(common, float), np.array([[d[x] for x in common] for d in per_run], float)


UNIT_INTERVAL = {"accuracy", "label_accuracy", "f1", "f1_macro", "precision", "recall", "map", "auc"}


def metric_range(name: str) -> tuple[float, float]:
    """What a curve's values can be: [0, 1] for rates and scores, [0, inf) for losses."""
    if name in UNIT_INTERVAL:
        return 0.0, 1.0
    if "loss" in name or name in ("perplexity", "lr"):
        return 0.0, np.inf
    return -np.inf, np.inf


def spread_figure(groups, name: str, path: Path, title: str) -> Path | None:
    """One panel per split; a line per grid point (mean over seeds) with a ±std band."""
    splits = sorted({r["split"] for _, _, runs in groups for run in runs
                     for r in read_metrics(Path(run.dir)) if r["name"] == name})
    splits = [s for s in ("train", "val", "test") if s in splits] + [s for s in splits if s not in ("train", "val", "test")]
    if not splits:
        return None
    fig, axes = plots.plt.subplots(1, len(splits), figsize=(5.5 * len(splits), 4), squeeze=False)
    keys = list(groups[0][0]) if groups else []
    for ax, split in zip(axes[0], splits):
        for point, _, runs in groups:
            xs, ys = aligned_curves(runs, name, split)
            if xs is None:
                continue
            mean = np.nanmean(ys, 0)
            short = ", ".join(str(v) for v in point.values()) or "base"  # the keys go in the legend title
            (line,) = ax.plot(xs, mean, marker="o" if len(xs) <= 5 else None, label=f"{short} (n={len(runs)})")
            if len(runs) > 1:
                std = np.nanstd(ys, 0, ddof=1)
                lo, hi = metric_range(name)  # a ±std band stays inside what the metric can be
                ax.fill_between(xs, np.clip(mean - std, lo, hi), np.clip(mean + std, lo, hi),
                                color=line.get_color(), alpha=0.2)
        ax.set_title(f"{split} {name}")
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        if name == "loss":
            finite = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v) and v > 0]
            if finite and max(finite) / min(finite) > 50:
                ax.set_yscale("log")
        if name == "lr":  # rates a decade or more apart (Adam's 1e-3 beside Adadelta's 1.0)
            values = [v for line in ax.get_lines() for v in line.get_ydata() if np.isfinite(v)]
            if values and min(values) > 0 and max(values) / min(values) >= 10:
                ax.set_yscale("log")
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:  # one legend for all panels, below them, so it never hides a curve
        fig.legend(handles, labels, title=", ".join(keys) or None, loc="upper center",
                   bbox_to_anchor=(0.5, 0.02), ncol=min(len(labels), 4), fontsize=8, title_fontsize=8)
    fig.suptitle(title)
    return plots.save(fig, path)


def study_document(record: dict, index: Index, out_dir: Path) -> tuple[Document, list[list]]:
    groups = group_runs(record, index)
    varied = record.get("axes") or list(record["grid"])
    folds = record.get("folds")
    metrics = summary_metrics(groups, record.get("metrics") or (CV_METRICS if folds else []))
    doc = Document(f"Study {record['name']}")
    n_done = sum(len(runs) for _, _, runs in groups)
    if folds:
        seeds = len({t["seed"] for t in record["trials"]})
        spread = (f"Each point runs as {folds} folds of the training set (data.folds = {folds}, contiguous): "
                  f"fold k is the split 'val', the other {folds - 1} train; no fold run looks at the test set. "
                  "Spread is the sample standard deviation over folds (n − 1)"
                  + (f", {seeds} seeds each." if seeds > 1 else "."))
    else:
        spread = "Spread is the sample standard deviation over seeds (n − 1)."
    doc.add(Paragraph(record.get("description") or ""),
            Paragraph(f"Base experiment: {record['experiment']}. Varied: "
                      + (", ".join(f"{k} ∈ {values}" for k, values in record["grid"].items()) or "nothing")
                      + f". Trials finished: {n_done} of {len(record['trials'])}. " + spread))
    table = (results_table(groups, metrics, varied, "first fold", " over folds") if folds
             else results_table(groups, metrics, varied))
    doc.add(Heading("Results"), table)
    if folds:
        doc.add(*cv_blocks(record, groups))
    figures = out_dir / "figures"
    for name in CURVE_METRICS:
        fig = spread_figure(groups, name, figures / f"compare_{name}.png", f"{record['name']}: {name}")
        if fig:
            over = "folds" if folds else "seeds"
            doc.add(Heading(f"Curves: {name}", 3), Image(fig, f"{name} per varied value, mean ± std over {over}"))
    from practicum.report import multilabel, stability

    doc.add(*multilabel.study_figures(groups, figures))  # multi-label runs: PR curves and their overlay
    doc.add(*stability.study_figures(groups, figures))  # runs that recorded per-layer gradient norms
    best = best_run(groups, metrics[0] if metrics else None)
    if best:
        imgs = classification_figures(best.dir, figures, f"best point ({best.id})")
        if imgs:
            doc.add(Heading("Best point: errors"), *imgs)
    if record.get("claims"):
        doc.add(Heading("The seed's conclusions, checked"), *claims_blocks(record, groups, index, figures))
    doc.add(Heading("Reproduce"), Code("\n".join(t["command"] for t in record["trials"]), "bash"))
    return doc, [table.columns, *table.rows]


def matches(value, wanted) -> bool:
    """A grid value against a claim's (TOML) value: 0 == 0.0, lists element by element."""
    if isinstance(wanted, list) and isinstance(value, list):
        return len(value) == len(wanted) and all(matches(v, w) for v, w in zip(value, wanted))
    if isinstance(wanted, (int, float)) and isinstance(value, (int, float)) and not isinstance(wanted, bool):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return value == wanted


def curve(run: RunRecord, metric: str) -> list[float]:
    """A summary metric's curve ``split/name`` from the run's metrics, in step order."""
    split, _, name = metric.partition("/")
    rows = [r for r in read_metrics(Path(run.dir)) if r["split"] == split and r["name"] == name]
    return [r["value"] for r in sorted(rows, key=lambda r: r["step"])]


def study_sampler(groups, index: Index):
    """claims.evaluate's view of a study: the finished runs of the grid points a selector matches."""
    from practicum.claims import Sample, selector_label

    def sample(selector: dict, metric: str, with_curves: bool) -> "Sample":
        runs, failed = [], 0
        for point, trials, finished in groups:
            if all(k in point and matches(point[k], v) for k, v in selector.items()):
                runs += finished
                done = {r.config_hash for r in finished}
                failed += sum(1 for t in trials if t["config_hash"] not in done
                              and any(r.status == "failed" for r in index.by_hash(t["config_hash"])))
        values = [r.summary[metric] for r in runs if isinstance(r.summary.get(metric), (int, float))]
        finite = [v for v in values if math.isfinite(v)]
        return Sample(selector_label(selector), finite, failed + len(values) - len(finite),
                      [curve(r, metric) for r in runs] if with_curves else [])

    return sample


def claims_blocks(record: dict, groups, index: Index, figures: Path) -> list:
    """A table of the study's claims (the seed's words, our verdict, the evidence) and their figures."""
    from practicum.claims import Claim, evaluate

    rows, shown = [], []
    for c in record["claims"]:
        v = evaluate(Claim.model_validate(c), study_sampler(groups, index))
        rows.append([v.claim.text, v.claim.seed_says or "—", v.verdict, "; ".join(v.evidence)])
        path = figures / f"{v.claim.figure}.png" if v.claim.figure else None
        if path and path.exists() and path not in shown:
            shown.append(path)
    return [Table(["claim", "the seed says", "verdict", "evidence (mean ± std over seeds, n)"], rows,
                  "Verdicts (scipy.stats, α = 0.05 unless the claim says otherwise): Welch's t-test for one "
                  "thing beating another, TOST within the claim's margin for 'the same', a claim's several "
                  "comparisons Holm-adjusted; 'cannot tell' says the seeds per side that would resolve it"),
            *[Image(p, p.stem.replace("_", " ")) for p in shown]]


def best_run(groups, metric: str | None) -> RunRecord | None:
    runs = [r for _, _, rs in groups for r in rs]
    if not runs or not metric:
        return None
    lower_better = "loss" in metric or "perplexity" in metric
    valid = [r for r in runs if not math.isnan(r.summary.get(metric, math.nan))]
    if not valid:
        return None
    return (min if lower_better else max)(valid, key=lambda r: r.summary[metric])


def write_study_report(study_dir: Path, index: Index | None = None) -> tuple[Path, Path, Path]:
    """report.md, report.html and results.csv in the study's directory."""
    import csv
    import io

    index = index or Index()
    record = fileio.read_json(study_dir / "study.json")
    doc, table = study_document(record, index, study_dir)
    md, page, results = study_dir / "report.md", study_dir / "report.html", study_dir / "results.csv"
    fileio.write_text(md, to_markdown(doc, study_dir))
    fileio.write_text(page, to_html(doc))
    buf = io.StringIO()
    csv.writer(buf).writerows(table)
    fileio.write_text(results, buf.getvalue())
    return md, page, results


def compare_document(records: list[RunRecord], out_dir: Path) -> Document:
    """Any runs side by side: their curves overlaid and their final metrics in one table."""
    doc = Document("Comparison: " + ", ".join(r.id for r in records))
    keys = sorted({k for r in records for k in r.summary})
    doc.add(Heading("Final metrics"),
            Table(["run", "experiment", "status", *keys],
                  [[r.id, r.experiment, r.status, *(r.summary.get(k) for k in keys)] for r in records]))
    groups = [({"run": f"{r.experiment} {r.id}"}, [], [r]) for r in records]
    for name in CURVE_METRICS:
        fig = spread_figure(groups, name, out_dir / "figures" / f"compare_{name}.png", f"comparison: {name}")
        if fig:
            doc.add(Heading(f"Curves: {name}", 3), Image(fig, name))
    doc.add(Heading("Reproduce"), Code("\n".join(r.command or "" for r in records), "bash"))
    return doc


def write_compare_report(records: list[RunRecord], out_dir: Path) -> tuple[Path, Path]:
    doc = compare_document(records, out_dir)
    md, page = out_dir / "report.md", out_dir / "report.html"
    fileio.write_text(md, to_markdown(doc, out_dir))
    fileio.write_text(page, to_html(doc))
    return md, page
