"""Run one experiment config as a recorded run: claim it in the index, run its task, record the end.

Used by ``practicum run`` and by every sweep worker, so a trial is always an ordinary run.
"""

from __future__ import annotations

import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

from practicum import fileio
from practicum.config import Experiment
from practicum.errors import PracticumError
from practicum.tasks import task_module
from practicum.store import Claim, Index, Run, command_line

PACKAGES = ("practicum", "numpy", "torch", "pydantic", "matplotlib", "torchmetrics", "tensorboard")


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def environment() -> dict:
    """Provenance recorded next to the metrics (never imports torch just to ask its version)."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    threads = {"cpu_count": os.cpu_count()}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        if var in os.environ:
            threads[var] = os.environ[var]
    return {
        "python": sys.version.split()[0],
        "packages": versions,
        "platform": platform.platform(),
        "machine": platform.machine(),
        "hostname": platform.node(),
        "threads": threads,
        "git_commit": {
            "cwd": git_commit(Path.cwd()),
            "practicum": git_commit(Path(__file__).resolve().parent),
        },
        "command": command_line(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM is handled like Ctrl-C: the task stops, the run is marked interrupted."""

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start(cfg: Experiment, force: bool = False, index: Index | None = None) -> tuple[Claim, Run | None]:
    """Claim ``cfg`` in the index; return the claim and, when there is work to do, its Run."""
    device = getattr(getattr(cfg, "train", None), "device", "auto")
    if device not in ("auto", "cpu"):  # a missing GPU is a one-line error before any run exists
        from practicum.train.device import resolve_device

        resolve_device(device)
    index = index or Index()
    claim = index.claim(cfg, force=force)
    if claim.action in ("finished", "busy"):
        return claim, None
    run = Run(index, claim.record, cfg, claim.lock_fd, resumed=claim.action == "resume")
    env_path = run.dir / "env.json"
    env = environment()
    if run.resumed and env_path.exists():
        previous = fileio.read_json(env_path)
        previous.setdefault("resumed", []).append(env)
        env = previous
    fileio.write_json(env_path, env)
    return claim, run


@contextmanager
def compute_threads(cfg: Experiment):
    """A torch practical's ``train.threads`` for the task's duration (0: train/device.py's
    default, the host's cores shared among workers and ranks); yields the count, or None for a
    practical that does not use torch threads."""
    threads = getattr(getattr(cfg, "train", None), "threads", None)
    if threads is None:
        yield None
        return
    from practicum.train.device import torch_threads

    with torch_threads(threads) as n:
        yield n


def run_task(cfg: Experiment, run) -> dict:
    """The practical's ``run`` with its thread count set (every rank calls this); the count
    actually used goes into env.json."""
    with compute_threads(cfg) as n:
        env_path = run.dir / "env.json"
        if n is not None and getattr(run, "index", None) is not None and env_path.exists():
            env = fileio.read_json(env_path)
            latest = env["resumed"][-1] if env.get("resumed") else env
            latest["threads"]["torch"] = n
            fileio.write_json(env_path, env)
        return task_module(cfg.task).run(cfg, run)


def execute(run: Run) -> dict:
    """Run the task of ``run.cfg``; record finished / failed / interrupted. Returns the summary."""
    try:
        with sigterm_as_interrupt():
            summary = run_task(run.cfg, run)
    except KeyboardInterrupt:
        run.interrupt()
        raise
    except PracticumError as e:
        run.fail(str(e))
        raise
    except Exception as e:
        run.fail(f"{type(e).__name__}: {e}")
        raise
    metric = run.cfg.expect.metric
    headline = f"{metric}={summary[metric]:.4f}" if metric in summary else None
    run.finish(summary, headline=headline)
    return summary


def run_experiment(cfg: Experiment, force: bool = False, index: Index | None = None):
    """Claim and execute; returns (claim action, run record after the run)."""
    index = index or Index()
    claim, run = start(cfg, force=force, index=index)
    if run is not None:
        execute(run)
    return claim.action, index.get(claim.record.id)


def echo(message: str, err: bool = False) -> None:
    print(message, file=sys.stderr if err else sys.stdout)


def run_config(cfg: Experiment, force: bool = False, report: bool = True, say=echo):
    """``practicum run`` of one validated config, for the CLI and the Python API alike: reuse a
    finished run of the same identity, resume an interrupted one, or start a new one; write its
    report. Returns (claim action, run record). ``say(message, err)`` prints what the CLI prints."""
    claim, run = start(cfg, force=force)
    record = claim.record
    if claim.action == "finished":
        say(f"{cfg.name}: already finished as run {record.id} ({record.dir}); {record.headline or ''} "
            "— use --force to run again")
        return claim.action, record
    if claim.action == "busy":
        raise PracticumError(f"{cfg.name}: run {record.id} of this config is in progress "
                             f"(pid {record.pid}); wait for it or stop it")
    say(f"{cfg.name}: {'resuming' if run.resumed else 'starting'} run {run.id} in {run.dir}", True)
    try:
        summary = execute(run)
    except KeyboardInterrupt:
        say(f"{cfg.name}: interrupted; run the same command again to resume {run.id}", True)
        raise
    record = run.index.get(run.id)
    metric = cfg.expect.metric
    shown = f"{metric}={summary[metric]:.4f}" if metric in summary else ""
    say(f"{cfg.name}: finished run {run.id}: {shown} in {record.duration:.1f}s -> {run.dir}")
    if report:
        from practicum.report import write_run_report

        md, _ = write_run_report(record)
        say(f"report: {md}")
    return claim.action, record
