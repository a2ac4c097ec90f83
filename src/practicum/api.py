"""Practicum from Python and from notebooks: the CLI's behaviour, returning objects.

    import practicum
    run = practicum.run("mnist-lenet", overrides={"optim.lr": 0.05}, quick=True)
    run.summary["test/accuracy"], run.metrics.head()       # a dict, a pandas DataFrame
    run                                                     # in Jupyter: the run's report, inline
    practicum.run("mnist-lenet", model=MyNet, quick=True)   # your own network (a class or an instance)
    practicum.runs(experiment="mnist-lenet")                # the index as a DataFrame
    study = practicum.sweep("study-mnist-optimizers", quick=True)
    study.results                                           # mean, std and n per grid point
    cv = practicum.sweep("fmnist-mlp", {"optim.weight_decay": [0, 1e-3]}, folds=5, quick=True)
    cv.results, cv.chosen                                   # mean ± std over the folds; the CV choice

Everything goes through the same code as the CLI: a finished config is reused by its identity,
an interrupted one resumed, errors are ``practicum.UsageError`` (what the CLI exits 2 for) and
``practicum.PracticumError`` (exit 1) carrying the CLI's one-line messages.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import pandas as pd

from practicum import fileio
from practicum.config import Experiment, load_experiment
from practicum.errors import UsageError
from practicum.store import Index, RunRecord, read_metrics

METRIC_COLUMNS = ["step", "epoch", "split", "name", "value", "time"]


def configure(experiment: str | Path, overrides: dict[str, Any] | None = None, seed: int | None = None,
           quick: bool = False, model=None) -> Experiment:
    """A validated experiment config (catalog name or file), overrides applied as ``-o`` would.
    ``model``: your own ``nn.Module`` class or instance, in place of the entry's model."""
    from practicum.sweeps import override_text

    items = [override_text(k, v) for k, v in (overrides or {}).items()]
    if model is not None:
        from practicum.models import user

        try:
            items.append(override_text("model.name", user.register(model)))
        except ValueError as e:
            raise UsageError(str(e)) from None
        if not isinstance(model, type):  # an instance is built already: no constructor options
            items.append(override_text("model.options", {}))
    return load_experiment(str(experiment), items, seed=seed, quick=quick)


def _quiet(message: str, err: bool = False) -> None:
    import sys

    print(message, file=sys.stderr)


def run(experiment: str | Path | Experiment, overrides: dict[str, Any] | None = None, *, seed: int | None = None,
        force: bool = False, quick: bool = False, model=None, report: bool = True, deps: bool = True,
        site: bool = True) -> "RunResult":
    """Run an experiment (catalog name, path, or a config from ``practicum.configure``) as
    ``practicum run`` does, and return its run. A finished run of the same config is returned as it is.
    ``deps``: first run (or reuse) what it reads (``--no-deps``: False); ``site``: refresh <runs>/site."""
    from practicum.execute import run_config

    if isinstance(experiment, Experiment):
        if overrides or seed is not None or quick or model is not None:
            raise UsageError("run(config): apply overrides, seed, quick and model in practicum.configure(...)")
        cfg = experiment
    else:
        cfg = configure(experiment, overrides, seed=seed, quick=quick, model=model)
    if deps:
        from practicum import deps as dependencies

        dependencies.bring(cfg, say=_quiet)
    try:
        _, record = run_config(cfg, force=force, report=report, say=_quiet)
    finally:
        if site:
            _refresh_site()
    return RunResult(record)


def _refresh_site() -> None:
    from practicum.report.site import refresh

    refresh()


def site(out: str | Path | None = None) -> Path:
    """Write (or bring up to date) the static site over the run store; returns its index.html."""
    from practicum.report.site import build

    return build(Path(out) if out else None)


def compare(*runs: str, all_keys: bool = False):
    """Runs side by side, as ``practicum compare`` shows them: a ``Comparison`` whose ``config``
    (the keys that differ; ``all_keys``: every key), ``metrics`` (final values, each with its Δ
    against the first run) and ``curves`` (every logged value) are DataFrames; ``diff`` is the
    unified diff of their config.toml files, ``source`` whether your model's source differs."""
    from practicum.report.compare import compare as comparison

    if len(runs) == 1 and isinstance(runs[0], (list, tuple)):
        runs = tuple(runs[0])
    index = Index()
    refs = [r.id if isinstance(r, RunResult) else str(r) for r in runs]
    return comparison([index.find(ref) for ref in refs], all_keys=all_keys)


