"""The hand-written optimizers against torch.optim, step for step (both built by name through the one
registry of train/optim.py); the 2-D study end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.practicals.optim2d import registry_name
from practicum.train.optim import OPTIMIZERS, build_optimizer


def build(name, params, implementation="scratch", **hyper):
    """``scratch-<name>`` or its torch twin, from the registry (as optim2d builds them)."""
    return build_optimizer(registry_name(name, implementation), params, **hyper)


HYPER = {
    "sgd": dict(lr=0.05),
    "momentum": dict(lr=0.05, momentum=0.9),
    "adagrad": dict(lr=0.1, eps=1e-10),
    "rmsprop": dict(lr=0.01, alpha=0.9, eps=1e-8),
    "adadelta": dict(lr=1.0, rho=0.9, eps=1e-6),
    "adam": dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8),
}


def _problem(seed=0):
    """A convex problem with two parameter tensors: softmax regression + L2 (float64)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(32, 5, generator=g, dtype=torch.float64)
    y = torch.randint(0, 3, (32,), generator=g)
    W0 = torch.randn(5, 3, generator=g, dtype=torch.float64)
    b0 = torch.randn(3, generator=g, dtype=torch.float64)

    def loss(W, b):
        return torch.nn.functional.cross_entropy(X @ W + b, y) + 0.01 * (W ** 2).sum()

    return W0, b0, loss


def test_registry_has_the_six():
    assert [n for n in OPTIMIZERS.names() if n.startswith("scratch-")] == [f"scratch-{n}" for n in sorted(HYPER)]


# float64, 40 steps, two implementations that round differently (ours and torch's order of the
# same operations) on gradients whose last bits depend on the CPU's kernels: the two drift apart
# a little each step, and RMSProp amplifies it most (each step divides by sqrt(s) + eps, with s
# starting from 0). Measured here: at most 8.9e-13 relative after 40 steps (RMSProp; the others
# <= 7e-14), and more than 1e-12 on an AVX-512 Xeon. 1e-10 is ~100x the drift, and still 7 orders
# below what a wrong formula gives at step 1 (a missing bias correction or sqrt: ~1e-3).
FLOAT64_RTOL = 1e-10


@pytest.mark.parametrize("name", sorted(HYPER))
def test_step_for_step_against_torch_optim(name):
    W0, b0, loss = _problem()
    ours = [W0.clone().requires_grad_(), b0.clone().requires_grad_()]
    theirs = [W0.clone().requires_grad_(), b0.clone().requires_grad_()]
    opt_ours = build(name, ours, "scratch", **HYPER[name])
    opt_theirs = build(name, theirs, "torch", **HYPER[name])
    assert type(opt_ours).__module__ == "practicum.train.optim_scratch"
    assert type(opt_theirs).__module__.startswith("torch.optim")
    for step in range(40):
        for params, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            loss(*params).backward()
            opt.step()
        for a, b in zip(ours, theirs):
            torch.testing.assert_close(a, b, rtol=FLOAT64_RTOL, atol=1e-12, msg=f"{name} step {step + 1}")
    assert not torch.equal(ours[0], W0)  # it did move


@pytest.mark.parametrize("name", sorted(HYPER))
def test_float32_agrees_to_rounding(name):
    W0, b0, loss = _problem(1)
    a = W0.float().clone().requires_grad_()
    b = W0.float().clone().requires_grad_()
    oa, ob = build(name, [a], **HYPER[name]), build(name, [b], "torch", **HYPER[name])
    for _ in range(20):
        for p, o in ((a, oa), (b, ob)):
            o.zero_grad()
            loss(p.double(), b0).backward()
            o.step()
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_first_steps_by_hand():
    """One step from x = 3 on f = x^2 (g = 6): the update each rule gives, computed on paper."""
    def first_step(name, **hyper):
        x = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
        opt = build(name, [x], **hyper)
        (x ** 2).sum().backward()
        opt.step()
        return float(x.detach())

    assert first_step("sgd", lr=0.1) == pytest.approx(3 - 0.6)
    assert first_step("momentum", lr=0.1, momentum=0.9) == pytest.approx(3 - 0.6)  # v = g at step 1
    assert first_step("adagrad", lr=0.1, eps=0.0) == pytest.approx(3 - 0.1)  # g / sqrt(g^2) = 1
    # rmsprop: s = 0.1 * 36 = 3.6 -> step 0.1 * 6 / sqrt(3.6)
    assert first_step("rmsprop", lr=0.1, alpha=0.9, eps=0.0) == pytest.approx(3 - 0.6 / 3.6 ** 0.5)
    # adam: m_hat = g, v_hat = g^2 -> step lr (eps 0)
    assert first_step("adam", lr=0.1, eps=0.0) == pytest.approx(3 - 0.1)
    # adadelta: s = 3.6, delta = sqrt(eps) / sqrt(3.6 + eps) * 6
    eps = 1e-2
    expected = 3 - eps ** 0.5 / (3.6 + eps) ** 0.5 * 6
    assert first_step("adadelta", lr=1.0, rho=0.9, eps=eps) == pytest.approx(expected)


