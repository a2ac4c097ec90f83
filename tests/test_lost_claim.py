"""A run whose claim another host took over stops, and writes nothing into the run directory
after that, whatever its signal disposition: every child here starts with SIGINT ignored, as a
job under ``nohup`` or ``cmd &`` in a script has it (``_thread.interrupt_main`` does nothing there).

The holder (host alpha) beats its heartbeat only every 30 s, as a host about to be cut off would
look to others; the taker (host beta, this process) judges a claim stale after 1 s. So beta takes
the run over while alpha still trains, and alpha learns it at its next write or step.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from practicum.config import load_experiment
from practicum.store import Index


def ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def alpha_env(home: Path, tmp_path: Path) -> dict:
    return {**os.environ, "PRACTICUM_HOME": str(home), "PRACTICUM_HOST": "alpha", "OMP_NUM_THREADS": "1",
            "PRACTICUM_INDEX": str(tmp_path / "index-alpha.sqlite"), "PRACTICUM_CLAIM_TIMEOUT": "600"}


def metric_lines(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    text = path.read_text() if path.exists() else ""
    return [json.loads(line) for line in text.splitlines() if line.endswith("}")]


def files(run_dir: Path) -> dict[str, tuple[int, int]]:
    """Every file of the run directory: (size, mtime in ns)."""
    return {str(p.relative_to(run_dir)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in run_dir.rglob("*") if p.is_file()}


def take_over(home: Path, tmp_path: Path, monkeypatch, experiment: str, overrides: list[str],
              extra: tuple[str, ...] = (), lines: int = 3):
    """Start ``practicum run experiment --quick`` as alpha; once it has logged ``lines`` metric
    lines, take its claim over as beta. Returns (child, run dir, beta's claim, when it was taken)."""
    argv = [sys.executable, "-m", "practicum", "run", experiment, "--quick", "--no-report",
            *(x for o in overrides for x in ("-o", o)), *extra]
    child = subprocess.Popen(argv, env=alpha_env(home, tmp_path), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, preexec_fn=ignore_sigint)
    deadline = time.time() + 120
    run_dir = None
    while time.time() < deadline and child.poll() is None:
        found = list(home.glob(f"{experiment}/*/metrics.jsonl"))
        if found and len(metric_lines(found[0].parent)) >= lines:
            run_dir = found[0].parent
            break
        time.sleep(0.02)
    assert run_dir is not None, child.communicate(timeout=30)
    monkeypatch.setenv("PRACTICUM_HOST", "beta")
    monkeypatch.setenv("PRACTICUM_INDEX", str(tmp_path / "index-beta.sqlite"))
    monkeypatch.setenv("PRACTICUM_CLAIM_TIMEOUT", "1")
    time.sleep(1.2)  # alpha's last heartbeat is now older than beta's timeout
    claim = Index(home).claim(load_experiment(experiment, overrides, quick=True))
    taken = time.time()
    assert claim.action == "resume" and Path(claim.record.dir) == run_dir, claim
    return child, run_dir, claim, taken


def assert_stopped_writing_nothing(child, run_dir: Path, claim, taken: float, seen: dict) -> str:
    """alpha exits on its own with the one-line message, and nothing of the run directory
    changed after the takeover (a write already under way when it happened may land within
    0.5 s: a checkpoint being serialised then)."""
    try:
        _, err = child.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        child.kill()
        pytest.fail("the process that lost its claim kept running")
    assert child.returncode == 1, err
    assert "error: host beta pid" in err and "took over the claim on this run" in err, err
    slack = int((taken + 0.5) * 1e9)
    changed = {name: st for name, st in files(run_dir).items()
               if seen.get(name) != st and st[1] > slack and name not in ("status.json", "store.log")}
    assert not changed, f"written after the takeover: {changed}"
    assert all(line["time"] <= taken + 0.5 for line in metric_lines(run_dir))
    status = json.loads((run_dir / "status.json").read_text())
    assert status["status"] == "running" and status["host"] == "beta"  # beta's, untouched by alpha
    claim.hold.release()
    return err


def taken_over_and_stopped(home, tmp_path, monkeypatch, experiment, overrides, extra=()) -> str:
    child, run_dir, claim, taken = take_over(home, tmp_path, monkeypatch, experiment, overrides, extra)
    try:
        return assert_stopped_writing_nothing(child, run_dir, claim, taken, files(run_dir))
    finally:
        if child.poll() is None:
            child.kill()


FIT = ["train.epochs=1000", "train.log_steps=2"]


@pytest.mark.timeout(180)
def test_the_fit_loop_stops_when_its_claim_is_taken_over(home, tmp_path, monkeypatch):
    taken_over_and_stopped(home, tmp_path, monkeypatch, "fmnist-softmax", FIT)


@pytest.mark.timeout(180)
def test_a_lesson_loop_stops_when_its_claim_is_taken_over(home, tmp_path, monkeypatch):
    taken_over_and_stopped(home, tmp_path, monkeypatch, "gan-2d", ["train.epochs=100000"])


@pytest.mark.timeout(240)
def test_a_ddp_rank_stops_when_its_claim_is_taken_over(home, tmp_path, monkeypatch):
    err = taken_over_and_stopped(home, tmp_path, monkeypatch, "fmnist-softmax", FIT, extra=("--nproc", "2"))
    assert "rank 0 failed first" in err  # and the launcher stopped the other rank