def load(run_id: str) -> "RunResult":
    """A run by id, unique id prefix or run directory."""
    return RunResult(Index().find(run_id))


def runs(experiment: str | None = None, status: str | None = None) -> pd.DataFrame:
    """The run index: one row per run, its summary metrics as columns."""
    records = Index().list(experiment)
    if status:
        records = [r for r in records if r.status == status]
    rows = [{"id": r.id, "experiment": r.experiment, "status": r.status,
             "started": pd.Timestamp(r.started, unit="s"), "duration": r.duration, "headline": r.headline,
             "config_hash": r.config_hash, "dir": r.dir, **r.summary} for r in records]
    return pd.DataFrame(rows, columns=None if rows else ["id", "experiment", "status", "started", "duration",
                                                          "headline", "config_hash", "dir"])


class RunResult:
    """One recorded run, read from the run store."""

    def __init__(self, record: RunRecord):
        self.record = record

    id = property(lambda self: self.record.id)
    dir = property(lambda self: Path(self.record.dir))
    status = property(lambda self: self.record.status)
    experiment = property(lambda self: self.record.experiment)
    error = property(lambda self: self.record.error)

    @property
    def config(self) -> dict:
        """The resolved config the run ran with (its config.toml)."""
        from practicum.config import read_toml

        return read_toml(self.dir / "config.toml")

    @property
    def summary(self) -> dict:
        return dict(self.record.summary)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per logged value: step, epoch, split, name, value, time (wall clock)."""
        return metrics_frame(self.dir)

    @property
    def figures(self) -> dict[str, Path]:
        """Figure name -> file (PNG or GIF), written by the run or its report."""
        folder = self.dir / "figures"
        return {p.stem: p for p in sorted(folder.glob("*")) if p.suffix in (".png", ".gif")} if folder.is_dir() else {}

    def report(self) -> "Report":
        """Write (again) and return the run's report: Markdown and a self-contained HTML page."""
        from practicum.report import write_run_report

        return Report(*write_run_report(self.record))

    def refresh(self) -> "RunResult":
        self.record = Index().get(self.id) or self.record  # read from the run directory
        return self

    def __repr__(self) -> str:
        return f"<run {self.id} of {self.experiment}: {self.status}; {self.record.headline or ''}>"

    def _repr_html_(self) -> str:
        page = self.dir / "report.html"
        if not page.exists():
            self.report()
        return Report(self.dir / "report.md", page)._repr_html_()


class Report:
    def __init__(self, md: Path, html_path: Path):
        self.md, self.html = Path(md), Path(html_path)

    def __repr__(self) -> str:
        return f"<report {self.md}>"

    def _repr_html_(self) -> str:
        """The self-contained page in an iframe: its styles stay inside, its images are data URIs."""
        page = self.html.read_text(encoding="utf-8")
        return (f'<iframe srcdoc="{html.escape(page, quote=True)}" style="width: 100%; height: 640px; '
                'border: 1px solid #ddd"></iframe>')


def metrics_frame(run_dir: Path) -> pd.DataFrame:
    return pd.DataFrame(read_metrics(run_dir), columns=METRIC_COLUMNS)


# ---------------------------------------------------------------------------------------------
# Sweeps and studies


