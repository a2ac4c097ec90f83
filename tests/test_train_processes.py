"""The fit loop across processes: killed with SIGKILL mid-epoch and resumed bit-identically, and
trained by two DistributedDataParallel processes (gloo on CPU) into one run."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from helpers import kill_when, one_thread_env, practicum, runs

# LeNet on 1500 images, batch 64: 24 steps per epoch, 2 epochs, a checkpoint every 3 steps.
RESUME_ARGS = ["run", "mnist-lenet", "--quick", "--no-report", "-o", "data.train_limit=1500",
               "-o", "train.epochs=2", "-o", "train.checkpoint_steps=3", "-o", "train.log_steps=2",
               "-o", "train.eval_steps=10", "-o", "data.shift=2"]


def strip(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def tb_scalars(run_dir: Path, tag: str) -> list[tuple]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    return [(e.step, e.value) for e in ea.Scalars(tag)]


def test_run_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    # 1. the reference: one uninterrupted run (in this process, one thread) in another home
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*RESUME_ARGS)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    (ref_dir,) = (tmp_path / "ref").glob("mnist-lenet/*/")

    # 2. the same command, killed with SIGKILL just after a mid-epoch checkpoint
    env = one_thread_env()
    ck = kill_when(RESUME_ARGS, home, "mnist-lenet/*/checkpoints/last.pt",
                   lambda ck: ck["step"] >= 6 and ck["position"] > 0, env)
    assert ck is not None and 0 < ck["step"] < 48 and ck["position"] > 0, "the kill must land mid-epoch"
    assert [r["status"] for r in runs(env)] == ["interrupted"]

    # 3. the same command again resumes that run and ends bit-identical to the reference
    out = practicum(*RESUME_ARGS, env=env)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished"
    run_dir = Path(record["dir"])
    a = torch.load(ref_dir / "model.pt", weights_only=True)["model"]
    b = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert strip(ref_dir) == strip(run_dir)
    ref_summary = json.loads((ref_dir / "summary.json").read_text())
    timing = {"train/seconds_per_epoch"}
    assert {k: v for k, v in ref_summary.items() if k not in timing} == \
           {k: v for k, v in record["summary"].items() if k not in timing}
    # TensorBoard too: the resumed writer purged what the killed one logged after its checkpoint
    assert tb_scalars(ref_dir, "loss/train") == tb_scalars(run_dir, "loss/train")
    assert tb_scalars(ref_dir, "accuracy/test") == tb_scalars(run_dir, "accuracy/test")
    opt_a = torch.load(ref_dir / "checkpoints/last.pt", weights_only=True)["optimizer"]["state"]
    opt_b = torch.load(run_dir / "checkpoints/last.pt", weights_only=True)["optimizer"]["state"]
    assert all(torch.equal(opt_a[i][k], opt_b[i][k]) for i in opt_a for k in opt_a[i])


def test_two_processes_train_one_run_in_the_same_band(cli, home, tmp_path, monkeypatch):
    env = one_thread_env()
    out = practicum("run", "mnist-lenet", "--quick", "--no-report", "--nproc", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    assert len(list(home.glob("mnist-lenet/*/"))) == 1
    # one process, same config: DDP splits every global batch, so both see the same batches
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli("run", "mnist-lenet", "--quick", "--no-report")[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two_acc, one_acc = record["summary"]["test/accuracy"], one["summary"]["test/accuracy"]
    assert two_acc > 0.3 and abs(two_acc - one_acc) < 0.05  # chance is 0.1
    assert record["summary"]["train/steps"] == one["summary"]["train/steps"]
