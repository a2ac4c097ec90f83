"""Sweeps on a cluster scheduler: the unfinished trials of a plan as one Slurm job array, through submitit.

    practicum sweep study-mnist-optimizers --executor slurm --partition gpu --gpus-per-trial 1 \\
        --cpus-per-trial 8 --time 2:00:00 --max-parallel 16

Every array task is a ``TrialJob``: on its compute node it runs its trial as an ordinary run
(``execute.run_experiment``), so a finished trial is reused by its identity, an interrupted one
resumes from its checkpoint, and two tasks of one trial cannot both run it (the store's claim).
When Slurm preempts a task or its time limit nears, submitit signals it (USR2, ``signal_delay_s``
before the limit), calls ``TrialJob.checkpoint`` and requeues the task; the run is recorded
interrupted, and the requeued task (same job id, next SLURM_RESTART_COUNT: the claim of its
earlier attempt is stale at once) resumes it from the last checkpoint the loop wrote.

What was submitted is recorded per trial in ``<study>/jobs.json`` (job id, executor, host), so a
second ``practicum sweep`` while jobs are queued or running submits none of them again: a trial is
in flight while its run's claim is live or its job is not done (sacct, through submitit). Only
one ``practicum sweep`` of a study submits at a time (a claim on the study). submitit's folder
(the pickled trials, every task's stdout and stderr) is ``<study>/submitit/``.

``--executor submitit-local`` takes the same path on this machine through submitit's
LocalExecutor (real subprocesses, the same pickling, the same requeue on a time limit): a dry
run before the cluster, and what the tests use.
"""

from __future__ import annotations

import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from practicum import fileio
from practicum.errors import PracticumError, UsageError
from practicum.store import Index, acquire, claim_data, host, pid_alive, process_start


@dataclass
class Resources:
    """What each trial gets, and how the sweep behaves once it has submitted."""

    partition: str | None = None
    gpus_per_trial: int = 0
    cpus_per_trial: int | None = None
    time_min: float = 60.0  # per attempt; a trial that reaches it is requeued and resumes
    max_parallel: int | None = None  # array tasks running at once (Slurm's %N)
    wait: bool = True  # wait for the trials and report, or submit and return
    signal_delay_s: int | None = None  # USR2 this long before the limit (submitit: 90 s on Slurm)
    max_requeues: int = 3  # time limits a trial may reach and be requeued (submitit's max_num_timeout)
    poll_s: float | None = None  # how often the waiting sweep looks (default: 1 s here, 30 s on Slurm)


def parse_time(text: str) -> float:
    """A Slurm time limit as minutes: ``90``, ``1:30:00`` (H:MM:SS), ``2-00:00:00`` (days-H:MM:SS)."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        try:
            return float(text)
        except ValueError:
            raise UsageError(f"--time '{text}': give minutes (90) or H:MM:SS (1:30:00)") from None
    days, a, b, c = (int(x) if x else None for x in m.groups())
    if b is None and days is None:
        return float(a)  # minutes
    if c is None:  # H:MM (with days) or MM:SS
        hours, minutes, seconds = (a, b or 0, 0) if days is not None else (0, a, b)
    else:
        hours, minutes, seconds = a, b, c
    return (days or 0) * 1440 + hours * 60 + minutes + seconds / 60


class TrialJob:
    """One trial as a submitit job: picklable (plain values), run on the compute node."""

    def __init__(self, home: str, experiment: str, overrides: list[str], seed: int, quick: bool,
                 config_hash: str, label: str):
        self.home, self.experiment, self.overrides = home, experiment, list(overrides)
        self.seed, self.quick, self.config_hash, self.label = seed, quick, config_hash, label

    def __call__(self) -> dict:
        from practicum.config import load_experiment
        from practicum.execute import run_experiment

        os.environ["PRACTICUM_HOME"] = self.home
        cfg = load_experiment(self.experiment, self.overrides, seed=self.seed, quick=self.quick)
        if cfg.config_hash() != self.config_hash:
            raise PracticumError(f"trial {self.label}: the experiment changed since it was submitted "
                                 f"(identity {cfg.config_hash()}, not {self.config_hash}); sweep again")
        # wait: a claim left by a task that died on another host is taken over once stale
        action, record = run_experiment(cfg, wait=True)
        print(f"trial {self.label} seed {self.seed}: {action} run {record.id} ({record.status}) in {record.dir}",
              flush=True)
        return {"action": action, "run": record.id, "status": record.status, "host": host()}

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on preemption or near the time limit: requeue this same trial
        (the run store resumes it from its last checkpoint)."""
        import submitit

        return submitit.helpers.DelayedSubmission(self)

    def __repr__(self) -> str:
        return f"TrialJob({self.label}, seed {self.seed})"


def slurm_parameters(res: Resources, name: str) -> dict:
    """submitit SlurmExecutor parameters (its own names) for one array of trials."""
    params = {"job_name": name[:64], "time": int(math.ceil(res.time_min)), "nodes": 1, "ntasks_per_node": 1,
              "partition": res.partition, "cpus_per_task": res.cpus_per_trial,
              "gpus_per_node": res.gpus_per_trial or None, "array_parallelism": res.max_parallel,
              "signal_delay_s": res.signal_delay_s}
    return {k: v for k, v in params.items() if v is not None}


