"""The practicals that keep their own loop (the GANs, style transfer, activations, linreg, the 2-D
optimizer walks) on the shared engine pieces: one resume helper (train/checkpoint.py), killed with
SIGKILL and resumed bit-identically; the train.device / train.precision keys; a NaN loss stops the
run (Diverged, exit 1, status failed); --nproc is refused; figures drawn again from recorded data."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

LESSONS = ["gan-2d", "dcgan-mnist", "style-transfer", "activations-halfmoon", "linreg-torch", "study-optimizers-2d"]


def runs(cli) -> list[dict]:
    return json.loads(cli("runs", "--json")[1])


def metrics(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (Path(run_dir) / "metrics.jsonl").read_text().splitlines())]


def same_summary(a: dict, b: dict) -> bool:
    timing = {"train/seconds_per_epoch"}
    return {k: v for k, v in a.items() if k not in timing} == {k: v for k, v in b.items() if k not in timing}


def same_npz(a: Path, b: Path) -> None:
    with np.load(a) as x, np.load(b) as y:
        assert x.files == y.files
        for k in x.files:
            assert np.array_equal(x[k], y[k], equal_nan=x[k].dtype.kind == "f"), k


# -- the resume helper -----------------------------------------------------------------------------


class FakeRun:
    """What save_run_state / load_run_state use of a Run: the claim guard, the metrics position
    and rewinds."""

    def __init__(self, resumed: bool):
        self.resumed, self.scope_start, self.position, self.rewound = resumed, 0, 0, []

    def guard(self, look: bool = False) -> None:
        pass  # the claim is held

    def metrics_position(self) -> int:
        return self.position

    def rewind_metrics(self, position: int) -> None:
        self.rewound.append(position)
        self.position = position


def test_run_state_round_trip(tmp_path):
    from practicum.train.checkpoint import load_run_state, save_run_state

    def make():
        torch.manual_seed(0)
        net = torch.nn.Linear(3, 2)
        opt = torch.optim.Adam(net.parameters(), lr=0.1)
        sched = torch.optim.lr_scheduler.StepLR(opt, 2)
        return net, opt, sched, torch.Generator().manual_seed(5)

    net, opt, sched, gen = make()
    net(torch.randn(4, 3)).sum().backward()
    opt.step()
    sched.step()
    torch.rand(3, generator=gen)
    run = FakeRun(resumed=False)
    run.position = 123
    path = tmp_path / "last.pt"
    save_run_state(run, path, modules={"net": net}, optimizers={"net": opt}, schedulers={"net": sched},
                   generators={"data": gen}, extra={"epoch": 3, "curve": [torch.ones(2)]})
    after_save = (torch.rand(2), torch.rand(2, generator=gen))

    net2, opt2, sched2, gen2 = make()
    assert load_run_state(FakeRun(resumed=False), path, modules={"net": net2}) is None  # a fresh run
    resumed = FakeRun(resumed=True)
    resumed.position = 999  # lines a killed run logged after its checkpoint
    extra = load_run_state(resumed, path, modules={"net": net2}, optimizers={"net": opt2},
                           schedulers={"net": sched2}, generators={"data": gen2})
    assert extra["epoch"] == 3 and torch.equal(extra["curve"][0], torch.ones(2))
    assert resumed.rewound == [123]
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), net2.state_dict().values()))
    assert opt2.state_dict()["state"][0]["step"] == 1 and sched2.last_epoch == 1
    assert torch.equal(torch.rand(2), after_save[0]) and torch.equal(torch.rand(2, generator=gen2), after_save[1])


def test_done_parts_keep_the_next_parts_lines(tmp_path):
    from practicum.train.checkpoint import load_run_state, save_run_state

    run = FakeRun(resumed=False)
    run.position = 50
    save_run_state(run, tmp_path / "a.pt", extra={"part": "a"}, done=True)
    assert run.scope_start == 50
    resumed = FakeRun(resumed=True)
    resumed.position = 80  # part b had logged 30 bytes before the kill
    assert load_run_state(resumed, tmp_path / "a.pt") == {"part": "a"}
    assert resumed.rewound == [] and resumed.scope_start == 50  # a is done: b's lines are not a's
    assert load_run_state(resumed, tmp_path / "b.pt") is None  # b had no checkpoint yet
    assert resumed.rewound == [50]


def test_check_finite_names_model_step_epoch_loss_and_lr():
    from practicum.train.divergence import check_finite
    from practicum.train.loop import Diverged

    assert check_finite(0.5, label="x", step=1, lr=0.1) == 0.5
    with pytest.raises(Diverged, match=r"gen diverged at step 7 \(epoch 1.75\): loss = nan, learning rate 0.3; "
                                       r"try a lower optim.lr"):
        check_finite(float("nan"), label="gen", step=7, epoch=1.75, lr=0.3)


# -- kill -9, then resume bit-identically ----------------------------------------------------------

# A child that runs the CLI and SIGKILLs itself on the n-th call of one function: the kill lands at a
# known step, after a checkpoint and after lines it must drop on resume.
KILLER = """
import os, signal, sys, importlib
module, attr, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
m = importlib.import_module(module)
real, calls = getattr(m, attr), [0]
def hooked(*args, **kwargs):
    calls[0] += 1
    if calls[0] == n:
        os.kill(os.getpid(), signal.SIGKILL)
    return real(*args, **kwargs)
