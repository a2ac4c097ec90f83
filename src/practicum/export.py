r"""``practicum export RUN|STUDY|REPRODUCTION --format csv|parquet|json|latex``: the numbers as tables.

A run gives ``<id>.metrics`` (one row per logged value: step, epoch, split, name, value, time) and
``<id>.summary`` (one row: every final metric). A study gives ``<name>.results`` (per grid point and
metric: mean, std, n), ``<name>.trials`` (one row per trial with its grid values, seed, run id and
summary) and ``<name>.metrics`` (every trial's metrics, with its grid values and seed). A
reproduction (``000``, ``004-quick``: a folder of ``<runs>/reproductions``) gives ``<name>.results``
and ``<name>.claims``, its report's two tables. TensorBoard exports one chart's CSV at a time
(tensorboard#4925); this is every number at once.

``--format latex`` writes the tables a lab report shows, ready to ``\input``: booktabs rules
(``\usepackage{booktabs}``), numbers right-aligned with 4 significant digits, a study's points as
mean ± std (n). A run: its final metrics; a study: its results; a reproduction: results and claims.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from practicum.errors import UsageError

FORMATS = ("csv", "parquet", "json", "latex")


def write(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
    if fmt == "latex":
        return write_latex(frame, path)
    path = path.with_name(f"{path.name}.{fmt}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if fmt == "csv":
        frame.to_csv(tmp, index=False)
    elif fmt == "parquet":
        frame.to_parquet(tmp, index=False)
    else:
        frame.to_json(tmp, orient="records", indent=1)
    tmp.replace(path)  # atomic: a reader never sees half a file
    return path


def flat_results(results: pd.DataFrame) -> pd.DataFrame:
    """(metric, stat) columns as ``metric/mean``, ``metric/std``, ``metric/n``; the grid point as columns."""
    out = results.copy()
    out.columns = [f"{metric}/{stat}" for metric, stat in out.columns]
    return out.reset_index()


def export(ref: str, fmt: str, out: Path) -> list[Path]:
    from practicum import api
    from practicum.reproduce import reproductions_dir
    from practicum.sweeps import studies_dir

    if fmt not in FORMATS:
        raise UsageError(f"export: unknown format '{fmt}': use {', '.join(FORMATS)}")
    if (reproductions_dir() / ref / "report.md").is_file() and not (studies_dir() / ref / "study.json").is_file():
        frames, stem = reproduction_frames(reproductions_dir() / ref), f"reproduction-{ref}"
    elif (studies_dir() / ref / "study.json").is_file():
        study = api.load_study(ref)
        trials = study.trials
        axes = [a for a in study.record.get("axes", []) if a in trials.columns]
        metrics = []
        for _, t in trials[trials["run"].notna()].iterrows():
            m = api.metrics_frame(Path(api.load(t["run"]).dir))
            metrics.append(m.assign(run=t["run"], seed=t["seed"], **{a: str(t[a]) for a in axes}))
        frames = {"results": flat_results(study.results), "trials": stringify(trials),
                  "metrics": pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame()}
        if fmt == "latex":  # the write-up's table: a point per row, mean ± std (n) per metric
            frames = {"results": mean_std_table(study.results)}
        stem = study.name
    else:
        run = api.load(ref)
        frames = {"metrics": run.metrics, "summary": pd.DataFrame([{"run": run.id, **run.summary}])}
        if fmt == "latex":  # the final metrics, one per row
            frames = {"summary": pd.DataFrame({"metric": list(run.summary), "value": list(run.summary.values())})}
        stem = run.id
    return [write(frame, out / f"{stem}.{name}", fmt) for name, frame in frames.items()]


def stringify(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists in cells (a grid value such as layer widths) as text: Parquet and CSV want scalars."""
    return frame.apply(lambda col: col.map(lambda v: str(v) if isinstance(v, (list, dict)) else v))


def reproduction_frames(folder: Path) -> dict[str, pd.DataFrame]:
    """A reproduction's Results and Claims, as its report.md tables them."""
    from practicum.report.site import md_table

    text = (folder / "report.md").read_text(encoding="utf-8")
    frames = {}
    for name, heading in (("results", "Results"), ("claims", "Claims")):
        table = md_table(text, heading)
        if table:
            frames[name] = pd.DataFrame(table[1], columns=table[0])
    return frames


def mean_std_table(results: pd.DataFrame) -> pd.DataFrame:
    """A study's results as text cells: ``0.9812 ± 0.0021 (3)`` per metric, the grid point first."""
    out = pd.DataFrame(index=results.index)
    for metric in dict.fromkeys(m for m, _ in results.columns):
        cells = []
        for mean, std, n in zip(results[(metric, "mean")], results[(metric, "std")], results[(metric, "n")]):
            cells.append("—" if not n else f"{mean:.4g}" if n == 1 or pd.isna(std) else f"{mean:.4g} ± {std:.2g} ({n:.0f})")
        out[metric] = cells
    return out.reset_index()


LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                  "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$",
                  "Δ": r"$\Delta$", "§": r"\S{}", "—": "---", "–": "--", "≥": r"$\geq$", "≤": r"$\leq$",
                  "√": r"$\surd$", "✓": r"$\surd$", "✗": r"$\times$", "−": "$-$"}


def latex_text(value) -> str:
    if isinstance(value, float):
        return "" if pd.isna(value) else f"{value:.4g}"
    return "".join(LATEX_SPECIALS.get(ch, ch) for ch in ("" if value is None else str(value)))


def latex_table(frame: pd.DataFrame, caption: str = "") -> str:
    """A booktabs tabular: text columns left, number columns right, no vertical rules."""
    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = [r"\begin{table}[ht]", r"\centering", r"\small"]
    if caption:
        lines.append(rf"\caption{{{latex_text(caption)}}}")
    lines += [r"\begin{tabular}{" + "".join("r" if n else "l" for n in numeric) + "}", r"\toprule",
              " & ".join(latex_text(c) for c in frame.columns) + r" \\", r"\midrule"]
    for row in frame.itertuples(index=False):
        lines.append(" & ".join(latex_text(v) for v in row) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    return "\n".join(lines)


def write_latex(frame: pd.DataFrame, path: Path) -> Path:
    from practicum import fileio

    path = path.with_name(f"{path.name}.tex")
    fileio.write_text(path, latex_table(stringify(frame), path.stem.replace(".", " ")))
    return path
