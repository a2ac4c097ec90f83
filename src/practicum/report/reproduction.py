"""The report of a reproduction: a seed report regenerated in its own order, from the run store.

    Results       one row per seed number: ours (mean ± std, n) | the seed's | Δ | verdict | source | command | wall
    Claims        every conclusion of the seed, our verdict and its evidence
    Sections      in the seed's order: its rows, its figures regenerated, its claims, the models' traits

Verdicts on numbers: our mean's 95 % t-based confidence interval over seeds (scipy.stats, in
practicum/stats.py) against the seed's number: ``above`` / ``below`` when the interval excludes
it, on the better / worse side in the metric's direction (for a loss or perplexity, above =
lower), else ``within``. One seed has no interval: the sign alone, said as such. A reported range
is reached when the interval overlaps it (``within the reported range``) or lies on its better
side (``above the reported range``).

Verdicts on claims (claims.py): Welch's t-test for greater / order / faster, TOST within the
claim's margin for same / plateau, at α = 0.05 unless the claim says otherwise, several
comparisons of one claim Holm-adjusted; each evidence line gives the test, t, df, p, n per side,
α and the margin, and a ``cannot tell`` the seeds per side that would resolve it.
"""

from __future__ import annotations

import math
import shutil
import statistics
from pathlib import Path

from practicum import fileio, stats
from practicum.claims import Claim, Sample, Verdict, evaluate, selector_label
from practicum.config import load_experiment
from practicum.report.render import Code, Document, Heading, Image, Paragraph, Table, to_html, to_markdown
from practicum.store import Index, RunRecord

NOTE = ("Each number is ours, mean ± sample standard deviation over seeds (n), beside the seed report's "
        "(or the published reference named as its source); its verdict is above or below when our mean's 95 % "
        "t-interval excludes the seed's number (better or worse in the metric's direction), else within (one "
        "seed: no interval, the sign alone); a reported range is reached when the interval overlaps it or lies "
        "above it. Claims are tested with scipy.stats at α = 0.05 unless a claim says otherwise: Welch's t-test "
        "for one thing beating another (greater, order, faster), TOST within the claim's stated margin for "
        "'the same' (same, plateau), the p-values of a claim's several comparisons Holm-adjusted. A claim holds, "
        "does not hold, or cannot tell at these seeds; a 'cannot tell' says how many seeds per side would "
        "resolve it (80 % power at the observed gap and spread).")


def number_verdict(values: list[float], reference: float, rng, higher_is_better: bool) -> str:
    """``above`` / ``within`` / ``below`` the seed's number (or its reported range), from our
    mean's 95 % t-interval, with the interval in brackets (one seed: the sign alone)."""
    if not values:
        return "not run"
    mean = statistics.fmean(values)
    ci = stats.interval(values)
    low, high = ci or (mean, mean)
    shown = f"95 % CI {low:.4f}–{high:.4f}" if ci else "one seed: no interval"
    shown += "" if higher_is_better else "; lower is better"
    if not higher_is_better:  # mirror: 'above' is the better side, here the lower numbers
        low, high, reference = -high, -low, -reference
        rng = (-rng[0], -rng[1]) if rng else None
    if rng:
        if low <= max(rng) and high >= min(rng):
            return f"within the reported range ({shown})"
        return f"{'above' if low > max(rng) else 'below'} the reported range ({shown})"
    if low > reference:
        return f"above ({shown})"
    if high < reference:
        return f"below ({shown})"
    return f"within ({shown})"


def fmt_values(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.4f} (n=1)"
    return f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f} (n={len(values)})"


def entry_runs(plan, entry: str) -> list[RunRecord]:
    return [j.done for j in plan.entries.get(entry, []) if j.done is not None]


def result_rows(plan) -> list[list]:
    seed = plan.reproduction.seed
    rows = []
    for section in plan.reproduction.sections:
        for entry in section.entries:
            cfg = load_experiment(entry)
            runs = entry_runs(plan, entry)
            jobs = plan.entries.get(entry, [])
            for r in (r for r in cfg.reproduces if r.seed == seed):
                values = [run.summary[r.metric] for run in runs
                          if isinstance(run.summary.get(r.metric), (int, float)) and math.isfinite(run.summary[r.metric])]
                reference = f"{r.value:.4g}" if not r.range else f"{r.range[0]:.4g}–{r.range[1]:.4g}"
                delta = f"{statistics.fmean(values) - r.value:+.4f}" if values else "—"
                seeds = f" --seed {{0..{len(jobs) - 1}}}" if len(jobs) > 1 else ""
                wall = statistics.fmean([x.duration for x in runs if x.duration]) if runs else None
                rows.append([f"§{section.id}", r.what, r.metric, fmt_values(values), reference, delta,
                             number_verdict(values, r.value, r.range, r.higher_is_better), r.source,
                             f"practicum run {entry}{' --quick' if plan.quick else ''}{seeds}",
                             f"{wall:.0f} s" if wall else "—"])
    return rows


