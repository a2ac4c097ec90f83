"""Sweeps: a grid of overrides × seeds over one experiment, each trial an ordinary run.

A trial is identified by its config hash, so a sweep is idempotent: finished trials are skipped,
interrupted ones resume, only the missing ones run. With ``workers > 1`` each trial runs as its own
``practicum run`` process: a worker killed with ``kill -9`` loses only its own unfinished trial
(the next invocation resumes it), and the store's claims keep concurrent workers (on this host or
any other) from taking the same trial. With ``executor="slurm"`` the trials go to a Slurm job
array through submitit instead (practicum/cluster.py).

A study file in the catalog names the base experiment, fixed overrides, the grid and the seeds::

    kind = "study"
    name = "study-numpy-losses"
    experiment = "numpy-mnist"
    seeds = 3
    [set]                 # applied to every trial
    optim.batch_size = 128
    [grid]                # one axis per key
    "train.loss" = ["ce", "mse", "svm"]
    # a paired axis: keys joined by "+", each value a list with one entry per key
    "optim.name+optim.lr" = [["sgd", 0.01], ["adam", 0.001]]

k-fold cross-validation (D2L 5.7): ``folds = K`` in a study (``practicum run ENTRY --folds K``,
``practicum.sweep(..., folds=K)``, or a grid axis ``data.fold`` with ``data.folds = K`` set) runs
every grid point x seed as K trials, ``data.folds = K`` and ``data.fold = 0 .. K-1``. The fold is
no axis of the grid: a point's trials are its folds, so the report's mean ± std is over the folds,
and the point with the best mean validation metric is the one chosen by cross-validation
(report/study.py), with the command that trains it on all the training data (folds off).
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from practicum import fileio
from practicum.claims import Claim
from practicum.config import (
    Section,
    flatten,
    load_experiment,
    load_raw,
    parse_value,
    validate,
)
from practicum.errors import UsageError
from practicum.store import Index, home, scan_runs

FOLD_KEYS = ("data.folds", "data.fold")  # what makes a trial a fold run (classify's Data)


class Study(Section):
    kind: str = "study"
    name: str
    description: str = ""
    seed_report: str | None = None
    experiment: str = Field(description="catalog name or path of the base experiment")
    seeds: int = Field(1, gt=0)
    set: dict[str, Any] = Field(default_factory=dict, description="overrides for every trial")
    grid: dict[str, list[Any]] = Field(default_factory=dict, description="axis -> values")
    metrics: list[str] = Field(default_factory=list, description="summary metrics to tabulate")
    quick: dict[str, Any] = Field(default_factory=dict, description="overrides applied by --quick")
    claims: list[Claim] = Field(default_factory=list, description="the seed's conclusions, checked in the report")
    folds: int = Field(0, ge=0, description="k-fold cross-validation: each point x seed runs as K fold runs "
                       "(data.folds = K, data.fold = 0 .. K-1); 0: none")
    select: str | None = Field(None, description="with folds: the val metric whose mean over the folds picks "
                               "the point (default: the first val/ metric of metrics, else val/accuracy)")


def is_study(spec: str) -> bool:
    try:
        raw, _ = load_raw(spec)
    except UsageError:
        return False
    return raw.get("kind") == "study"


def load_study(spec: str) -> Study:
    raw, path = load_raw(spec)
    return validate(Study, raw, str(path))


def split_values(text: str) -> list[Any]:
    """``sgd,adam`` -> ['sgd', 'adam']; ``[10],[100,10]`` -> [[10], [100, 10]] (commas at depth 0)."""
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "[{"
        depth -= ch in "]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [parse_value(p.strip()) for p in parts if p.strip()]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    grid = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not values.strip():
            raise UsageError(f"--grid '{item}': expected KEY=V1,V2,..., e.g. optim.name=sgd,adam")
        grid[key.strip()] = split_values(values)
    return grid


def override_text(key: str, value: Any) -> str:
    """An ``-o`` argument that parses back to ``value``."""
    return f"{key}={toml_value(value)}"


def toml_value(value: Any) -> str:
    """``value`` as TOML text; a dict as an inline table (tomli_w writes dicts as [tables])."""
    import tomli_w

    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }" if value else "{}"
    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def axis_values(key: str, value: Any) -> dict[str, Any]:
    """One grid value as {dotted key: value}; a paired axis ``a+b`` takes a list [va, vb]."""
    names = key.split("+")
    if len(names) == 1:
        return {key: value}
    if not isinstance(value, list) or len(value) != len(names):
        raise UsageError(f"grid axis '{key}': each value must be a list of {len(names)} "
                         f"(one per key), got {value!r}")
    return dict(zip(names, value))


def axes(grid: dict[str, list[Any]]) -> list[str]:
    """The dotted keys a grid varies, paired axes split into their keys."""
    return [name for key in grid for name in key.split("+")]


@dataclass
class Trial:
    point: dict[str, Any]  # the grid values of this trial
    seed: int
    overrides: list[str]  # every -o of this trial (fixed set + point [+ data.folds, data.fold])
    config_hash: str = ""
    fold: int | None = None  # k-fold cross-validation: the fold this trial holds out as 'val'
    name: str = ""  # the experiment's name: its runs live in <home>/<name>/

    def label(self) -> str:
        text = ", ".join(f"{k}={v}" for k, v in self.point.items()) or "base"
        return text if self.fold is None else f"{text} fold {self.fold}"

    def final_command(self, experiment: str, quick: bool = False) -> str:
        """The command of this point without the folds: trained on all the training data, tested once."""
        kept = [o for o in self.overrides if o.partition("=")[0].strip() not in FOLD_KEYS]
        return Trial(self.point, self.seed, kept).command(experiment, quick)

    def command(self, experiment: str, quick: bool = False) -> str:
        import shlex

        args = ["practicum", "run", experiment, "--seed", str(self.seed)] + (["--quick"] if quick else [])
        for o in self.overrides:
            args += ["-o", o]
        return shlex.join(args)


@dataclass
class Plan:
    name: str
    experiment: str  # as given (catalog name or path)
    grid: dict[str, list[Any]]
    trials: list[Trial] = field(default_factory=list)
    metrics: list[str] = field(default_factory=list)
    description: str = ""
    quick: bool = False
    claims: list[dict] = field(default_factory=list)  # the study's claims (claims.Claim as dicts)
    folds: int = 0  # k-fold cross-validation: each point x seed is K trials
    select: str | None = None  # with folds: the val metric that picks the point


def fold_values(experiment: str, grid: dict[str, list[Any]], fixed_overrides: list[str], folds: int,
                quick: bool) -> tuple[list[int | None], list[str], int]:
    """(the folds each point x seed runs, the overrides that turn folds on, K). ``folds = K``: all
    K of them; a grid axis ``data.fold`` (taken out of ``grid``): those named, K from data.folds."""
    if "data.fold" in grid:
        if folds:
            raise UsageError("give the folds once: folds = K, or a grid axis data.fold (with data.folds = K)")
        values = grid.pop("data.fold")
        base = load_experiment(experiment, fixed_overrides, quick=quick)
        k = getattr(getattr(base, "data", None), "folds", 0)
        if not k:
            raise UsageError("a grid axis data.fold needs data.folds = K as well (e.g. -o data.folds=5)")
        return list(values), [], k
    if not folds:
        return [None], [], 0
    base = load_experiment(experiment, fixed_overrides, quick=quick)
    data = getattr(base, "data", None)
    if data is None or "folds" not in type(data).model_fields:
        raise UsageError(f"{experiment}: task '{base.task}' has no data.folds: k-fold cross-validation is the "
                         "classify practical's (any entry of task 'classify')")
    if folds < 2:
        raise UsageError(f"folds = {folds}: cross-validation needs 2 or more folds")
    return list(range(folds)), [override_text("data.folds", folds)], folds


def plan(experiment: str, grid: dict[str, list[Any]], seeds: int, fixed: dict[str, Any] | None = None,
         overrides: list[str] = (), quick: bool = False, name: str | None = None,
         metrics: list[str] = (), description: str = "", folds: int = 0, seed: int | None = None,
         select: str | None = None) -> Plan:
    """Expand the grid × seeds (× folds) into trials and validate every trial's config now, before
    any runs. ``seed``: the first seed (default: the experiment's own)."""
    fixed_overrides = [override_text(k, v) for k, v in flatten(fixed or {}).items()] + list(overrides)
    grid = dict(grid)  # a data.fold axis is taken out of it
    fold_list, fold_overrides, folds = fold_values(experiment, grid, fixed_overrides, folds, quick)
    fixed_overrides += fold_overrides
    base = load_experiment(experiment, fixed_overrides, seed=seed, quick=quick)
    trials = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        point = {}
        for key, value in zip(keys, values):
            point.update(axis_values(key, value))
        point_overrides = fixed_overrides + [override_text(k, v) for k, v in point.items()]
        for s in range(seeds):
            for fold in fold_list:
                trial_overrides = point_overrides + ([] if fold is None else [override_text("data.fold", fold)])
                cfg = load_experiment(experiment, trial_overrides, seed=base.seed + s, quick=quick)
                trials.append(Trial(point, base.seed + s, trial_overrides, cfg.config_hash(), fold, cfg.name))
    return Plan(name or f"sweep-{base.name}", experiment, grid, trials, list(metrics), description, quick,
                folds=folds, select=select)


def plan_study(spec: str, seeds: int | None = None, quick: bool = False) -> Plan:
    study = load_study(spec)
    fixed = dict(study.set)
    if quick:
        fixed.update(flatten(study.quick))
    p = plan(study.experiment, {k: list(v) for k, v in study.grid.items()}, seeds or study.seeds, fixed=fixed,
             quick=quick, name=study.name + ("-quick" if quick else ""), metrics=study.metrics,
             description=study.description, folds=study.folds, select=study.select)
    p.claims = [c.model_dump(mode="json") for c in study.claims]
    return p


# ---------------------------------------------------------------------------------------------
# Running


def pending(p: Plan, index: Index) -> list[Trial]:
    """Trials with no finished run yet, read from the run directories (not the cache)."""
    finished = set()
    for name in sorted({t.name for t in p.trials}):
        finished |= {r.config_hash for r in scan_runs(index.root, name) if r.status == "finished"}
    return [t for t in p.trials if t.config_hash not in finished]


EXECUTORS = ("local", "slurm", "submitit-local")


def run_plan(p: Plan, workers: int = 1, log=print, executor: str = "local", resources=None,
             record: bool = True, progress=None) -> dict:
    """Run what is missing. Returns counts: total, skipped (already finished), ran, failed (and,
    for a cluster sweep that does not wait, queued: trials submitted or in flight).

    ``executor``: ``local`` (this process, or ``workers`` processes), ``slurm`` (one job array
    through submitit, with ``resources``: a ``cluster.Resources``), or ``submitit-local`` (the
    same path through submitit's LocalExecutor, on this machine). ``record``: keep the plan as a
    study (studies/<name>/study.json) for its report. ``progress``: a progress.Overall, told as
    each trial ends (the bar over the whole sweep or reproduction)."""
    if executor not in EXECUTORS:
        raise UsageError(f"executor '{executor}': valid: {', '.join(EXECUTORS)}")
    index = Index()
    todo = pending(p, index)
    counts = {"total": len(p.trials), "skipped": len(p.trials) - len(todo), "ran": 0, "failed": 0}
    if record or executor != "local":  # a cluster sweep keeps its jobs beside the study record
        save_study_record(p)
    if executor != "local":
        from practicum.cluster import Resources, run_on_cluster

        return run_on_cluster(p, todo, counts, executor, resources or Resources(), index, log)
    log(f"{p.name}: {counts['total']} trials, {counts['skipped']} already finished, "
        f"{len(todo)} to run with {workers} worker(s)")
    if workers <= 1:
        from practicum.execute import run_experiment

        for t in todo:
            cfg = load_experiment(p.experiment, t.overrides, seed=t.seed, quick=p.quick)
            log(f"  trial {t.label()} seed {t.seed}")
            try:
                action, record = run_experiment(cfg, index=index)
            except KeyboardInterrupt:
                raise
            except Exception as e:  # one trial's failure does not stop the sweep
                log(f"  trial {t.label()} seed {t.seed} failed: {e}")
                counts["failed"] += 1
                continue
            finally:
                if progress is not None:
                    progress.done(t.config_hash)
            counts["ran"] += action in ("new", "resume")
    else:
        results = run_in_processes(p, todo, workers, log, progress)
        counts["ran"] += results.count(0)
        counts["failed"] += len(results) - results.count(0)
    return counts


def visible_gpus() -> list[str]:
    """The GPUs this process may hand out: ``CUDA_VISIBLE_DEVICES`` when set, else the ones torch
    counts (asked only when torch is imported already: a NumPy sweep never loads it)."""
    if "CUDA_VISIBLE_DEVICES" in os.environ:
        return [d.strip() for d in os.environ["CUDA_VISIBLE_DEVICES"].split(",") if d.strip() and d.strip() != "-1"]
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available():
        return []
    return [str(i) for i in range(torch.cuda.device_count())]


def run_in_processes(p: Plan, todo: list[Trial], workers: int, log, progress=None) -> list[int]:
    """Each trial a ``practicum run`` subprocess, at most ``workers`` at a time, threads split evenly.
    Worker slot k gets GPU k mod the visible GPUs (``CUDA_VISIBLE_DEVICES`` of one GPU), so the
    trials spread over the GPUs instead of all landing on the first; with no GPU nothing is set."""
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    gpus = visible_gpus()
    queue, running, codes = list(todo), {}, []
    while queue or running:
        while queue and len(running) < workers:
            t = queue.pop(0)
            args = [sys.executable, "-m", "practicum", "run", p.experiment, "--seed", str(t.seed),
                    "--no-report", "--no-site", "--no-deps"] + (["--quick"] if p.quick else [])
            for o in t.overrides:
                args += ["-o", o]
            slot = min(set(range(workers)) - {k for _, k in running.values()})
            trial_env = {**env, "CUDA_VISIBLE_DEVICES": gpus[slot % len(gpus)]} if gpus else env
            running[subprocess.Popen(args, env=trial_env, stdout=subprocess.DEVNULL)] = (t, slot)
        time.sleep(0.1)
        for proc in [q for q in running if q.poll() is not None]:
            t, _ = running.pop(proc)
            codes.append(proc.returncode)
            state = "done" if proc.returncode == 0 else f"failed (exit {proc.returncode})"
            log(f"  trial {t.label()} seed {t.seed}: {state}")
            if progress is not None:
                progress.done(t.config_hash)
    return codes


# ---------------------------------------------------------------------------------------------
# The study record: what a report needs to find the trials again, without re-expanding anything


def studies_dir() -> Path:
    return home() / "studies"


def save_study_record(p: Plan) -> Path:
    path = studies_dir() / p.name / "study.json"
    record = {
        "name": p.name,
        "experiment": p.experiment,
        "description": p.description,
        "grid": p.grid,
        "axes": axes(p.grid),
        "metrics": p.metrics,
        "claims": p.claims,
        "trials": [trial_record(p, t) for t in p.trials],
    }
    if p.folds:  # a cross-validation: the report says so and names the chosen point
        record.update(folds=p.folds, select=p.select)
    fileio.write_json(path, record, sort_keys=False)  # grid order is the table's column order
    return path


def trial_record(p: Plan, t: Trial) -> dict:
    record = {"point": t.point, "seed": t.seed, "config_hash": t.config_hash,
              "command": t.command(p.experiment, p.quick)}
    if t.fold is not None:
        record.update(fold=t.fold, final_command=t.final_command(p.experiment, p.quick))
    return record
