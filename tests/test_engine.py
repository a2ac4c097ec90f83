"""The engine's promises that hold for every practical on the fit loop (issue 13): a diverging
run fails loudly, an unknown name never makes a run, threads default to the machine, the device
asked for is the device used, and a missing GPU is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from helpers import practicum


def runs_of(home: Path) -> list[dict]:
    from practicum.store import Index

    return [r.as_json() for r in Index(home).list()] if (home / "index.sqlite").exists() else []


def test_a_diverging_run_fails_with_its_reason_and_keeps_its_last_good_checkpoint(cli, home):
    code, _, err = cli("run", "fmnist-mlp", "--quick", "--no-report", "-o", "optim.lr=1e6",
                       "-o", "train.checkpoint_steps=1")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: ") and "diverged at step" in line and "loss = nan" in line or "loss = inf" in line
    assert "learning rate 1e+06" in line and "optim.lr" in line and "grad_clip" in line and "[784, 256, 10]" not in line
    (record,) = runs_of(home)
    assert record["status"] == "failed" and "diverged" in record["error"]
    run_dir = Path(record["dir"])
    assert "diverged" in json.loads((run_dir / "summary.json").read_text())["error"]
    step = int(line.split("diverged at step ")[1].split()[0])
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["loop"]["step"] <= step  # saved before the bad step, never after
    assert all(torch.isfinite(v).all() for v in last["model"].values())


@pytest.mark.parametrize("key, value, hint", [("model.name", "resnet999", "resnet18"),
                                              ("optim.name", "adamm", "adam"),
                                              ("optim.schedule.name", "cosin", "cosine"),
                                              ("train.loss", "cross_entropi", "cross_entropy")])
def test_an_unknown_name_is_a_config_error_before_any_run_exists(cli, home, key, value, hint):
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", f"{key}={value}")
    assert code == 2
    assert "mnist-lenet.toml" in err and f"'{key}'" in err and f"did you mean '{hint}'" in err
    assert len(err.strip().splitlines()) == 1
    assert runs_of(home) == [] and not (home / "mnist-lenet").exists()


def test_device_cpu_is_used_and_a_missing_gpu_is_one_line(cli, home):
    assert cli("run", "mnist-lenet", "--quick", "--no-report", "-o", "train.device=cpu")[0] == 0
    (record,) = runs_of(home)
    compute = json.loads((Path(record["dir"]) / "env.json").read_text())["compute"]
    assert compute["device"] == "cpu" and compute["precision"] == "fp32"
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", "train.device=cuda")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "no CUDA GPU" in err
    assert len(runs_of(home)) == 1  # nothing new was claimed


def test_threads_default_to_the_machine_and_are_shared_by_sweep_workers(home):
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    cores = int(subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                               capture_output=True, text=True).stdout)
    out = practicum("run", "fmnist-softmax", "--quick", "--no-report", env=env)
    assert out.returncode == 0, out.stderr
    (one,) = runs_of(home)
    env_json = json.loads((Path(one["dir"]) / "env.json").read_text())
    assert env_json["threads"]["torch"] == cores == env_json["compute"]["threads"]

    out = practicum("sweep", "fmnist-softmax", "--quick", "--grid", "optim.lr=0.3,0.4", "--workers", "2", env=env)
    assert out.returncode == 0, out.stderr
    trials = [r for r in runs_of(home) if r["id"] != one["id"]]
    assert len(trials) == 2
    for t in trials:
        assert json.loads((Path(t["dir"]) / "env.json").read_text())["threads"]["torch"] == max(1, cores // 2)

    out = practicum("run", "fmnist-softmax", "--quick", "--no-report", "--seed", "5", "-o", "train.threads=1",
                    env=env)
    assert out.returncode == 0, out.stderr
    last = max(runs_of(home), key=lambda r: r["started"])
    assert json.loads((Path(last["dir"]) / "env.json").read_text())["threads"]["torch"] == 1


def test_every_image_entry_logs_at_least_50_training_points():
    """Curves that show training, whatever the run's length (a one-epoch run once drew one point)."""
    import math

    from practicum.config import catalog, load_experiment
    from practicum.train.loop import CURVE_POINTS

    for name in catalog():
        try:
            cfg = load_experiment(name)
        except Exception:  # a study file
            continue
        if cfg.task not in ("classify", "multilabel") or cfg.task == "multilabel" and cfg.data.train_limit is None:
            continue
        n = (cfg.data.train_limit or 60_000) - cfg.data.val_size
        steps = cfg.train.epochs * math.ceil(n / cfg.optim.batch_size)
        log_steps = cfg.train.log_steps if cfg.train.log_steps is not None else max(1, steps // CURVE_POINTS)
        assert log_steps and steps // log_steps >= 50, f"{name}: {steps // log_steps} points"