def entry_sampler(plan):
    """claims.evaluate's view of entries: ``{entry = ..., key = ...}`` selects the entry's runs
    (the reproduction's seeds) and, with ``key``, another summary value than the claim's metric."""

    def sample(selector: dict, metric: str, with_curves: bool) -> Sample:
        from practicum.report.study import curve

        runs = entry_runs(plan, selector["entry"])
        key = selector.get("key", metric)
        values = [r.summary[key] for r in runs if isinstance(r.summary.get(key), (int, float))]
        finite = [v for v in values if math.isfinite(v)]
        return Sample(selector_label(selector), finite, len(values) - len(finite),
                      [curve(r, key) for r in runs] if with_curves else [])

    return sample


def section_claims(plan, section, index: Index) -> list[tuple[Verdict, str]]:
    """(verdict, where) for the section's own claims and those of its studies."""
    from practicum.report.study import group_runs, study_sampler
    from practicum.sweeps import studies_dir

    out = [(evaluate(c, entry_sampler(plan)), ", ".join(dict.fromkeys(s.get("entry", "") for s in c.a + c.b + c.items)))
           for c in section.claims]
    for study in section.studies:
        record_path = studies_dir() / plan.studies[study].name / "study.json"
        if not record_path.exists():
            continue
        record = fileio.read_json(record_path)
        groups = group_runs(record, index)
        for c in record.get("claims", []):
            out.append((evaluate(Claim.model_validate(c), study_sampler(groups, index)), study))
    return out


def figure_files(plan, ref) -> list[Path]:
    from practicum.sweeps import studies_dir

    if ref.entry:
        runs = entry_runs(plan, ref.entry)
        folder = Path(runs[0].dir) / "figures" if runs else None
        if runs and not (folder / "curves.png").exists():  # trials run without their reports: draw them
            from practicum.report import write_run_report

            write_run_report(runs[0])
    else:
        folder = studies_dir() / plan.studies[ref.study].name / "figures" if ref.study in plan.studies else None
    if folder is None or not folder.is_dir():
        return []
    if "*" in ref.name:
        return sorted(folder.glob(ref.name))
    return [p for p in (folder / f"{ref.name}.png", folder / f"{ref.name}.gif") if p.exists()][:1]


def traits_rows(plan, section, index: Index) -> list[list]:
    """Parameters and seconds per epoch of the section's models (entries or a study's points)."""
    rows = []
    for entry in section.traits:
        runs = entry_runs(plan, entry)
        if runs:
            s = runs[0].summary
            rows.append([entry, s.get("model/parameters"), s.get("train/seconds_per_epoch"), s.get("test/accuracy")])
    if section.traits_study and section.traits_study in plan.studies:
        from practicum.report.study import group_runs, label
        from practicum.sweeps import studies_dir

        record = fileio.read_json(studies_dir() / plan.studies[section.traits_study].name / "study.json")
        for point, _, runs in group_runs(record, index):
            if runs:
                s = runs[0].summary
                rows.append([label(point), s.get("model/parameters"), s.get("train/seconds_per_epoch"),
                             statistics.fmean(r.summary.get("test/accuracy", math.nan) for r in runs)])
    return rows