def make_executor(kind: str, folder: Path, res: Resources, name: str):
    import submitit

    if kind == "slurm":
        executor = submitit.SlurmExecutor(folder=folder, max_num_timeout=res.max_requeues)
        executor.update_parameters(**slurm_parameters(res, name))
        return executor
    executor = submitit.LocalExecutor(folder=folder, max_num_timeout=res.max_requeues)
    params = {"timeout_min": res.time_min, "gpus_per_node": res.gpus_per_trial, "tasks_per_node": 1}
    if res.signal_delay_s is not None:
        params["signal_delay_s"] = res.signal_delay_s
    executor.update_parameters(**params)
    return executor


def job_in_flight(entry: dict, folder: Path) -> bool:
    """Whether a recorded job is still queued or running."""
    if entry.get("executor") == "submitit-local":  # its id is the pid of its controller, here
        return entry.get("host") == host() and pid_alive(int(entry["job_id"]), entry.get("pid_start"))
    import submitit

    try:
        return not submitit.SlurmJob(folder=folder, job_id=entry["job_id"]).done(force_check=True)
    except Exception:  # noqa: BLE001 - sacct unreachable: assume it runs rather than submit twice
        return True


def _study_lock(index: Index, name: str, log):
    """The claim on a study's submissions: two sweeps of one study never submit at once."""
    folder = index.claims_root / f"study-{name}"
    shown = False
    while True:
        hold, holder = acquire(folder, claim_data())
        if hold is not None:
            return hold.start()
        if not shown:
            log(f"{name}: waiting for the sweep of {holder.get('host')} pid {holder.get('pid')} to submit")
            shown = True
        time.sleep(0.5)


def run_on_cluster(p, todo: list, counts: dict, kind: str, res: Resources, index: Index, log) -> dict:
    """Submit the trials of ``todo`` that are not in flight as one job array; then (``res.wait``)
    wait for them and for those in flight, and count what finished."""
    from practicum.sweeps import studies_dir

    study_dir = studies_dir() / p.name
    folder = study_dir / "submitit"
    jobs_path = study_dir / "jobs.json"
    home = str(index.root)
    hold = _study_lock(index, p.name, log)
    try:
        jobs = fileio.read_json(jobs_path) if jobs_path.exists() else {}
        fresh, flying = [], []
        for t in todo:
            running = any(r.status == "running" for r in index.by_hash(t.config_hash, experiment=t.name))
            entry = jobs.get(t.config_hash)
            (flying if running or (entry and job_in_flight(entry, folder)) else fresh).append(t)
        log(f"{p.name}: {counts['total']} trials, {counts['skipped']} already finished, "
            f"{len(flying)} in flight, {len(fresh)} to submit ({kind})")
        submitted = {}
        if fresh:
            executor = make_executor(kind, folder, res, p.name)
            with executor.batch():
                for t in fresh:
                    job = executor.submit(TrialJob(home, p.experiment, t.overrides, t.seed, p.quick,
                                                   t.config_hash, t.label()))
                    submitted[t.config_hash] = (t, job)
            for t, job in submitted.values():
                entry = {"job_id": str(job.job_id), "executor": kind, "host": host(), "submitted": time.time(),
                         "trial": t.label(), "seed": t.seed}
                if kind == "submitit-local":
                    entry["pid_start"] = process_start(int(job.job_id))
                jobs[t.config_hash] = entry
                log(f"  trial {t.label()} seed {t.seed}: job {job.job_id}")
            fileio.write_json(jobs_path, jobs)
    finally:
        hold.release()
    if not res.wait:
        counts["queued"] = len(fresh) + len(flying)
        return counts

    poll = res.poll_s or (30.0 if kind == "slurm" else 0.5)
    waiting = {t.config_hash: t for t in fresh + flying}
    while waiting:
        for h, t in list(waiting.items()):
            if h in submitted:
                busy = not submitted[h][1].done()
            else:
                entry = jobs.get(h)
                busy = (any(r.status == "running" for r in index.by_hash(h, experiment=t.name))
                        or bool(entry and job_in_flight(entry, folder)))
            if not busy:
                del waiting[h]
                done = any(r.status == "finished" for r in index.by_hash(h, experiment=t.name))
                counts["ran" if done else "failed"] += 1
                why = "" if done else _failure(submitted.get(h, (None, None))[1])
                log(f"  trial {t.label()} seed {t.seed}: {'done' if done else 'failed' + why}")
        if waiting:
            time.sleep(poll)
    return counts


def _failure(job) -> str:
    """A short reason for a failed job, with where its log is."""
    if job is None:
        return ""
    try:
        error = job.exception()
    except Exception as e:  # noqa: BLE001 - the job left no result at all (killed)
        error = e
    first = str(error).strip().splitlines()[-1] if error else f"state {job.state}"
    return f" ({first[:200]}; log: {job.paths.stderr})"
