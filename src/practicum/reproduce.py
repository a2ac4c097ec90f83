"""``practicum reproduce SEED``: regenerate a seed report, side by side with its numbers and claims.

A reproduction (``reproductions/<seed>.toml``) lists the seed report's sections in its own order;
each names the catalog entries and studies that reproduce it, the figures to show, and claims that
span entries. The numbers come from the entries' ``[[reproduces]]`` declarations, the studies'
claims from their files. Reproducing means: run, or reuse by identity, every entry with the seeds
its rows ask for and every study, then write ``<runs>/reproductions/<seed>/report.md`` and
``report.html`` (report/reproduction.py).

    practicum reproduce 000 --plan        # what it needs, what is done, how long the rest takes
    practicum reproduce 002 --workers 2   # run what is missing, then write the report
    practicum reproduce all --quick       # the seconds-long forms, one seed each (CI)
    practicum reproduce 000 --seeds 8     # the claims' compared runs at 8 seeds: runs only those

How many seeds a claim's verdict rests on is fixed before its runs: a claim's ``seeds = N`` in its
file, or ``--seeds N`` for every claim of the reproduction (whichever is more, never fewer than
the rows ask for). Only what the claims compare gets the extra seeds: the entries they name, and
the grid points of a study their selectors match; the runs at the first seeds are reused.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import Field

from practicum.claims import Claim
from practicum.config import Section, load_experiment, read_toml, validate
from practicum.errors import UsageError
from practicum.registry import nearest
from practicum.store import Index, RunRecord, home


class FigureRef(Section):
    entry: str | None = None
    study: str | None = None
    name: str = Field(description="a figure file of the run or study, without .png ('*.gif': every GIF)")
    caption: str = ""


class ReportSection(Section):
    id: str
    title: str
    entries: list[str] = Field(default_factory=list)
    studies: list[str] = Field(default_factory=list)
    figures: list[FigureRef] = Field(default_factory=list)
    claims: list[Claim] = Field(default_factory=list)
    traits: list[str] = Field(default_factory=list, description="entries whose traits (parameters, s/epoch) are tabulated")
    traits_study: str | None = Field(None, description="a study whose points' traits are tabulated")


class Reproduction(Section):
    seed: str
    title: str
    file: str = ""
    sections: list[ReportSection]


SEEDS = ("000", "002", "003", "004")


def load_reproduction(seed: str) -> Reproduction:
    if seed not in SEEDS:
        raise UsageError(f"unknown seed report '{seed}'{nearest(seed, SEEDS)}: use {', '.join(SEEDS)} or all")
    path = Path(str(resources.files("practicum") / "reproductions" / f"{seed}.toml"))
    return validate(Reproduction, read_toml(path), str(path))


# ---------------------------------------------------------------------------------------------
# What a reproduction needs


@dataclass
class Job:
    """One run the reproduction needs: an entry at a seed, or a study's trial."""

    experiment: str
    seed: int
    overrides: list[str]
    config_hash: str
    owner: str  # the entry, or the study the trial belongs to
    done: RunRecord | None = None
    estimate: float | None = None  # seconds
    how: str = ""  # where the estimate comes from


@dataclass
class Plan:
    reproduction: Reproduction
    quick: bool
    entries: dict[str, list[Job]] = field(default_factory=dict)
    studies: dict[str, Any] = field(default_factory=dict)  # study -> sweeps.Plan
    seeds: int | None = None  # --seeds: seeds per compared thing of every claim, fixed before the runs

    @property
    def jobs(self) -> list[Job]:
        return [j for jobs in self.entries.values() for j in jobs] + [
            j for study_jobs in self.study_jobs.values() for j in study_jobs]

    study_jobs: dict[str, list[Job]] = field(default_factory=dict)


def entry_seeds(entry: str, seed_report: str, quick: bool) -> int:
    """How many seeds an entry's rows of this seed report ask for (1 in the quick form)."""
    if quick:
        return 1
    cfg = load_experiment(entry)
    wanted = [r.seeds for r in cfg.reproduces if r.seed == seed_report]
    return max(wanted, default=1)


def claim_seeds(claim: Claim, seeds: int | None) -> int:
    """Seeds per compared thing a claim asks for: its ``seeds``, or ``--seeds``, whichever is more (0: no ask)."""
    return max(claim.seeds or 0, seeds or 0)