def test_momentum_second_step_by_hand():
    x = torch.tensor([3.0], dtype=torch.float64, requires_grad=True)
    opt = build("momentum", [x], lr=0.1, momentum=0.5)
    for _ in range(2):
        opt.zero_grad()
        (x ** 2).sum().backward()
        opt.step()
    # step 1: v = 6, x = 2.4; step 2: g = 4.8, v = 0.5 * 6 + 4.8 = 7.8, x = 2.4 - 0.78
    assert float(x.detach()) == pytest.approx(1.62)


def test_state_dict_round_trip_resumes_exactly():
    W0, b0, loss = _problem(2)

    def steps(opt, params, n):
        for _ in range(n):
            opt.zero_grad()
            loss(*params).backward()
            opt.step()

    full = [W0.clone().requires_grad_(), b0.clone().requires_grad_()]
    opt = build("adam", full, lr=0.01)
    steps(opt, full, 10)
    half = [W0.clone().requires_grad_(), b0.clone().requires_grad_()]
    opt1 = build("adam", half, lr=0.01)
    steps(opt1, half, 5)
    saved = opt1.state_dict()
    opt2 = build("adam", half, lr=0.01)
    opt2.load_state_dict(saved)
    steps(opt2, half, 5)
    for a, b in zip(full, half):
        assert torch.equal(a, b)


def test_gradient_descent_walk_matches_closed_form():
    """On 0.1 x1^2 + 2 x2^2, GD multiplies x1 by (1 - 0.2 lr) and x2 by (1 - 4 lr) each step."""
    from practicum.practicals.optim2d import FUNCTIONS, walk

    path = walk(FUNCTIONS["ill_conditioned"], "sgd", {"lr": 0.4}, 20, "scratch")
    t = np.arange(21)
    np.testing.assert_allclose(path[:, 0], -5 * 0.92 ** t, rtol=1e-12)
    np.testing.assert_allclose(path[:, 1], -2 * (-0.6) ** t, rtol=1e-12, atol=1e-15)


def test_saddle_walk_stops_when_it_leaves_the_box():
    from practicum.practicals.optim2d import FUNCTIONS, walk

    path = walk(FUNCTIONS["saddle"], "adam", {"lr": 0.4}, 200, "scratch")
    assert len(path) < 201 and abs(path[-1, 1]) > 3


def test_a_walk_whose_f_overflows_is_diverged():
    from practicum.practicals.optim2d import FUNCTIONS, walk
    from practicum.train.loop import Diverged

    with pytest.raises(Diverged, match=r"sgd \(scratch\) diverged at step 1: loss = inf, learning rate 1e\+200"):
        walk(FUNCTIONS["ill_conditioned"], "sgd", {"lr": 1e200}, 20, "scratch")


def test_study_quick_end_to_end(cli, home):
    code, out, err = cli("run", "study-optimizers-2d", "--quick", "--no-report")
    assert code == 0, err
    rec = json.loads(cli("runs", "--json")[1])[0]
    summary, run_dir = rec["summary"], Path(rec["dir"])
    assert summary["torch/max_abs_diff"] < 1e-9
    table = json.loads((run_dir / "tables" / "optimizers_2d.json").read_text())
    assert {r[1] for r in table["rows"]} == set(HYPER)
    for fname in {r[0] for r in table["rows"]}:
        assert (run_dir / "figures" / f"trajectories_{fname}.png").stat().st_size > 10_000
        assert (run_dir / "figures" / f"convergence_{fname}.png").is_file()
    with np.load(run_dir / "trajectories.npz") as z:
        assert z["ill_conditioned.sgd"].shape == (6, 2)  # quick: 5 steps + the start