def reproduction_document(plan, out_dir: Path, index: Index) -> Document:
    rep = plan.reproduction
    doc = Document(rep.title + (" — quick forms" if plan.quick else ""))
    doc.add(Paragraph(f"Regenerated by 'practicum reproduce {rep.seed}{' --quick' if plan.quick else ''}' from the run "
                      f"store, in the seed report's order (shared/seeds/{rep.file}). {NOTE}"
                      + (f" What the claims compare ran at {plan.seeds} seeds (--seeds {plan.seeds}, fixed before "
                         "the runs)." if plan.seeds else "")))
    rows = result_rows(plan)
    doc.add(Heading("Results"), Table(["§", "the seed's row", "metric", "ours", "seed", "Δ", "verdict", "source",
                                       "command", "wall (mean per run)"], rows))
    verdicts = {s.id: section_claims(plan, s, index) for s in rep.sections}
    claim_rows = [[f"§{sid}", v.claim.text, v.verdict, where] for sid, vs in verdicts.items() for v, where in vs]
    if claim_rows:
        doc.add(Heading("Claims"), Table(["§", "the seed's claim", "verdict", "checked on"], claim_rows))
    figures = out_dir / "figures"
    figures.mkdir(parents=True, exist_ok=True)  # a claim's figure may come before any section's
    for section in rep.sections:
        doc.add(Heading(f"§{section.id} {section.title}"))
        mine = [r for r in rows if r[0] == f"§{section.id}"]
        if mine:
            doc.add(Table(["§", "the seed's row", "metric", "ours", "seed", "Δ", "verdict", "source", "command", "wall"],
                          mine))
        for ref in section.figures:
            for path in figure_files(plan, ref):
                copy = figures / f"{ref.entry or ref.study}-{path.name}"
                shutil.copyfile(path, copy)
                doc.add(Image(copy, f"{ref.caption or path.stem} ({ref.entry or ref.study})"))
        for v, where in verdicts[section.id]:
            doc.add(Heading(f"Claim: {v.claim.text}", 3),
                    Paragraph(f"Verdict: {v.verdict}. The seed says: {v.claim.seed_says or v.claim.text}. "
                              f"Checked on {where}, by {read_by(v.claim)}.{tested_on(v.claim, plan)}"),
                    Table(["evidence"], [[line] for line in v.evidence]))
            fig = claim_figure(plan, v.claim, where)
            if fig:
                copy = figures / f"claim-{where}-{fig.name}"
                shutil.copyfile(fig, copy)
                doc.add(Image(copy, f"{fig.stem.replace('_', ' ')} ({where})"))
        traits = traits_rows(plan, section, index)
        if traits:
            doc.add(Heading("The models' traits", 3),
                    Table(["model", "parameters", "seconds per epoch", "test accuracy"], traits))
    commands = [f"practicum run {e}{' --quick' if plan.quick else ''} --seed {j.seed}"
                for e, jobs in plan.entries.items() for j in jobs]
    commands += [f"practicum sweep {s}{' --quick' if plan.quick else ''}" for s in plan.studies]
    doc.add(Heading("Reproduce"), Code(f"practicum reproduce {rep.seed}{' --quick' if plan.quick else ''}\n# = \n"
                                       + "\n".join(commands), "bash"))
    return doc


def tested_on(claim: Claim, plan) -> str:
    """The terms a claim is tested on, stated before its evidence: α, the margin, fixed seeds."""
    from practicum.reproduce import claim_seeds

    if claim.kind == "threshold":  # a bar every seed must clear: no test
        return ""
    text = f" α = {claim.alpha:g}"
    if claim.kind in ("same", "plateau"):
        text += (f"; equivalence margin ±{claim.margin:g} on {claim.metric} (TOST)" if claim.margin
                 else "; no equivalence margin declared")
    if claim_seeds(claim, plan.seeds):
        text += f"; {claim_seeds(claim, plan.seeds)} seeds per compared thing, fixed before the runs"
    return text + "."


def read_by(claim: Claim) -> str:
    """What a claim compares: its metric, or the summary values its entry selectors' ``key`` names."""
    return ", ".join(dict.fromkeys(s.get("key", claim.metric) for s in claim.a + claim.b + claim.items)) or claim.metric


def claim_figure(plan, claim: Claim, where: str) -> Path | None:
    from practicum.sweeps import studies_dir

    if not claim.figure or where not in plan.studies:
        return None
    path = studies_dir() / plan.studies[where].name / "figures" / f"{claim.figure}.png"
    return path if path.exists() else None


def write_reproduction_report(plan, out_dir: Path, index: Index | None = None) -> tuple[Path, Path]:
    index = index or Index()
    doc = reproduction_document(plan, out_dir, index)
    md, page = out_dir / "report.md", out_dir / "report.html"
    fileio.write_text(md, to_markdown(doc, out_dir))
    fileio.write_text(page, to_html(doc))
    return md, page
