"""``practicum run ... --nproc N``: start N ranks of the same command, torchrun-style.

The launcher imports no torch: it re-runs ``python -m practicum run ...`` (without ``--nproc``)
N times with RANK / WORLD_SIZE set and a rendezvous file (``PRACTICUM_RENDEZVOUS``: a FileStore in
a fresh temporary folder, so no TCP port is picked and raced for by a neighbouring job), waits,
and passes rank 0's exit status on. If a rank fails, the others are stopped: SIGTERM (rank 0 records
the run interrupted), then SIGKILL after ``PRACTICUM_KILL_GRACE`` seconds (default 30) for a rank
stuck in a GPU collective, where Python never sees the signal. Under ``torchrun`` (which sets the same
variables) ``practicum run`` goes straight to ``run_rank``, on one node or many::

    torchrun --nnodes 2 --nproc-per-node 4 --rdzv-backend c10d --rdzv-endpoint HOST:29400 \
        --rdzv-id $SLURM_JOB_ID --max-restarts 3 -m practicum run mnist-lenet

The loaders shard by the global RANK / WORLD_SIZE; LOCAL_RANK and LOCAL_WORLD_SIZE only choose
the GPU and share the host's cores (train/device.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from practicum.errors import PracticumError, UsageError


def launched() -> bool:
    """True in a process started by torchrun or by ``--nproc`` (the environment names the world)."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def cmd_run_distributed(args) -> int:
    if not launched() and args.nproc < 2:
        raise UsageError(f"--nproc {args.nproc}: give 2 or more processes")
    cfg = require_ddp(args)
    if launched():
        return run_rank(args, getattr(getattr(cfg, "train", None), "device", "auto"))
    return spawn(args.nproc, rank_argv(args))


def require_ddp(args):
    """Only practicals on the shared fit loop shard their data over processes; any other would
    run N whole copies, so it is refused before anything starts. Returns the config."""
    from practicum.config import load_experiment
    from practicum.tasks import supports_ddp

    cfg = load_experiment(args.experiment, args.override, seed=args.seed, quick=args.quick)
    if not supports_ddp(cfg.task):
        world = os.environ.get("WORLD_SIZE") if launched() else args.nproc
        raise UsageError(f"{cfg.name}: the practical '{cfg.task}' does not train under DDP (its loop is not the "
                         f"shared fit loop); run it as one process, without --nproc {world} or torchrun")
    return cfg


def rank_argv(args) -> list[str]:
    """The ``run`` command line again, without --nproc (each rank runs the ordinary command)."""
    argv = ["run", args.experiment, *(x for o in args.override for x in ("-o", o))]
    if args.seed is not None:
        argv += ["--seed", str(args.seed)]
    argv += [flag for flag, on in (("--force", args.force), ("--quick", args.quick),
                                   ("--no-report", args.no_report)) if on]
    return argv