def plan(seed: str, quick: bool = False, index: Index | None = None, seeds: int | None = None) -> Plan:
    """``seeds``: at least that many seeds for what every claim compares (``--seeds``)."""
    from practicum import sweeps

    if seeds is not None and seeds < 2:
        raise UsageError(f"--seeds {seeds}: a test needs a spread, 2 or more seeds per side")
    index = index or Index()
    rep = load_reproduction(seed)
    p = Plan(rep, quick, seeds=seeds)
    claimed: dict[str, int] = {}  # entry -> the seeds the claims that compare it ask for
    for c in (c for section in rep.sections for c in section.claims):
        for s in c.a + c.b + c.items:
            if "entry" in s:
                claimed[s["entry"]] = max(claimed.get(s["entry"], 0), claim_seeds(c, seeds))
    for section in rep.sections:
        for entry in section.entries:
            if entry in p.entries:
                continue
            if sweeps.is_study(entry):
                raise UsageError(f"reproduction {seed}: '{entry}' is a study; list it under studies")
            jobs = []
            for s in range(max(entry_seeds(entry, seed, quick), claimed.get(entry, 0))):
                cfg = load_experiment(entry, seed=s, quick=quick)
                jobs.append(Job(entry, s, [], cfg.config_hash(), entry, finished(index, cfg.config_hash())))
            p.entries[entry] = jobs
        for study in section.studies:
            if study in p.studies:
                continue
            sp = study_plan(study, quick, seeds)
            p.studies[study] = sp
            p.study_jobs[study] = [Job(sp.experiment, t.seed, t.overrides, t.config_hash, study,
                                       finished(index, t.config_hash)) for t in sp.trials]
    return p


def study_plan(study: str, quick: bool, seeds: int | None):
    """The study's trials (one seed each in the quick form), and more seeds for the grid points
    its claims compare where they ask for more (``seeds = N``, ``--seeds``)."""
    from practicum import sweeps
    from practicum.report.study import matches

    base = 1 if quick else sweeps.load_study(study).seeds
    claims = [(c, claim_seeds(c, seeds)) for c in sweeps.load_study(study).claims]
    most = max([n for _, n in claims] + [base])
    if most == base:
        return sweeps.plan_study(study, seeds=base, quick=quick)
    sp = sweeps.plan_study(study, seeds=most, quick=quick)

    def wanted(point: dict) -> int:  # the seeds the claims that compare this grid point ask for
        return max([n for c, n in claims for sel in c.a + c.b + c.items
                    if all(k in point and matches(point[k], v) for k, v in sel.items())] + [base])

    first = min(t.seed for t in sp.trials)
    sp.trials = [t for t in sp.trials if t.seed - first < wanted(t.point)]
    return sp


def finished(index: Index, config_hash: str) -> RunRecord | None:
    done = [r for r in index.by_hash(config_hash) if r.status == "finished"]
    return done[-1] if done else None


# ---------------------------------------------------------------------------------------------
# Estimates: recorded runs first, else a short probe through the fit loop


def estimate(p: Plan, index: Index, probe: bool = True) -> None:
    """Fill each pending job's estimate: the duration of a finished run of the same experiment
    and settings at another seed, else of the entry's recorded measurement, else a probe of a few
    training steps of the real config (practicals on the fit loop), else unknown."""
    probed: dict[tuple, tuple[float, str]] = {}
    for job in p.jobs:
        if job.done:
            continue
        cfg = load_experiment(job.experiment, job.overrides, seed=job.seed, quick=p.quick)
        sibling = same_settings(index, cfg)
        if sibling:
            job.estimate, job.how = sibling.duration, f"run {sibling.id} (seed {sibling_seed(sibling)})"
            continue
        measured = cfg.expect.measured
        if measured and measured.seconds and not job.overrides and not p.quick:  # the full run's time
            job.estimate, job.how = measured.seconds, f"recorded in the entry ({measured.date})"
            continue
        key = (job.experiment, tuple(job.overrides), p.quick)
        if probe and key not in probed:
            probed[key] = probe_seconds(job.experiment, job.overrides, p.quick)
        if key in probed:
            job.estimate, job.how = probed[key]


