"""``practicum export RUN|STUDY --format csv|parquet|json``: a run's or a study's numbers as tables.

A run gives ``<id>.metrics`` (one row per logged value: step, epoch, split, name, value, time) and
``<id>.summary`` (one row: every final metric). A study gives ``<name>.results`` (per grid point and
metric: mean, std, n), ``<name>.trials`` (one row per trial with its grid values, seed, run id and
summary) and ``<name>.metrics`` (every trial's metrics, with its grid values and seed). TensorBoard
exports one chart's CSV at a time (tensorboard#4925); this is every number at once.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from practicum.errors import UsageError

FORMATS = ("csv", "parquet", "json")


def write(frame: pd.DataFrame, path: Path, fmt: str) -> Path:
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
    from practicum.sweeps import studies_dir

    if fmt not in FORMATS:
        raise UsageError(f"export: unknown format '{fmt}': use {', '.join(FORMATS)}")
    if (studies_dir() / ref / "study.json").is_file():
        study = api.load_study(ref)
        trials = study.trials
        axes = [a for a in study.record.get("axes", []) if a in trials.columns]
        metrics = []
        for _, t in trials[trials["run"].notna()].iterrows():
            m = api.metrics_frame(Path(api.load(t["run"]).dir))
            metrics.append(m.assign(run=t["run"], seed=t["seed"], **{a: str(t[a]) for a in axes}))
        frames = {"results": flat_results(study.results), "trials": stringify(trials),
                  "metrics": pd.concat(metrics, ignore_index=True) if metrics else pd.DataFrame()}
        stem = study.name
    else:
        run = api.load(ref)
        frames = {"metrics": run.metrics, "summary": pd.DataFrame([{"run": run.id, **run.summary}])}
        stem = run.id
    return [write(frame, out / f"{stem}.{name}", fmt) for name, frame in frames.items()]


def stringify(frame: pd.DataFrame) -> pd.DataFrame:
    """Lists in cells (a grid value such as layer widths) as text: Parquet and CSV want scalars."""
    return frame.apply(lambda col: col.map(lambda v: str(v) if isinstance(v, (list, dict)) else v))
