"""Gradient descent, Newton's method and learning-rate schedules by hand (issue 18, study-gd-basics):
each piece against hand-computed values, D2L's printed numbers and torch.optim; the entry end to
end on its quick form; killed with SIGKILL between its parts and resumed to the same lines."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from practicum.config import load_experiment
from practicum.practicals import gd_basics as gb
from practicum.practicals.optim2d import FUNCTIONS

SRC = Path(__file__).resolve().parents[1] / "src"
ARGS = ["run", "study-gd-basics", "--quick", "--no-report"]


def x(v: float) -> torch.Tensor:
    return torch.tensor(v, dtype=torch.float64)


@pytest.fixture(autouse=True)
def keep_torch_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


# -- the walks against hand values ------------------------------------------------------------------


@pytest.mark.parametrize("lr, d2l", [(0.05, 3.486784), (0.2, 0.060466), (1.1, 61.917364)])
def test_gd_on_x2_is_the_closed_form_and_prints_d2ls_numbers(lr, d2l):
    xs = gb.gd(gb.square(), x(10.0), lr, 10)
    hand = torch.tensor([(1 - 2 * lr) ** t * 10 for t in range(11)], dtype=torch.float64)
    torch.testing.assert_close(xs, hand, rtol=1e-14, atol=1e-14)
    assert float(xs[-1]) == pytest.approx(d2l, abs=1e-6)  # D2L 12.3.1: "epoch 10, x: ..."


def test_gd_stops_where_it_overflows():
    xs = gb.gd(gb.square(), x(10.0), 1.1, 5000)  # |x| grows x1.2 a step: inf near step 3890
    assert 3000 < len(xs) < 5001 and torch.isfinite(xs).all()


def test_newton_on_a_quadratic_takes_one_step():
    for a, b, x0 in ((1.0, 0.0, 10.0), (3.0, -2.5, 7.0)):  # f = a (x - b)^2
        quad = gb.Curve(lambda v, a=a, b=b: a * (v - b) ** 2, lambda v, a=a, b=b: 2 * a * (v - b),
                        lambda v, a=a: torch.full_like(v, 2 * a), "")
        xs = gb.newton(quad, x(x0), 3)
        assert xs.tolist() == pytest.approx([x0, b, b, b], abs=1e-15)


def test_xcos_derivatives_by_hand_equal_autograd():
    c = 0.15 * math.pi
    curve = gb.xcos(c)
    xs = torch.linspace(-25, 25, 101, dtype=torch.float64, requires_grad=True)
    (g,) = torch.autograd.grad(curve.f(xs).sum(), xs, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), xs)
    torch.testing.assert_close(curve.grad(xs.detach()), g.detach())
    torch.testing.assert_close(curve.hess(xs.detach()), h)
    assert float(curve.hess(x(10.0))) == pytest.approx(2 * c)  # sin(1.5 pi) = -1, cos(1.5 pi) = 0


def test_nonconvex_walks_print_d2ls_numbers():
    curve = gb.xcos(0.15 * math.pi)
    assert float(gb.gd(curve, x(10.0), 2.0, 10)[-1]) == pytest.approx(-1.528166, abs=1e-6)  # D2L 12.3.1.2
    wrong = gb.newton(curve, x(10.0), 10)  # D2L 12.3.3: 26.8341, a maximum
    assert float(wrong[-1]) == pytest.approx(26.8341, abs=1e-4) and float(curve.hess(wrong[-1])) < 0
    assert float(gb.newton(curve, x(10.0), 10, lr=0.5)[-1]) == pytest.approx(7.2699, abs=1e-4)
    absolute = gb.newton(curve, x(10.0), 10, absolute=True)
    # first step as the plain one (f''(10) = 2c > 0), then |f''| keeps it going downhill: a minimum
    assert float(absolute[1]) == pytest.approx(float(wrong[1]))
    assert abs(float(curve.grad(absolute[-1]))) < 1e-10 and float(curve.hess(absolute[-1])) > 0
    f = curve.f(absolute)
    assert (f[1:] <= f[:-1] + 1e-12).sum() >= 8  # descends, but not at every step (x = 5 -> 25)


def test_schedules_by_hand():
    s = gb.Schedules(steps=50)  # eta 0.1; lambda 0.1; alpha 0.5, beta 0.1; cosine to 0.01 over 50
    lr = lambda name, t: gb.SCHEDULES[name](t, s)  # noqa: E731
    assert [lr("constant", t) for t in (0, 7, 49)] == [0.1, 0.1, 0.1]
    assert lr("exponential", 0) == pytest.approx(0.1)
    assert lr("exponential", 10) == pytest.approx(0.1 / math.e)
    assert lr("exponential", 20) == pytest.approx(0.1 * math.exp(-2))
    assert lr("polynomial", 0) == pytest.approx(0.1)
    assert lr("polynomial", 10) == pytest.approx(0.1 / math.sqrt(2))
    assert lr("polynomial", 30) == pytest.approx(0.05)
    assert lr("cosine", 0) == pytest.approx(0.1)
    assert lr("cosine", 25) == pytest.approx(0.01 + 0.09 * 0.5)
    assert lr("cosine", 50) == pytest.approx(0.01) and lr("cosine", 80) == pytest.approx(0.01)
    short = gb.Schedules(steps=50, cos_steps=20, cos_final=0.0)
    assert gb.SCHEDULES["cosine"](10, short) == pytest.approx(0.05)
    assert gb.SCHEDULES["cosine"](30, short) == 0.0


def test_gd_2d_prints_d2ls_numbers_and_equals_torch_optim():
    fn = FUNCTIONS["elliptic"]
    start = torch.tensor(fn.start, dtype=torch.float64)
    path = gb.gd_2d(fn, start, lambda t: 0.1, 20)
    assert path[-1].tolist() == pytest.approx([-0.057646, -0.000073], abs=1e-6)  # D2L 12.3.2, epoch 20
    hand = torch.stack([-5 * 0.8 ** torch.arange(21.0, dtype=torch.float64),
                        -2 * 0.6 ** torch.arange(21.0, dtype=torch.float64)], 1)
    torch.testing.assert_close(path, hand)
    s = gb.Schedules(steps=30)
    noise = torch.randn(30, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    for name in gb.SCHEDULE_NAMES:
        lr_at = lambda t, name=name: gb.SCHEDULES[name](t, s)  # noqa: E731
        for z in (None, noise):
            ours = gb.gd_2d(fn, start, lr_at, 30, z)
            theirs = gb.torch_walk(fn, start, s.lr, lr_at, 30, z)
            torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-14)


def test_config_refuses_an_unbounded_function_and_an_unknown_schedule(cli):
    code, _, err = cli("run", "study-gd-basics", "--quick", "-o", "schedules.function=saddle")
    assert code == 2 and "unbounded" in err, err
    code, _, err = cli("run", "study-gd-basics", "--quick", "-o", 'schedules.names=["cosin"]')
    assert code == 2 and "cosine" in err, err


# -- the entry ----------------------------------------------------------------------------------------


def only_run(cli) -> Path:
    (rec,) = json.loads(cli("runs", "--json", "--experiment", "study-gd-basics")[1])
    assert rec["status"] == "finished", rec
    return Path(rec["dir"])


def test_entry_quick_draws_every_part_and_lands_in_its_band(cli):
    code, _, err = cli("run", "study-gd-basics", "--quick")
    assert code == 0, err
    run_dir = only_run(cli)
    s = json.loads((run_dir / "summary.json").read_text())
    expect = load_experiment("study-gd-basics", quick=True).expect
    assert expect.quick_min <= s[expect.metric] <= expect.max
    assert s["rates/abs_x_too_large"] == pytest.approx(1.2 ** 10 * 10)  # shown, not an error
    assert s["nonconvex/newton_lr0.5/abs_grad"] < 1e-3 and s["nonconvex/newton_lr1/hess"] < 0
    assert s["check/max_diff"] < 1e-12 and s["torch/max_abs_diff"] < 1e-12
    # exact gradients: the largest steps win; the exponential's finite budget stops it furthest away
    d = {n: s[f"schedule/{n}/dist_exact"] for n in gb.SCHEDULE_NAMES}
    assert d["constant"] < d["polynomial"] < d["cosine"] < d["exponential"]
    tables = {p.stem for p in (run_dir / "tables").glob("*.json")}
    assert tables == {"1_gd_x2", "2_gd_newton", "3_schedules", "4_checks"}
    figures = {p.name for p in (run_dir / "figures").iterdir()}
    assert {"1_learning_rates_on_x2.png", "2_gd_against_newton.png", "4_schedules_compared.png",
            *[f"3_schedule_{n}.png" for n in gb.SCHEDULE_NAMES]} <= figures
    report = (run_dir / "report.md").read_text()
    assert all(f"figures/{f}" in report for f in figures if f.endswith(".png")) and "where it ends" in report
    assert all(f.replace(".png", ".svg") in figures for f in figures if f.endswith(".png"))  # and as SVG


KILLER = r"""
import os, signal, sys
from practicum.train import checkpoint