def same_settings(index: Index, cfg) -> RunRecord | None:
    """A finished run whose config differs from ``cfg`` at most in the seed."""
    for s in range(5):
        if s == cfg.seed:
            continue
        other = cfg.model_copy(update={"seed": s})
        if run := finished(index, other.config_hash()):
            return run
    return None


def sibling_seed(record: RunRecord) -> str:
    return record.command.split("--seed ")[1].split()[0] if record.command and "--seed " in record.command else "0"


PROBE_STEPS = 12


def probe_seconds(experiment: str, overrides: list[str], quick: bool) -> tuple[float | None, str]:
    """Seconds for the whole run, from timing a few training steps of the real config in a
    scratch run store (``PRACTICUM_PROBE_STEPS``: the fit loop stops there and reports)."""
    import json
    import os
    import subprocess
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "PRACTICUM_HOME": tmp, "PRACTICUM_PROBE_STEPS": str(PROBE_STEPS)}
        args = [sys.executable, "-m", "practicum", "run", experiment, "--no-report"] + (["--quick"] if quick else [])
        for o in overrides:
            args += ["-o", o]
        t0 = time.perf_counter()
        out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=900)
        wall = time.perf_counter() - t0
        line = next((x for x in out.stderr.splitlines() if x.startswith("probe: ")), None)
    if line is None:
        return None, "no estimate (no recorded run, and this practical cannot be probed)"
    info = json.loads(line.removeprefix("probe: "))
    start = wall - info["seconds"]  # imports, data, model: paid once per run
    total = start + info["seconds_per_step"] * info["total_steps"] * 1.1  # + ~10 % for evaluations
    ms = info["seconds_per_step"] * 1000
    shown = f"{ms:.2g}" if ms < 10 else f"{ms:.0f}"  # a linear model's 0.4 ms/step is not "0 ms"
    return total, f"probe: {shown} ms/step x {info['total_steps']:,} steps"


# ---------------------------------------------------------------------------------------------
# Running


def run(p: Plan, workers: int = 1, log=print) -> dict:
    """Run what is missing, entry by entry and study by study (each an ordinary sweep)."""
    from practicum import sweeps
    from practicum.report.study import write_study_report

    counts = {"total": 0, "skipped": 0, "ran": 0, "failed": 0}
    from practicum.progress import for_reproduction  # one bar over every run below (progress.py)

    bar = for_reproduction(p, Index(), workers)
    log = bar.wrap(log)
    for entry, jobs in p.entries.items():
        sp = sweeps.plan(entry, {}, len(jobs), quick=p.quick, name=f"reproduce-{p.reproduction.seed}-{entry}")
        add(counts, sweeps.run_plan(sp, workers=workers, log=log, record=False, progress=bar))
    for study, sp in p.studies.items():
        add(counts, sweeps.run_plan(sp, workers=workers, log=log, progress=bar))
        write_study_report(sweeps.studies_dir() / sp.name)
    bar.close()
    return counts


def add(counts: dict, more: dict) -> None:
    for k in counts:
        counts[k] += more.get(k, 0)


def reproductions_dir() -> Path:
    return home() / "reproductions"


def format_plan(p: Plan) -> str:
    lines = [f"{p.reproduction.title}{' (quick forms)' if p.quick else ''}"]
    total, unknown = 0.0, 0
    for owner, jobs in [*p.entries.items(), *p.study_jobs.items()]:
        done = sum(j.done is not None for j in jobs)
        pending = [j for j in jobs if j.done is None]
        secs = [j.estimate for j in pending if j.estimate is not None]
        total += sum(secs)
        unknown += sum(j.estimate is None for j in pending)
        eta = f"~{fmt_seconds(sum(secs))}" if pending and secs else ("-" if not pending else "?")
        how = sorted({j.how for j in pending if j.how})
        lines.append(f"  {owner:<28} {len(jobs):>3} runs, {done:>3} done, {len(pending):>3} to run  {eta:>9}"
                     + (f"  ({'; '.join(how)})" if how else ""))
    lines.append(f"to run: {sum(j.done is None for j in p.jobs)} of {len(p.jobs)} runs, about "
                 f"{fmt_seconds(total)} on this machine" + (f" (+ {unknown} without an estimate)" if unknown else ""))
    return "\n".join(lines)


def fmt_seconds(s: float) -> str:
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"
