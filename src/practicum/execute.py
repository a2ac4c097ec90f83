"""Run one experiment config as a recorded run: claim it in the store, run its task, record the end.

Used by ``practicum run``, by rank 0 under torchrun, by every sweep worker and by every Slurm
array task, so a trial is always an ordinary run.
"""

from __future__ import annotations

import errno
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
from practicum.store import Claim, Index, Run, command_line, host, job_attempt

PACKAGES = ("practicum", "numpy", "torch", "pydantic", "matplotlib", "torchmetrics", "tensorboard")


def git_commit(path: Path) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def world(hosts: list[str] | None = None) -> dict:
    """The processes this run trains on, from the launcher's environment (torchrun, ``--nproc``)."""
    env = os.environ
    info = {"processes": int(env.get("WORLD_SIZE", 1)), "per_node": int(env.get("LOCAL_WORLD_SIZE", 1)),
            "nodes": int(env.get("GROUP_WORLD_SIZE", 1))}
    if "TORCHELASTIC_RESTART_COUNT" in env:
        info["restart"] = int(env["TORCHELASTIC_RESTART_COUNT"])
        info["max_restarts"] = int(env.get("TORCHELASTIC_MAX_RESTARTS", 0))
    if hosts:
        info["hosts"] = sorted(set(hosts))
    return info


def restarts_left() -> bool:
    """Whether torchrun (``--max-restarts M``) restarts this job if it fails now."""
    env = os.environ
    return int(env.get("TORCHELASTIC_RESTART_COUNT", 0)) < int(env.get("TORCHELASTIC_MAX_RESTARTS", 0))


