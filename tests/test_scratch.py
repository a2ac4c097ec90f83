"""The NumPy engine against two oracles: central finite differences (float64) and torch autograd
(float32, same inputs and weights). Tests are generated from the registries, so a newly
registered activation or loss gets the same checks."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from practicum.errors import PracticumError, UsageError
from practicum.scratch import (ACTIVATIONS, LOSSES, SGD, Linear, ReLU, l2_penalty, lr_at,
                               mlp)

F32 = dict(rtol=1e-5, atol=1e-6)  # float32 results vs torch: only the summation order differs


def tt(a: np.ndarray, grad: bool = False) -> torch.Tensor:
    return torch.tensor(a, requires_grad=grad)


def numgrad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar f() with respect to x (float64, perturbed in place)."""
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + eps
        up = f()
        x[i] = old - eps
        down = f()
        x[i] = old
        g[i] = (up - down) / (2 * eps)
    return g


def make_layer(name: str, rng):
    if name == "linear":
        return Linear(5, 4, rng)
    if name == "relu_inplace":
        return ReLU(inplace=True)
    return ACTIVATIONS[name]()


TORCH_LAYER = {
    "relu": torch.relu, "relu_inplace": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
}
LAYERS = ["linear", *ACTIVATIONS, "relu_inplace"]