def sweep(experiment: str | Path, grid: dict[str, list] | None = None, *, seeds: int | None = None,
          overrides: dict[str, Any] | None = None, workers: int = 1, quick: bool = False,
          name: str | None = None, report: bool = True, folds: int = 0, executor: str = "local",
          resources=None) -> "StudyResult":
    """A grid x seeds over an experiment, or a study file of the catalog (``study-*``), as
    ``practicum sweep`` does: finished trials are reused, interrupted ones resumed. ``folds = K``:
    k-fold cross-validation, each point x seed run as K folds of the training set (a grid axis
    ``data.fold`` with ``overrides={"data.folds": K}`` does the same); ``grid`` may then be empty.
    ``executor="slurm"`` submits the missing trials as one Slurm job array, with
    ``resources=practicum.cluster.Resources(partition=..., gpus_per_trial=..., time_min=...)``."""
    from practicum import sweeps as sweeps
    from practicum.report.study import write_study_report

    if sweeps.is_study(str(experiment)):
        if grid or overrides or folds:
            raise UsageError(f"{experiment} is a study file: its grid (and folds) are declared in it")
        plan = sweeps.plan_study(str(experiment), seeds=seeds, quick=quick)
    else:
        if not grid and not folds:
            raise UsageError("sweep: give a grid, e.g. grid={'optim.lr': [0.01, 0.1]} (or a study file)")
        items = [sweeps.override_text(k, v) for k, v in (overrides or {}).items()]
        plan = sweeps.plan(str(experiment), {k: list(v) for k, v in (grid or {}).items()}, seeds or 1,
                           overrides=items, quick=quick, name=name, folds=folds)
    bar = None
    if executor == "local":
        from practicum import deps, progress

        if plan.trials:  # what the trials read (deps.py), once for all, as `practicum sweep` does
            first = plan.trials[0]
            deps.bring(load_experiment(plan.experiment, first.overrides, seed=first.seed, quick=plan.quick), say=_quiet)
        bar = progress.for_sweep(plan, Index(), workers)  # runs done of all, elapsed, ETA (a widget in Jupyter)
    counts = sweeps.run_plan(plan, workers=workers, log=bar.wrap(_quiet) if bar else _quiet, executor=executor,
                             resources=resources, progress=bar)
    if bar is not None:
        bar.close()
    study_dir = sweeps.studies_dir() / plan.name
    if report:
        write_study_report(study_dir)
    _refresh_site()
    return StudyResult(study_dir, counts)


def load_study(name: str) -> "StudyResult":
    from practicum import sweeps as sweeps

    study_dir = sweeps.studies_dir() / name
    if not (study_dir / "study.json").is_file():
        raise UsageError(f"no study '{name}' in {sweeps.studies_dir()} (run practicum.sweep first)")
    return StudyResult(study_dir)


class StudyResult:
    """A sweep or study in the run store: its trials and its results per grid point."""

    def __init__(self, study_dir: Path, counts: dict | None = None):
        self.dir, self.counts = Path(study_dir), counts or {}
        self.record = fileio.read_json(self.dir / "study.json")

    name = property(lambda self: self.record["name"])

    @property
    def trials(self) -> pd.DataFrame:
        """One row per trial: its grid values, seed, run id, status and summary metrics."""
        index, rows = Index(), []
        for t in self.record["trials"]:
            found = index.by_hash(t["config_hash"])
            done = [r for r in found if r.status == "finished"]
            r = done[-1] if done else (found[-1] if found else None)
            fold = {"fold": t["fold"]} if "fold" in t else {}
            rows.append({**t["point"], "seed": t["seed"], **fold, "run": r.id if r else None,
                         "status": r.status if r else "pending", **(r.summary if r else {})})
        return pd.DataFrame(rows)

    @property
    def results(self) -> pd.DataFrame:
        """Per grid point and metric: mean, sample std (n - 1) and n over the finished seeds."""
        trials = self.trials
        done = trials[trials["status"] == "finished"].copy()
        axes = [a for a in self.record.get("axes", []) if a in done.columns]
        metrics = [c for c in done.columns if "/" in c and pd.api.types.is_numeric_dtype(done[c])]
        for a in axes:  # a list value (layer widths) is not hashable: group it by its text
            done[a] = done[a].map(lambda v: json.dumps(v) if isinstance(v, (list, dict)) else v)
        if not axes:
            done["point"] = "base"
            axes = ["point"]
        table = done.groupby(axes, sort=False)[metrics].agg(["mean", "std", "count"])
        return table.rename(columns={"count": "n"}, level=1)

    @property
    def chosen(self) -> dict | None:
        """A cross-validation's choice: the point with the best mean validation metric over its
        folds (``metric``, ``point``, ``mean``, ``std``, ``n``, ``final_command``, ``runner_up``);
        None for a study without folds."""
        from practicum.report.study import cv_choice, group_runs

        if not self.record.get("folds"):
            return None
        choice = cv_choice(self.record, group_runs(self.record, Index()))
        return choice and {k: v for k, v in choice.items() if k != "values"}

    def report(self) -> Report:
        from practicum.report.study import write_study_report

        md, page, _ = write_study_report(self.dir)
        return Report(md, page)

    def __repr__(self) -> str:
        return f"<study {self.name}: {len(self.record['trials'])} trials>"

    def _repr_html_(self) -> str:
        if not (self.dir / "report.html").exists():
            self.report()
        return Report(self.dir / "report.md", self.dir / "report.html")._repr_html_()