def environment(hosts: list[str] | None = None) -> dict:
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
        "hardware": hardware(),
        "hostname": platform.node(),
        "host": host(),
        "job": job_attempt(),
        "world": world(hosts),
        "threads": threads,
        "git_commit": {
            "cwd": git_commit(Path.cwd()),
            "practicum": git_commit(Path(__file__).resolve().parent),
        },
        "command": command_line(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def cpu_model() -> str | None:
    """The CPU's model name (Linux: /proc/cpuinfo; elsewhere ``platform.processor()``)."""
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith(("model name", "Model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def hardware() -> dict:
    """The processors a run may compute on: the CPU's model, and, in a torch practical (torch is
    imported by its config's schema already), the GPUs torch sees with CUDA's and cuDNN's
    versions. Another CPU model or card on a resume makes it not bit-identical (RESUME_KEYS)."""
    info = {"cpu": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        info["gpus"] = [f"{torch.cuda.get_device_name(i)} (sm {'.'.join(map(str, torch.cuda.get_device_capability(i)))})"
                        for i in range(torch.cuda.device_count())]
        info["cuda"], info["cudnn"] = torch.version.cuda, torch.backends.cudnn.version()
    return info


@contextmanager
def sigterm_as_interrupt():
    """SIGTERM is handled like Ctrl-C: the task stops, the run is marked interrupted. Not in a
    submitit job: there SIGTERM is submitit's (it ignores it and checkpoints on its own signal)."""
    if os.environ.get("SUBMITIT_EXECUTOR"):
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def start(cfg: Experiment, force: bool = False, index: Index | None = None, wait: bool = False,
          hosts: list[str] | None = None) -> tuple[Claim, Run | None]:
    """Claim ``cfg`` in the store; return the claim and, when there is work to do, its Run.
    ``wait``: see ``Index.claim``; ``hosts``: every rank's host, for env.json."""
    device = getattr(getattr(cfg, "train", None), "device", "auto")
    if device not in ("auto", "cpu"):  # a missing GPU is a one-line error before any run exists
        from practicum.train.device import resolve_device

        resolve_device(device)
    check_model = getattr(task_module(cfg.task), "check_model", None)
    if check_model is not None:  # your own model is built and run on a dummy batch before any run exists
        check_model(cfg)
    index = index or Index()
    claim = index.claim(cfg, force=force, wait=wait)
    if claim.action in ("finished", "busy"):
        return claim, None
    try:
        run = Run(index, claim.record, cfg, claim.hold, resumed=claim.action == "resume")
        env_path = run.dir / "env.json"
        env = environment(hosts)
        if run.resumed and env_path.exists():
            previous = fileio.read_json(env_path)
            last = sessions(previous)[-1]
            before = (last.get("world") or last.get("compute") or {}).get("processes")
            if before is not None and before != env["world"]["processes"]:
                print(f"{cfg.name}: run {run.id} trained on {before} process(es) and resumes on "
                      f"{env['world']['processes']}: it continues from its last checkpoint but will not be "
                      "bit-identical to an uninterrupted run (recorded in env.json and its summary)",
                      file=sys.stderr)
            previous.setdefault("resumed", []).append(env)
            env = previous
        fileio.write_json(env_path, env)
    except BaseException:
        claim.hold.release()
        raise
    return claim, run


def sessions(env: dict) -> list[dict]:
    """env.json's entry per session of a run: the first, then one per resume."""
    return [env, *env.get("resumed", [])]


# What makes a resumed session compute differently from the sessions before it. The device is
# compared by its type ('cuda:0' and 'cuda:1' compute alike), the card by name and capability.
RESUME_KEYS = (("world", "processes"), ("compute", "processes"), ("compute", "device"), ("compute", "gpu"),
               ("compute", "precision"), ("compute", "threads"), ("compute", "tf32"), ("compute", "deterministic"),
               ("compute", "cudnn"), ("hardware", "cpu"),
               ("packages", "torch"), ("packages", "numpy"))


def resume_value(section: str, key: str, value):
    """What RESUME_KEYS compare: a device's type, not its index."""
    if (section, key) == ("compute", "device") and isinstance(value, str):
        return value.split(":")[0]
    return value


def resume_differences(run) -> list[str]:
    """How the sessions of a resumed run differ (world size, device type, GPU, CPU model,
    precision, TF32, threads, versions), and what in them has random state no checkpoint holds
    (``compute.not_exact``): each is a reason its result is not bit-identical to an uninterrupted run's
    (another world size splits each global batch differently and restores other random
    states). Recorded in env.json (``resume_bit_identical``) when there is any."""
    path = run.dir / "env.json"
    if not path.exists() or getattr(run, "lost", False):  # a lost run writes nothing
        return []
    env = fileio.read_json(path)
    parts = sessions(env)
    if len(parts) < 2:
        return []
    notes = []
    for section, key in RESUME_KEYS:
        values = []
        for part in parts:
            value = part.get(section, {}).get(key) if isinstance(part.get(section), dict) else None
            value = resume_value(section, key, value)
            if value is not None and (not values or values[-1] != value):
                values.append(value)
        if len(values) > 1:
            notes.append(f"{section}.{key}: {' -> '.join(map(str, values))}")
    caveats = sorted({c for part in parts for c in (part.get("compute") or {}).get("not_exact", [])})
    notes += [f"compute.not_exact: {c} (its random state is in no checkpoint)" for c in caveats]
    if notes:
        env["resume_bit_identical"] = False
        env["resume_differences"] = notes
        fileio.write_json(path, env)
    return notes


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
    """Run the task of ``run.cfg``; record finished / failed / interrupted. Returns the summary.

    Under torchrun with restarts left (``--max-restarts``) a failure is recorded as
    ``interrupted``: the agent restarts the job and rank 0 resumes this run from its checkpoint;
    the last attempt records the failure."""
    try:
        with sigterm_as_interrupt():
            summary = run_task(run.cfg, run)
    except (KeyboardInterrupt, SystemExit):  # SystemExit: submitit requeues a preempted job
        run.notes = resume_differences(run)
        run.interrupt()
        raise
    except Exception as e:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            stop_on_full_disk(run, e)
        message = str(e) if isinstance(e, PracticumError) else f"{type(e).__name__}: {e}"
        run.notes = resume_differences(run)
        if restarts_left():
            run.interrupt(error=message)
        else:
            run.fail(message)
        raise
    metric = run.cfg.expect.metric
    headline = f"{metric}={summary[metric]:.4f}" if metric in summary else None
    run.notes = resume_differences(run)
    if run.notes:
        summary = {**summary, "resume/exact": 0.0}
        headline = f"{headline or 'finished'} (resumed: not bit-identical)"
    run.finish(summary, headline=headline)
    return summary


def stop_on_full_disk(run, error: OSError) -> None:
    """A full disk (or quota) is no failure of the run: it stops ``interrupted`` at its last
    checkpoint (written atomically, so the one before the failed write is whole) and resumes
    once there is space. One line says so."""
    message = (f"{run.cfg.name}: no space left on the device of {run.dir} ({error.strerror}); the run stopped at "
               "its last checkpoint, which is kept: free some space and run the same command again to resume it")
    try:
        run.interrupt(error=message)
    except OSError:  # status.json cannot be written either: it reads 'interrupted' once this process ends
        pass
    raise PracticumError(message) from None


def run_experiment(cfg: Experiment, force: bool = False, index: Index | None = None, wait: bool = False):
    """Claim and execute; returns (claim action, run record after the run)."""
    index = index or Index()
    claim, run = start(cfg, force=force, index=index, wait=wait)
    if run is not None:
        execute(run)
        return claim.action, run.record
    return claim.action, claim.record


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
                             f"(pid {record.pid} on {record.host}); wait for it or stop it")
    say(f"{cfg.name}: {'resuming' if run.resumed else 'starting'} run {run.id} in {run.dir}", True)
    try:
        summary = execute(run)
    except KeyboardInterrupt:
        say(f"{cfg.name}: interrupted; run the same command again to resume {run.id}", True)
        raise
    record = run.record
    metric = cfg.expect.metric
    shown = f"{metric}={summary[metric]:.4f}" if metric in summary else ""
    say(f"{cfg.name}: finished run {run.id}: {shown} in {record.duration:.1f}s -> {run.dir}")
    if report:
        from practicum.report import write_run_report

        md, _ = write_run_report(record)
        say(f"report: {md}")
    return claim.action, record