# --- layers -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_finite_differences(name):
    rng = np.random.default_rng(0)
    layer = make_layer(name, rng)
    if hasattr(layer, "astype"):
        layer.astype(np.float64)
    x = rng.standard_normal((3, 5))  # float64
    r = rng.standard_normal(layer.forward(x.copy()).shape)  # f = sum(layer(x) * r), so df/dout = r

    def f():
        return float(np.sum(layer.forward(x.copy()) * r))  # copy: the in-place ReLU overwrites x

    layer.forward(x.copy())
    dx = layer.backward(r.copy())
    np.testing.assert_allclose(dx, numgrad(f, x), rtol=1e-6, atol=1e-8)
    if isinstance(layer, Linear):
        dW, db = layer.dW.copy(), layer.db.copy()
        np.testing.assert_allclose(dW, numgrad(f, layer.W), rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(db, numgrad(f, layer.b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", LAYERS)
def test_layer_matches_torch(name):
    rng = np.random.default_rng(1)
    layer = make_layer(name, rng)
    x = rng.standard_normal((6, 5), dtype=np.float32)
    xt = tt(x, grad=True)
    if isinstance(layer, Linear):
        layer.b[:] = rng.standard_normal(4, dtype=np.float32)  # a non-zero bias
        Wt, bt = tt(layer.W, grad=True), tt(layer.b, grad=True)
        out_t = F.linear(xt, Wt.T, bt)  # torch stores weight as (out, in); we store W as (in, out)
    else:
        out_t = TORCH_LAYER[name](xt)

    out = layer.forward(x.copy())
    r = rng.standard_normal(out.shape, dtype=np.float32)
    out_t.backward(tt(r))
    dx = layer.backward(r.copy())

    assert out.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(out, out_t.detach().numpy(), **F32)
    np.testing.assert_allclose(dx, xt.grad.numpy(), **F32)
    if isinstance(layer, Linear):
        np.testing.assert_allclose(layer.dW, Wt.grad.numpy(), **F32)
        np.testing.assert_allclose(layer.db, bt.grad.numpy(), **F32)


def test_relu_inplace_overwrites_only_when_asked():
    x = np.array([[-1.0, 2.0]], dtype=np.float32)
    ReLU().forward(x)
    assert x[0, 0] == -1.0
    ReLU(inplace=True).forward(x)
    assert x[0, 0] == 0.0


@pytest.mark.parametrize("activation", list(ACTIVATIONS))
def test_mlp_matches_torch_sequential(activation):
    rng = np.random.default_rng(2)
    sizes = [7, 9, 6, 3]
    model = mlp(sizes, activation, rng)
    for p in model.params().values():  # non-zero biases too
        p += rng.standard_normal(p.shape, dtype=np.float32) * 0.1
    act = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid, "tanh": torch.nn.Tanh}[activation]
    ref = torch.nn.Sequential(torch.nn.Linear(7, 9), act(), torch.nn.Linear(9, 6), act(), torch.nn.Linear(6, 3))
    with torch.no_grad():
        for k, p in model.params().items():  # "0.W" -> "0.weight" (transposed), "0.b" -> "0.bias"
            i, name = k.split(".")
            target = ref.get_parameter(f"{i}.{'weight' if name == 'W' else 'bias'}")
            target.copy_(tt(p.T if name == "W" else p))

    x = rng.standard_normal((4, 7), dtype=np.float32)
    g = rng.standard_normal((4, 3), dtype=np.float32)
    xt = tt(x, grad=True)
    out_t = ref(xt)
    out_t.backward(tt(g))
    out = model(x)
    np.testing.assert_allclose(out, out_t.detach().numpy(), **F32)
    dx = model.backward(g.copy())
    np.testing.assert_allclose(dx, xt.grad.numpy(), **F32)
    for k, grad in model.grads().items():
        i, name = k.split(".")
        tg = ref.get_parameter(f"{i}.{'weight' if name == 'W' else 'bias'}").grad.numpy()
        np.testing.assert_allclose(grad, tg.T if name == "W" else tg, **F32)

    # Skipping the first layer's input gradient leaves every parameter gradient unchanged.
    before = {k: v.copy() for k, v in model.grads().items()}
    model(x)
    assert model.backward(g.copy(), need_input_grad=False) is None
    for k, v in model.grads().items():
        np.testing.assert_array_equal(v, before[k])


def test_mlp_shapes_init_and_registry_errors():
    model = mlp([784, 1024, 10], "relu", np.random.default_rng(0))
    assert [type(layer).__name__ for layer in model.layers] == ["Linear", "ReLU", "Linear"]
    assert {k: v.shape for k, v in model.params().items()} == {
        "0.W": (784, 1024), "0.b": (1024,), "2.W": (1024, 10), "2.b": (10,)}
    W = model.params()["0.W"]
    assert W.dtype == np.float32
    assert abs(W.std() / math.sqrt(2 / 784) - 1) < 0.01  # He: std sqrt(2 / fan_in)
    xav = Linear(300, 100, np.random.default_rng(0), init="xavier").W
    a = math.sqrt(6 / 400)
    assert np.abs(xav).max() <= a and abs(xav.std() / (a / math.sqrt(3)) - 1) < 0.02
    with pytest.raises(UsageError, match="did you mean 'relu'"):
        mlp([2, 3, 1], "rellu", np.random.default_rng(0))
    with pytest.raises(UsageError, match="did you mean 'svm'"):
        LOSSES["svn"]
    with pytest.raises(UsageError, match="did you mean 'xavier'"):
        Linear(2, 3, np.random.default_rng(0), init="xavir")
    with pytest.raises(UsageError, match="float64 input"):  # a silent upcast of the whole step
        model(np.zeros((2, 784)))


def test_seeded_init_is_reproducible():
    a = mlp([20, 16, 4], "tanh", np.random.default_rng(42)).state_dict()
    b = mlp([20, 16, 4], "tanh", np.random.default_rng(42)).state_dict()
    c = mlp([20, 16, 4], "tanh", np.random.default_rng(43)).state_dict()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.W"], c["0.W"])


# --- losses -------------------------------------------------------------------------------------

def torch_loss(name: str, s: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    if name == "ce":
        return F.cross_entropy(s, y)
    if name == "mse":
        return F.mse_loss(s, F.one_hot(y, s.shape[1]).to(s.dtype))
    if name == "svm":  # CS231n form, written out; multi_margin_loss is the same / C (checked below)
        margins = (s - s.gather(1, y[:, None]) + 1).clamp(min=0)
        margins = margins * (1 - F.one_hot(y, s.shape[1]).to(s.dtype))
        return margins.sum() / s.shape[0]
    raise KeyError(name)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_finite_differences(name):
    rng = np.random.default_rng(3)
    s = rng.standard_normal((5, 4))  # float64
    y = rng.integers(0, 4, 5)
    loss, grad = LOSSES[name](s, y)
    np.testing.assert_allclose(grad, numgrad(lambda: LOSSES[name](s, y)[0], s), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_torch(name):
    rng = np.random.default_rng(4)
    s = rng.standard_normal((8, 10), dtype=np.float32) * 3
    y = rng.integers(0, 10, 8)
    st = tt(s, grad=True)
    ref = torch_loss(name, st, torch.tensor(y))
    ref.backward()
    loss, grad = LOSSES[name](s.copy(), y)
    assert isinstance(loss, float) and grad.dtype == np.float32 and grad.shape == s.shape
    assert loss == pytest.approx(ref.item(), rel=1e-5)
    np.testing.assert_allclose(grad, st.grad.numpy(), **F32)


def test_svm_is_multi_margin_loss_times_classes():
    rng = np.random.default_rng(5)
    s = rng.standard_normal((8, 10), dtype=np.float32)
    y = rng.integers(0, 10, 8)
    ref = F.multi_margin_loss(tt(s), torch.tensor(y), margin=1.0).item() * 10
    assert LOSSES["svm"](s, y)[0] == pytest.approx(ref, rel=1e-5)


def test_cross_entropy_is_stable_for_huge_scores():
    s = np.array([[1e4, 0.0, -1e4], [0.0, 3e4, 0.0]], dtype=np.float32)
    y = np.array([1, 1])
    st = tt(s, grad=True)
    ref = F.cross_entropy(st, torch.tensor(y))
    ref.backward()
    loss, grad = LOSSES["ce"](s, y)
    assert np.isfinite(loss) and np.all(np.isfinite(grad))
    assert loss == pytest.approx(ref.item(), rel=1e-6)
    np.testing.assert_allclose(grad, st.grad.numpy(), **F32)


def test_l2_penalty_weights_only_against_both_oracles():
    rng = np.random.default_rng(6)
    params = mlp([4, 5, 3], "relu", rng).astype(np.float64).params()
    params["0.b"] += 1.0  # a penalised bias would change the value
    lam = 0.3
    penalty, grads = l2_penalty(params, lam)
    assert set(grads) == {"0.W", "2.W"}  # biases are not penalised
    for k, g in grads.items():
        np.testing.assert_allclose(g, numgrad(lambda: l2_penalty(params, lam)[0], params[k]), rtol=1e-6)
    ts = {k: tt(v, grad=True) for k, v in params.items()}
    ref = 0.5 * lam * sum((t ** 2).sum() for k, t in ts.items() if k.endswith(".W"))
    ref.backward()
    assert penalty == pytest.approx(ref.item(), rel=1e-12)
    for k, g in grads.items():
        np.testing.assert_allclose(g, ts[k].grad.numpy(), rtol=1e-12)
    # grads=...: added in place to existing gradient buffers, biases untouched.
    bufs = {k: np.ones_like(v) for k, v in params.items()}
    same, out = l2_penalty(params, lam, grads=bufs)
    assert out is bufs and same == penalty
    np.testing.assert_allclose(bufs["0.W"], 1 + lam * params["0.W"])
    np.testing.assert_array_equal(bufs["0.b"], 1)


# --- optimiser and schedules --------------------------------------------------------------------

@pytest.mark.parametrize("momentum,nesterov", [(0.0, False), (0.9, False), (0.9, True)])
def test_sgd_matches_torch_step_for_step(momentum, nesterov):
    rng = np.random.default_rng(7)
    params = {"0.W": rng.standard_normal((4, 3), dtype=np.float32), "0.b": rng.standard_normal(3, dtype=np.float32)}
    ts = {k: tt(v, grad=True) for k, v in params.items()}
    opt = SGD(params, lr=0.1, momentum=momentum, nesterov=nesterov)
    ref = torch.optim.SGD(ts.values(), lr=0.1, momentum=momentum, nesterov=nesterov)
    for step in range(6):
        if step == 3:  # a schedule changing the learning rate mid-run
            opt.lr = 0.05
            ref.param_groups[0]["lr"] = 0.05
        grads = {k: rng.standard_normal(v.shape, dtype=np.float32) for k, v in params.items()}
        for k, t in ts.items():
            t.grad = tt(grads[k])
        opt.step(grads)
        ref.step()
        for k, v in params.items():
            assert v.dtype == np.float32
            np.testing.assert_allclose(v, ts[k].detach().numpy(), rtol=1e-6, atol=1e-7)


def test_schedules_hand_computed():
    assert lr_at({}, 0.1, 7.3) == 0.1
    assert lr_at({"name": "constant"}, 0.1, 0.0) == 0.1
    step = {"name": "step", "decay_every": 10, "decay_rate": 0.5}
    assert [lr_at(step, 0.1, e) for e in (0, 9.99, 10, 25)] == pytest.approx([0.1, 0.1, 0.05, 0.025])
    cos = {"name": "cosine", "warmup_epochs": 5, "total_epochs": 105, "min_lr": 0.02}
    assert lr_at(cos, 0.2, 0) == 0.0  # warm-up starts at zero
    assert lr_at(cos, 0.2, 2.5) == pytest.approx(0.1)  # halfway up
    assert lr_at(cos, 0.2, 5) == pytest.approx(0.2)  # end of warm-up: the peak
    assert lr_at(cos, 0.2, 55) == pytest.approx(0.11)  # cosine halfway: (0.2 + 0.02) / 2
    assert lr_at(cos, 0.2, 105) == pytest.approx(0.02)  # end of cosine: min_lr
    assert lr_at(cos, 0.2, 300) == pytest.approx(0.02)  # and it stays there
    assert lr_at({"name": "cosine", "total_epochs": 10}, 0.2, 0) == pytest.approx(0.2)  # no warm-up
    seed = {"name": "cosine_exp", "warmup_epochs": 5, "total_epochs": 105, "decay_rate": 0.98}
    assert lr_at(seed, 0.2, 5) == pytest.approx(0.2 * 0.98 ** 5)
    assert lr_at(seed, 0.2, 55) == pytest.approx(0.1 * 0.98 ** 55)
    assert lr_at(seed, 0.2, 2.5) == pytest.approx(0.1 * 0.98 ** 2.5)


def test_schedule_config_errors_name_the_key():
    with pytest.raises(UsageError, match="did you mean 'warmup_epochs'"):
        lr_at({"name": "cosine", "total_epochs": 10, "warmup_epoch": 1}, 0.1, 0)
    with pytest.raises(UsageError, match="total_epochs"):
        lr_at({"name": "cosine"}, 0.1, 0)
    with pytest.raises(UsageError, match="did you mean 'cosine'"):
        lr_at({"name": "cosin"}, 0.1, 0)


# --- training, dtype discipline, resume ---------------------------------------------------------

def train_steps(model, opt, x, y, steps, loss="svm", lam=1e-3):
    losses = []
    for _ in range(steps):
        loss_value, dscores = LOSSES[loss](model(x), y)
        model.backward(dscores, need_input_grad=False)
        reg, _ = l2_penalty(model.params(), lam, grads=model.grads())
        opt.step(model.grads())
        losses.append(loss_value + reg)
    return losses


@pytest.mark.parametrize("loss", list(LOSSES))
def test_training_step_stays_float32(loss):
    rng = np.random.default_rng(8)
    model = mlp([12, 16, 4], "sigmoid", rng)
    opt = SGD(model.params(), lr=0.1, momentum=0.9, nesterov=True)
    x = rng.standard_normal((8, 12), dtype=np.float32)
    y = rng.integers(0, 4, 8)
    opt.lr = lr_at({"name": "cosine_exp", "total_epochs": 3, "warmup_epochs": 1, "decay_rate": 0.9}, 0.1, 1.5)
    train_steps(model, opt, x, y, 2, loss=loss)
    arrays = [model(x), *model.params().values(), *model.grads().values(), *opt.state_dict().values()]
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}


@pytest.mark.parametrize("loss", list(LOSSES))
def test_tiny_mlp_overfits_a_small_batch(loss):
    rng = np.random.default_rng(9)
    x = rng.standard_normal((16, 10), dtype=np.float32)
    y = rng.integers(0, 4, 16)
    model = mlp([10, 32, 4], "relu", rng)
    opt = SGD(model.params(), lr=0.2, momentum=0.9)
    losses = train_steps(model, opt, x, y, 300, loss=loss, lam=0.0)
    assert losses[-1] < 0.05 * losses[0]
    assert np.mean(np.argmax(model(x), axis=1) == y) == 1.0


def test_state_dict_round_trip_and_exact_resume(tmp_path):
    rng = np.random.default_rng(10)
    x = rng.standard_normal((8, 6), dtype=np.float32)
    y = rng.integers(0, 3, 8)
    model = mlp([6, 10, 3], "relu", np.random.default_rng(0))
    opt = SGD(model.params(), lr=0.05, momentum=0.9)
    train_steps(model, opt, x, y, 3)
    np.savez(tmp_path / "model.npz", **model.state_dict())
    np.savez(tmp_path / "opt.npz", **opt.state_dict())
    train_steps(model, opt, x, y, 2)  # the uninterrupted run continues

    resumed = mlp([6, 10, 3], "relu", np.random.default_rng(1))  # different init, overwritten below
    ropt = SGD(resumed.params(), lr=0.05, momentum=0.9)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as f:
        resumed.load_state_dict(dict(f))
    with np.load(tmp_path / "opt.npz", allow_pickle=False) as f:
        ropt.load_state_dict(dict(f))
    train_steps(resumed, ropt, x, y, 2)
    for k, v in model.state_dict().items():  # bit-identical, not merely close
        assert resumed.state_dict()[k].dtype == v.dtype
        np.testing.assert_array_equal(resumed.state_dict()[k], v)

    state = model.state_dict()
    state.pop("2.b")
    with pytest.raises(PracticumError, match="2.b"):
        resumed.load_state_dict(state)
    with pytest.raises(PracticumError, match="shape"):
        resumed.load_state_dict({**model.state_dict(), "0.W": np.zeros((2, 2), np.float32)})


def test_engine_never_imports_torch():
    code = "import sys, practicum.scratch; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
