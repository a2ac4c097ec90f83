"""Faults that real machines have: a full disk, a torn metrics line after kill -9, a damaged
checkpoint, a damaged index. Each ends in one clear line, and nothing is lost: the run resumes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from helpers import kill_when, one_thread_env, practicum
from practicum import fileio

# Three epochs of ~0.3 s: long enough for a kill to land in the one wanted.
RUN = ["run", "fmnist-softmax", "--quick", "-o", "train.epochs=3", "-o", "data.train_limit=12000", "--no-report"]


def run_dir_of(home: Path) -> Path:
    (found,) = home.glob("fmnist-softmax/*/status.json")
    return found.parent


def final_weights(run_dir: Path) -> dict:
    return torch.load(run_dir / "model.pt", weights_only=True)["model"]


@pytest.fixture
def reference(home, tmp_path_factory) -> dict:
    """The weights of the same run, uninterrupted (in a store of its own)."""
    env = one_thread_env(PRACTICUM_HOME=str(tmp_path_factory.mktemp("reference")))
    done = practicum(*RUN, env=env)
    assert done.returncode == 0, done.stderr
    return final_weights(next(Path(env["PRACTICUM_HOME"]).glob("fmnist-softmax/*/")))


def test_a_full_disk_at_a_checkpoint_stops_the_run_and_keeps_the_last_one(cli, home, monkeypatch, reference):
    """ENOSPC while the second epoch's checkpoint is written: exit 1, one line, the run
    interrupted; the first epoch's checkpoint is whole, and the resume ends where an
    uninterrupted run does."""
    real, writes = fileio.write_bytes, []

    def full_at_the_second(path, data):
        if Path(path).name == "last.pt":
            writes.append(path)
            if len(writes) == 2:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(path, data)

    monkeypatch.setattr(fileio, "write_bytes", full_at_the_second)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    code, _, err = cli(*RUN)
    assert code == 1
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert "no space left on the device" in line and "run the same command again to resume" in line
    run_dir = run_dir_of(home)
    assert json.loads((run_dir / "status.json").read_text())["status"] == "interrupted"
    kept = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert kept["loop"]["epoch"] == 1
    monkeypatch.setattr(fileio, "write_bytes", real)  # space again
    code, _, err = cli(*RUN)
    assert code == 0, err
    for name, tensor in final_weights(run_dir).items():
        assert torch.equal(tensor, reference[name]), name


def mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None or os.geteuid() != 0:
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True).returncode == 0


@pytest.mark.timeout(180)
def test_a_really_full_disk_stops_the_run_in_one_line_and_it_resumes(tmp_path, home, reference):
    """The run store on a real 4 MiB filesystem, filled up while the run trains (after its
    first checkpoint): whatever write hits the full disk first, the run stops with one line,
    its last checkpoint loads, and once there is space it resumes to the uninterrupted result."""
    store = tmp_path / f"small-{uuid.uuid4().hex[:6]}"
    if not mount_tmpfs(store, "4m"):
        pytest.skip("mounting a small tmpfs needs root (CI runs as root)")
    try:
        env = one_thread_env(PRACTICUM_HOME=str(store), PRACTICUM_INDEX=str(tmp_path / "index.sqlite"))
        filler = store / "filler"

        def fill(ck):  # the first checkpoint is down: take every free byte
            with open(filler, "wb") as f:
                try:
                    while True:
                        f.write(b"\0" * 65536)
                        f.flush()
                except OSError:
                    pass
            return True

        child = subprocess.Popen([sys.executable, "-m", "practicum", *RUN], env=env, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True)
        deadline = time.time() + 120
        while time.time() < deadline and child.poll() is None:
            if list(store.glob("fmnist-softmax/*/checkpoints/last.pt")):
                fill(None)
                break
            time.sleep(0.005)
        _, err = child.communicate(timeout=120)
        assert child.returncode == 1, err
        errors = [x for x in err.splitlines() if x.startswith("error:")]
        assert len(errors) == 1 and "no space left on the device" in errors[0], err
        assert "Traceback" not in err
        run_dir = run_dir_of(store)
        kept = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
        assert kept["loop"]["epoch"] >= 1
        listed = json.loads(practicum("runs", "--json", env=env).stdout)
        assert [r["status"] for r in listed] == ["interrupted"]
        filler.unlink()
        done = practicum(*RUN, env=env)
        assert done.returncode == 0, done.stderr
        for name, tensor in final_weights(run_dir).items():
            assert torch.equal(tensor, reference[name]), name
    finally:
        subprocess.run(["umount", "-l", str(store)], capture_output=True)


def killed_in_epoch_two(home: Path) -> Path:
    """Kill -9 the run in its second epoch (its first checkpoint written); its run directory."""
    kill_when(RUN, home, "fmnist-softmax/*/checkpoints/last.pt",
              lambda ck: ck["epoch"] == 1 and ck["position"] == 0)
    return run_dir_of(home)


@pytest.mark.timeout(180)
def test_a_torn_last_metrics_line_is_dropped_on_resume(home, reference):
    run_dir = killed_in_epoch_two(home)
    with open(run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
        f.write('{"step": 40, "epoch": 1.2, "split": "tra')  # kill -9 in the middle of a write
    done = practicum(*RUN, env=one_thread_env())
    assert done.returncode == 0, done.stderr
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert all(json.loads(line) for line in lines)  # every line whole: the fragment is gone
    for name, tensor in final_weights(run_dir).items():
        assert torch.equal(tensor, reference[name]), name


@pytest.mark.timeout(240)
def test_a_corrupt_last_checkpoint_falls_back_to_the_one_before(home, reference):
    """``last.pt`` truncated (a copy cut short, a full disk under another tool): the resume
    says so and starts from ``last.prev.pt``; the result is still the uninterrupted one."""
    kill_when(RUN, home, "fmnist-softmax/*/checkpoints/last.pt", lambda ck: ck["epoch"] == 2 and ck["position"] == 0)
    run_dir = run_dir_of(home)
    last = run_dir / "checkpoints" / "last.pt"
    assert torch.load(run_dir / "checkpoints" / "last.prev.pt", weights_only=True)["loop"]["epoch"] == 1
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    done = practicum(*RUN, env=one_thread_env())
    assert done.returncode == 0, done.stderr
    assert "last.pt cannot be loaded" in done.stderr and "resuming from the one before it, last.prev.pt" in done.stderr
    assert "resuming from the one before it" in (run_dir / "store.log").read_text()
    for name, tensor in final_weights(run_dir).items():
        assert torch.equal(tensor, reference[name]), name


def test_a_corrupt_checkpoint_without_an_earlier_one_is_one_clear_line(home):
    run_dir = killed_in_epoch_two(home)
    last = run_dir / "checkpoints" / "last.pt"
    assert not (run_dir / "checkpoints" / "last.prev.pt").exists()
    last.write_bytes(b"not a checkpoint")
    done = practicum(*RUN, env=one_thread_env())
    assert done.returncode == 1
    (line,) = [x for x in done.stderr.splitlines() if x.startswith("error:")]
    assert "last.pt: cannot load checkpoint" in line and "no earlier checkpoint" in line and "--force" in line


def test_a_corrupt_index_is_rebuilt_from_the_run_directories(home):
    done = practicum(*RUN, env=one_thread_env())
    assert done.returncode == 0, done.stderr
    index = home / "index.sqlite"
    index.write_bytes(b"SQLite format 3\0" + os.urandom(4096))  # a damaged page
    for suffix in ("-wal", "-shm"):
        Path(f"{index}{suffix}").unlink(missing_ok=True)
    listed = practicum("runs", "--json", env=one_thread_env())
    assert listed.returncode == 0, listed.stderr
    assert "the run index" in listed.stderr and "rebuilt it from the run directories" in listed.stderr
    assert [r["status"] for r in json.loads(listed.stdout)] == ["finished"]
    assert list(home.glob("index.sqlite.corrupt-*"))  # kept aside, not deleted
    again = practicum("runs", "--json", env=one_thread_env())
    assert "warning" not in again.stderr  # rebuilt once