def spawn(nproc: int, argv: list[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="practicum-rdzv-") as rendezvous:
        procs = []
        for rank in range(nproc):
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(nproc),
                   "LOCAL_WORLD_SIZE": str(nproc), "PRACTICUM_RENDEZVOUS": os.path.join(rendezvous, "store")}
            if "OMP_NUM_THREADS" not in os.environ:  # share the cores, as torchrun does
                env["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // nproc))
            procs.append(subprocess.Popen([sys.executable, "-m", "practicum", *argv], env=env))
        codes = wait_all(procs)
    if codes[0] == 0 and any(codes):
        raise PracticumError(f"rank {next(i for i, c in enumerate(codes) if c)} failed (exit statuses {codes})")
    return codes[0] if codes[0] >= 0 else 1


def kill_grace() -> float:
    """Seconds between SIGTERM and SIGKILL for the ranks left when one has failed."""
    return float(os.environ.get("PRACTICUM_KILL_GRACE") or 30)


def wait_all(procs: list[subprocess.Popen]) -> list[int]:
    """Wait for every rank; when one fails, stop the others (they would hang in a collective):
    SIGTERM, and SIGKILL for those still there after ``kill_grace()``; say which rank failed
    first and how."""
    def stop(signum=signal.SIGTERM):
        for p in procs:
            if p.poll() is None:
                p.send_signal(signum)

    previous = signal.signal(signal.SIGTERM, lambda signum, frame: stop())
    first, stopped_at = None, None
    try:
        while any(p.poll() is None for p in procs):
            failed = [(i, p.returncode) for i, p in enumerate(procs) if p.poll() not in (None, 0)]
            if failed:
                first = first or failed[0]
                if stopped_at is None:
                    stopped_at = time.monotonic()
                    stop()
                elif time.monotonic() - stopped_at > kill_grace():
                    stop(signal.SIGKILL)  # stuck where Python does not run its SIGTERM handler
            time.sleep(0.1)
    except KeyboardInterrupt:  # the ranks got the SIGINT too; let them record the interruption
        for p in procs:
            p.wait()
        raise SystemExit(130)
    finally:
        signal.signal(signal.SIGTERM, previous)
    first = first or next(((i, p.returncode) for i, p in enumerate(procs) if p.returncode), None)
    if first:
        rank, code = first
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        print(f"practicum: rank {rank} failed first ({how}); the other ranks were stopped", file=sys.stderr)
    return [p.returncode for p in procs]


def run_rank(args, device: str = "auto") -> int:
    """One rank of a distributed ``practicum run`` (``--nproc`` or torchrun, one node or many):
    global rank 0 claims the run, records and reports; the others train on what it broadcasts.

    Under ``torchrun --max-restarts M`` a failed attempt leaves the run interrupted (execute.py);
    on the restart rank 0 finds it, takes over its claim (the claim of an earlier attempt of the
    same job, or of a process that is gone, is stale at once) and every rank resumes from the
    last checkpoint. The ranks > 0 never claim."""
    from practicum.train import ddp

    ddp.init(device)  # train.device chooses the backend: gloo for cpu, nccl for cuda
    code = 1
    try:
        code = rank_body(args)
        return code
    finally:
        ddp.shutdown(wait_for_all=code == 0)


def rank_body(args) -> int:
    from practicum.config import load_experiment
    from practicum.execute import execute, run_task, start
    from practicum.store import host
    from practicum.train import ddp

    cfg = load_experiment(args.experiment, args.override, seed=args.seed, quick=args.quick)
    hosts = ddp.all_gather_object(host())
    shared, run = None, None
    if ddp.is_main():
        restarted = int(os.environ.get("TORCHELASTIC_RESTART_COUNT", 0)) > 0
        claim, run = start(cfg, force=args.force, wait=restarted, hosts=hosts)
        shared = (claim.action, claim.record.id, claim.record.dir, claim.record.headline)
    action, run_id, run_dir, headline = ddp.broadcast_object(shared)
    if action == "finished":
        if ddp.is_main():
            print(f"{cfg.name}: already finished as run {run_id} ({run_dir}); {headline or ''} "
                  "— use --force to run again")
        return 0
    if action == "busy":
        raise PracticumError(f"{cfg.name}: run {run_id} of this config is in progress; wait for it")
    # Rank 0 writes the checkpoints there and every rank reads them on a resume: one directory.
    blind = [h for h, sees in zip(hosts, ddp.all_gather_object(Path(run_dir).is_dir())) if not sees]
    if blind:
        message = (f"the run directory {run_dir} is not visible on {', '.join(sorted(set(blind)))}: "
                   "PRACTICUM_HOME must be on a filesystem every node mounts at the same path")
        if run is not None:
            run.fail(message)
        raise PracticumError(message)
    if not ddp.is_main():
        run_task(cfg, ddp.RankRun(Path(run_dir), action == "resume", cfg, run_id))
        return 0
    nodes = len(set(hosts))
    print(f"{cfg.name}: {'resuming' if run.resumed else 'starting'} run {run.id} in {run.dir} "
          f"on {ddp.world_size()} processes" + (f" on {nodes} hosts" if nodes > 1 else ""), file=sys.stderr)
    try:
        summary = execute(run)
    except KeyboardInterrupt:
        print(f"{cfg.name}: interrupted; run the same command again to resume {run.id}", file=sys.stderr)
        return 130
    metric = cfg.expect.metric
    shown = f"{metric}={summary[metric]:.4f}" if metric in summary else ""
    print(f"{cfg.name}: finished run {run.id}: {shown} in {run.record.duration:.1f}s -> {run.dir}")
    if not args.no_report:
        from practicum.report import write_run_report

        md, _ = write_run_report(run.record)
        print(f"report: {md}")
    return 0