n, save, calls = int(sys.argv[1]), checkpoint.save, [0]

def save_or_die(path, obj, **kw):
    calls[0] += 1
    if calls[0] == n:  # killed instead of writing this checkpoint: its part's metric lines are orphans
        os.kill(os.getpid(), signal.SIGKILL)
    save(path, obj, **kw)

checkpoint.save = save_or_die
from practicum.cli import main
sys.exit(main(sys.argv[2:]))
"""


def test_killed_between_parts_resumes_without_redoing_finished_ones(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*ARGS)[0] == 0
    (ref,) = (tmp_path / "ref").glob("study-gd-basics/*/")
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    # saves: rates, nonconvex, constant, exponential (the 4th: killed), polynomial, cosine
    out = subprocess.run([sys.executable, "-c", KILLER, "4", *ARGS], env=env, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == -signal.SIGKILL, out.stderr
    (run_dir,) = home.glob("study-gd-basics/*/")
    kept = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert kept["extra"]["done"] == ["rates", "nonconvex", "schedule.constant"]
    assert any('"schedule-exponential"' in line for line in (run_dir / "metrics.jsonl").read_text().splitlines())

    calls = {"part_rates": 0, "part_nonconvex": 0, "part_schedule": 0}
    for name in calls:
        real = getattr(gb, name)
        monkeypatch.setattr(gb, name, lambda *a, _real=real, _name=name, **k: (
            calls.__setitem__(_name, calls[_name] + 1), _real(*a, **k))[1])
    code, _, err = cli(*ARGS)
    assert code == 0 and "resuming" in err, err
    assert calls == {"part_rates": 0, "part_nonconvex": 0, "part_schedule": 3}
    lines = lambda d: [(r["step"], r["split"], r["name"], r["value"])  # noqa: E731
                       for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert lines(ref) == lines(run_dir)
    for name in ("summary.json", *[f"tables/{t}.json" for t in ("1_gd_x2", "2_gd_newton", "3_schedules", "4_checks")]):
        assert (ref / name).read_text() == (run_dir / name).read_text(), name


def test_cuda_without_a_gpu_is_a_one_line_usage_error(cli, home):
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    code, _, err = cli("run", "study-gd-basics", "--quick", "--no-report", "-o", "train.device=cuda")
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert not any(home.glob("study-gd-basics/*"))