setattr(m, attr, hooked)
from practicum.cli import main
sys.exit(main(sys.argv[4:]))
"""


def killed(args: list[str], module: str, attr: str, n: int) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", KILLER, module, attr, str(n), *args], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr


def resumed(args: list[str]) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-m", "practicum", *args], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr


def reference(cli, monkeypatch, tmp_path, home, args) -> Path:
    """The same command uninterrupted, in this process, in another home."""
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*args)[0] == 0
    (ref,) = json.loads(cli("runs", "--json")[1])
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    return Path(ref["dir"])


DCGAN = ["run", "dcgan-mnist", "--quick", "--no-report", "-o", "train.checkpoint_steps=3"]  # 8 steps an epoch


def test_dcgan_killed_mid_epoch_and_in_its_judge_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    ref = reference(cli, monkeypatch, tmp_path, home, DCGAN)
    # killed at step 6 of 16: the checkpoint of step 3 is the last, the loss lines of step 4 must go
    killed(DCGAN, "practicum.models.gan", "update_G", 6)
    (rec,) = runs(cli)
    ck = torch.load(Path(rec["dir"]) / "checkpoints" / "last.pt", weights_only=True)
    assert rec["status"] == "interrupted" and ck["extra"]["epoch"] == 0 and ck["extra"]["position"] == 3
    # resumed, then killed in the judge's second epoch (4 steps an epoch on the 512 quick images)
    killed(DCGAN, "torch.nn.functional", "cross_entropy", 6)
    run_dir = Path(runs(cli)[0]["dir"])
    assert torch.load(run_dir / "checkpoints" / "judge.pt", weights_only=True)["extra"]["epoch"] == 1
    resumed(DCGAN)
    (rec,) = runs(cli)
    assert rec["status"] == "finished"
    a, b = (torch.load(d / "weights.pt", weights_only=True) for d in (ref, run_dir))
    assert all(torch.equal(a[net][k], b[net][k]) for net in a for k in a[net])
    same_npz(ref / "samples.npz", run_dir / "samples.npz")
    assert metrics(ref) == metrics(run_dir)
    assert same_summary(json.loads((ref / "summary.json").read_text()), rec["summary"])
    assert (ref / "tables" / "judge.json").read_text() == (run_dir / "tables" / "judge.json").read_text()


STYLE = ["run", "style-transfer", "--quick", "--no-report", "-o", "train.checkpoint_steps=4"]  # 12 steps


def test_style_transfer_killed_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    ref = reference(cli, monkeypatch, tmp_path, home, STYLE)
    # the 8th loss evaluation is step 7: checkpoint at 4, the lines of step 6 and the frame of step 4 after it
    killed(STYLE, "practicum.practicals.style", "losses", 8)
    (rec,) = runs(cli)
    assert rec["status"] == "interrupted"
    assert torch.load(Path(rec["dir"]) / "checkpoints" / "last.pt", weights_only=True)["extra"]["step"] == 4
    resumed(STYLE)
    (rec,) = runs(cli)
    run_dir = Path(rec["dir"])
    assert rec["status"] == "finished"
    same_npz(ref / "images.npz", run_dir / "images.npz")
    assert metrics(ref) == metrics(run_dir)
    assert same_summary(json.loads((ref / "summary.json").read_text()), rec["summary"])


# -- interrupted, they no longer start over ------------------------------------------------------


def interrupt_then_resume(cli, monkeypatch, module, attr: str, at: int, args) -> int:
    """Interrupt (Ctrl-C) the run at the ``at``-th call of ``module.attr``, run it again; returns
    how often the resumed run called it."""
    real, calls = getattr(module, attr), [0]

    def hooked(*a, **k):
        calls[0] += 1
        if calls[0] == at:
            raise KeyboardInterrupt
        return real(*a, **k)

    monkeypatch.setattr(module, attr, hooked)
    assert cli(*args)[0] == 130
    assert runs(cli)[0]["status"] == "interrupted"
    calls[0], at = 0, -1
    code, _, err = cli(*args)
    assert code == 0 and "resuming" in err, err
    return calls[0]


@pytest.mark.parametrize("case", ["gan-2d", "linreg-scratch", "linreg-torch", "study-optimizers-2d"])
def test_an_interrupted_run_resumes_where_it_stopped(cli, home, tmp_path, monkeypatch, case):
    import practicum.models.gan as gan
    import practicum.practicals.linreg as linreg
    import practicum.practicals.optim2d as optim2d

    args = ["run", case, "--quick", "--no-report"]
    if case == "study-optimizers-2d":
        args += ["-o", 'study.functions=["ill_conditioned", "elliptic"]']
    # (module, function, the call that is interrupted, calls of a resumed run that does not start over)
    module, attr, at, rest = {
        "gan-2d": (gan, "update_G", 60, 25),  # 25 steps an epoch: two epochs checkpointed, the third redone
        "linreg-scratch": (linreg, "squared_loss", 11, 11),  # once an epoch: epochs 11-20, and the summary's
        "linreg-torch": (linreg, "squared_loss", 11, 11),
        "study-optimizers-2d": (optim2d, "walk", 13, 12),  # 12 walks a function: only elliptic's again
    }[case]
    ref = reference(cli, monkeypatch, tmp_path, home, args)
    assert interrupt_then_resume(cli, monkeypatch, module, attr, at, args) == rest
    (rec,) = runs(cli)
    assert rec["status"] == "finished" and metrics(ref) == metrics(Path(rec["dir"]))
    assert same_summary(json.loads((ref / "summary.json").read_text()), rec["summary"])


# -- device, precision, divergence, processes ------------------------------------------------------


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
@pytest.mark.parametrize("entry", LESSONS)
def test_cuda_without_a_gpu_is_a_one_line_usage_error(cli, home, entry):
    code, _, err = cli("run", entry, "--quick", "--no-report", "-o", "train.device=cuda")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: train.device = 'cuda' but this machine has no CUDA GPU")
    assert not any(home.glob(f"{entry}/*"))  # refused before any run exists


def test_device_cpu_is_honoured(cli, monkeypatch):
    import practicum.train.device as device

    asked = []
    real = device.resolve_device
    monkeypatch.setattr(device, "resolve_device", lambda name="auto": asked.append(name) or real(name))
    for entry in ("gan-2d", "linreg-torch"):
        assert cli("run", entry, "--quick", "--no-report", "-o", "train.device=cpu")[0] == 0
    assert asked == ["cpu", "cpu"]


def test_bf16_runs_the_forward_passes_in_bfloat16(cli, monkeypatch):
    import practicum.models.gan as gan

    dtypes = []
    real = gan.update_D

    def spy(X, fake, *args, **kwargs):
        dtypes.append(fake.dtype)
        return real(X, fake, *args, **kwargs)

    monkeypatch.setattr(gan, "update_D", spy)
    assert cli("run", "gan-2d", "--quick", "--no-report", "-o", "train.precision=bf16")[0] == 0
    (rec,) = runs(cli)
    assert set(dtypes) == {torch.bfloat16} and np.isfinite(rec["summary"]["samples/frechet"])


def test_nan_loss_stops_the_run_failed_with_one_line(cli):
    code, _, err = cli("run", "gan-2d", "--quick", "--no-report", "-o", "optim.lr=inf", "-o", "optim.lr_d=inf")
    assert code == 1
    line = err.strip().splitlines()[-1]
    assert line.startswith("error: gan-2d ") and "diverged at step 1 (epoch 0.04): loss = nan" in line
    assert "learning rate inf" in line and "try a lower optim.lr" in line
    (rec,) = runs(cli)
    assert rec["status"] == "failed" and "diverged" in rec["error"]


def test_divergence_keeps_the_last_good_checkpoint(cli):
    # lr 3 on unit-variance features: the error doubles every step, the loss overflows in epoch 4
    code, _, err = cli("run", "linreg-scratch", "--quick", "--no-report", "-o", "optim.lr=3")
    assert code == 1 and "linreg (scratch) diverged at step 64 (epoch 4.00): loss = inf" in err
    (rec,) = runs(cli)
    ck = torch.load(Path(rec["dir"]) / "checkpoints" / "last.pt", weights_only=True)
    assert rec["status"] == "failed" and ck["extra"]["epoch"] == 3 and torch.isfinite(ck["extra"]["w"]).all()


@pytest.mark.parametrize("entry", LESSONS)
def test_nproc_is_refused_before_anything_starts(cli, home, entry):
    code, _, err = cli("run", entry, "--quick", "--nproc", "2")
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "does not train under DDP" in err and "without --nproc 2" in err
    assert not home.exists() or not any(home.glob(f"{entry}/*"))


# -- figures drawn from recorded data --------------------------------------------------------------


def test_boundary_figures_are_drawn_again_from_the_run_store(cli, tmp_path):
    from practicum.report.activations import boundary_gif
    from practicum.report.boundary import boundary_png

    assert cli("run", "numpy-halfmoon", "--quick", "--no-report")[0] == 0
    run_dir = Path(runs(cli)[0]["dir"])
    boundary_png(run_dir / "boundary.npz", tmp_path / "again.png", title="numpy-halfmoon: decision boundary")
    assert (tmp_path / "again.png").read_bytes() == (run_dir / "figures" / "decision_boundary.png").read_bytes()

    args = ["-o", 'model.activations=["relu"]', "-o", "train.steps=20", "-o", "animation.frames=4",
            "-o", "animation.size=64", "-o", "animation.resolution=8", "-o", "data.n_samples=100"]
    assert cli("run", "activations-halfmoon", "--no-report", *args)[0] == 0
    run_dir = Path(next(r for r in runs(cli) if r["experiment"] == "activations-halfmoon")["dir"])
    row = json.loads((run_dir / "tables" / "activations.json").read_text())["rows"][0]
    boundary_gif(run_dir / "boundaries.npz", {"name": "relu", "diverged_at": row[4]}, 20, 4, 64, 120,
                 tmp_path / "again.gif")
    assert (tmp_path / "again.gif").read_bytes() == (run_dir / "figures" / "boundary_relu.gif").read_bytes()
