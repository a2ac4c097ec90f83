"""Helpers shared by the tests: practicum as a child process (kill -9 and resume, DDP ranks),
and reading a finished run back (its tables, its band)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch

from practicum.config import load_experiment


def practicum(*args, env, timeout=300) -> subprocess.CompletedProcess:
    """``python -m practicum ARGS`` in a child process, its output captured."""
    return subprocess.run([sys.executable, "-m", "practicum", *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


def one_thread_env(**extra) -> dict:
    """This environment with one torch thread: bit-identical results need the same thread count."""
    return {**os.environ, "OMP_NUM_THREADS": "1", **extra}


def runs(env) -> list[dict]:
    """The run store's records (``practicum runs --json``) in the store that ``env`` names."""
    return json.loads(practicum("runs", "--json", env=env).stdout)


def loop_state(home: Path, path_glob: str) -> dict | None:
    """The fit loop's state in the checkpoint at ``home/path_glob`` (e.g.
    ``mnist-lenet/*/checkpoints/last.pt``), or None."""
    found = list(home.glob(path_glob))
    try:
        return torch.load(found[0], weights_only=True)["loop"] if found else None
    except Exception:  # noqa: BLE001 - written atomically, but the directory may be mid-listing
        return None


def kill_when(args: list[str], home: Path, path_glob: str, ready, env: dict | None = None) -> dict:
    """Start ``practicum *args`` in a child, SIGKILL it once its checkpoint at ``path_glob``
    satisfies ``ready``; returns the loop state the resume will start from."""
    child = subprocess.Popen([sys.executable, "-m", "practicum", *args], env=env or one_thread_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        ck = loop_state(home, path_glob)
        if ck and ready(ck):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    ck = loop_state(home, path_glob)
    assert ck is not None and ready(ck) and not ck["done"], f"the kill must land mid-epoch: {ck}"
    return ck


def latest_run(cli, experiment: str) -> Path:
    """The directory of ``experiment``'s newest run, which must have finished."""
    _, out, _ = cli("runs", "--json", "--experiment", experiment)
    records = json.loads(out)
    assert records and records[-1]["status"] == "finished", records
    return Path(records[-1]["dir"])


def table(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "tables" / f"{name}.json").read_text(encoding="utf-8"))


def meets_quick_band(run_dir: Path, name: str) -> dict:
    """Assert the run's headline metric holds the entry's quick band; returns its summary."""
    cfg = load_experiment(name, quick=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary[cfg.expect.metric] >= cfg.expect.quick_min, (cfg.expect.metric, summary)
    return summary


def finished_run(index, cfg, summary: dict, curves: dict | None = None, figures: tuple[str, ...] = ()):
    """A finished run of ``cfg`` written through the store as a task writes one (claim, Run, log,
    finish), without training: ``curves`` {"split/name": values, one per epoch} go to metrics.jsonl,
    ``figures`` are file names under figures/ (a tiny real PNG or GIF each). Returns its record."""
    from PIL import Image

    from practicum.store import Run

    claim = index.claim(cfg)
    assert claim.action == "new", f"{cfg.name}: the store has a run of this identity already ({claim.action})"
    run = Run(index, claim.record, cfg, claim.hold, resumed=False)
    for name, values in (curves or {}).items():
        split, _, metric = name.partition("/")
        for epoch, value in enumerate(values, 1):
            run.log({metric: value}, split=split, step=epoch, epoch=float(epoch))
    for name in figures:
        Image.new("RGB", (4, 4), (200, 60, 40)).save(run.figure_path(name))
    run.finish(summary)
    return run.record
