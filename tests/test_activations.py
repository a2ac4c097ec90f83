"""The activations practical: every registered non-linearity checked against its derivative and finite
differences, sort/permute as permutations, the GIF's frame count and size, divergence caught per
activation, exact resume, and the --quick catalog entry end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from practicum.practicals.activations import ACTIVATIONS, MoonNet, permute_by, sort_features
from practicum.report.boundary import render_frame

# Derivatives by hand, the oracle for the pointwise functions (torch supplies the autograd side).
DERIVATIVES = {
    "abs": torch.sign,
    "exp": torch.exp,
    "exp_cos": lambda x: torch.exp(x) * (torch.cos(x) - torch.sin(x)),
    "sin": torch.cos,
    "square": lambda x: 2 * x,
    "relu": lambda x: (x > 0).double(),
    "sigmoid": lambda x: torch.sigmoid(x) * (1 - torch.sigmoid(x)),
    "reciprocal": lambda x: -1 / x**2,
    "tan": lambda x: 1 / torch.cos(x) ** 2,
    "sgn": torch.zeros_like,  # 0 almost everywhere: why sgn cannot train
}
POINTWISE = [n for n in ACTIVATIONS if ACTIVATIONS[n].kind == "pointwise"]
TINY = ["-o", "train.steps=40", "-o", "animation.frames=5", "-o", "animation.size=72",
        "-o", "animation.resolution=16", "-o", "data.n_samples=200"]


def inputs(shape=(6, 10), seed=0) -> torch.Tensor:
    """float64 values in (-1.3, 1.3), kept 0.1 away from 0 (kinks, the pole of 1/x) and from the
    poles of tan at +-pi/2, so finite differences are meaningful."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(shape, generator=g, dtype=torch.float64) - 0.5) * 2.4
    return torch.where(x.abs() < 0.1, x.sign() * 0.1 + x, x)


def test_registry_holds_the_seeds_twelve():
    assert set(ACTIVATIONS) == set(DERIVATIVES) | {"sort", "permute"}
    assert {n for n in ACTIVATIONS if not ACTIVATIONS[n].seed_fits} == {"reciprocal", "tan", "sgn"}


@pytest.mark.parametrize("name", POINTWISE)
def test_pointwise_forward_and_backward(name):
    fn = ACTIVATIONS[name].fn
    x = inputs().requires_grad_()
    y = fn(x)
    assert y.shape == x.shape
    y.sum().backward()
    torch.testing.assert_close(x.grad, DERIVATIVES[name](x.detach()))
    assert torch.autograd.gradcheck(fn, (inputs(seed=1).requires_grad_(),))  # finite differences


def test_sort_is_a_permutation_with_routed_gradient():
    h = inputs().requires_grad_()
    out = sort_features(h)
    assert out.shape == h.shape
    assert (out[:, 1:] >= out[:, :-1]).all()  # each row ascending
    torch.testing.assert_close(out.detach(), torch.sort(h.detach(), dim=-1).values)  # same multiset
    w = torch.arange(10, dtype=torch.float64)  # d sum(w * sort(h)) / dh[i] = w[rank of h[i]]
    (out * w).sum().backward()
    torch.testing.assert_close(h.grad, w[torch.argsort(torch.argsort(h.detach(), -1), -1)])
    assert torch.autograd.gradcheck(sort_features, (inputs(seed=2).requires_grad_(),))


def test_permute_reorders_y_by_the_sort_order_of_h():
    h, y = inputs(seed=3).requires_grad_(), inputs(seed=4).requires_grad_()
    out = permute_by(y, h)
    assert out.shape == y.shape
    order = torch.argsort(h.detach(), dim=-1)
    for n in range(len(y)):
        assert sorted(order[n].tolist()) == list(range(10))  # a permutation of the features
        torch.testing.assert_close(out[n].detach(), y[n].detach()[order[n]])
    out.sum().backward()
    torch.testing.assert_close(y.grad, torch.ones_like(y))  # a permutation passes gradients 1:1
    assert h.grad is None  # ... and none through the ranking
    assert torch.autograd.gradcheck(lambda t: permute_by(t, h.detach()), (inputs(seed=5).requires_grad_(),))


@pytest.mark.parametrize("name", ACTIVATIONS.names())
def test_moonnet_forward_backward_for_every_activation(name):
    torch.manual_seed(0)
    model = MoonNet(name, hidden=10)
    logits = model(torch.randn(32, 2))
    assert logits.shape == (32,)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(32)).backward()
    grads = {k: p.grad for k, p in model.named_parameters()}
    assert all(g is not None and torch.isfinite(g).all() for g in grads.values())
    if name == "sgn":  # nothing reaches the first two layers
        assert not grads["fc1.weight"].any() and not grads["fc2.weight"].any()
        assert grads["fc3.weight"].any()
    else:
        assert grads["fc1.weight"].any()


def test_frame_renders_nan_as_grey_and_keeps_its_size():
    from practicum.report.boundary import NAN, Canvas

    canvas = Canvas(np.array([-1.0, -1.0]), np.array([1.0, 1.0]), 64, 64 - 30, 8)
    prob = np.linspace(0, 1, 64)
    prob[:8] = np.nan  # the top row of the coarse grid
    empty = (Image.new("P", (64, 34)), Image.new("L", (64, 34)))
    frame = render_frame(prob, canvas, empty, ["title", "line 2"])
    assert frame.size == (64, 64) and frame.mode == "P"
    assert (np.asarray(frame)[30] == NAN).any()


# --- through the CLI -----------------------------------------------------------------------------


def only_run(cli) -> dict:
    _, out, _ = cli("runs", "--json")
    (rec,) = json.loads(out)
    return rec


def table(run_dir: Path) -> dict[str, dict]:
    t = json.loads((run_dir / "tables" / "activations.json").read_text())
    return {row[0]: dict(zip(t["columns"], row)) for row in t["rows"]}


def test_gif_has_the_configured_frames_and_size(cli):
    # a long name at a small size: the titles are cut, the frames must still all be there
    code, _, err = cli("run", "activations-halfmoon", "--no-report", *TINY,
                       "-o", 'model.activations=["reciprocal"]', "-o", "animation.frames=7",
                       "-o", "animation.size=80")
    assert code == 0, err
    gif = Path(only_run(cli)["dir"]) / "figures" / "boundary_reciprocal.gif"
    with Image.open(gif) as im:
        assert im.format == "GIF" and im.n_frames == 7 and im.size == (80, 80)
        assert im.info["loop"] == 0


def test_divergence_is_reported_and_the_others_finish(cli):
    # exp at lr 10: after one step exp(fc2(exp(.))) overflows, inf - inf = NaN. 1/x and tan are the
    # seed's failures; in float32 under AdamW they rarely NaN: mostly they just do not fit.
    code, _, err = cli("run", "activations-halfmoon", "--no-report", *TINY, "-o", "optim.lr=10.0",
                       "-o", 'model.activations=["exp", "reciprocal", "tan", "relu"]')
    assert code == 0, err
    rec = only_run(cli)
    run_dir = Path(rec["dir"])
    rows = table(run_dir)
    assert list(rows) == ["exp", "reciprocal", "tan", "relu"]
    assert rows["exp"]["result"].startswith("diverged at step") and rows["exp"]["diverged at step"] >= 1
    assert rows["exp"]["test acc"] is None  # NaN is recorded as missing, not as a number
    assert rows["exp"]["mean |grad W1|"] > 0  # sampled at step 1, before the divergence
    for name in ("reciprocal", "tan"):  # they fail, one way or the other
        assert rows[name]["result"] == "does not fit" or rows[name]["result"].startswith("diverged")
    # relu trains after the divergence, to the end
    assert rows["relu"]["diverged at step"] is None and 0 <= rows["relu"]["test acc"] <= 1
    summary = rec["summary"]
    assert summary["train/diverged"] >= 1 and np.isnan(summary["test/accuracy_exp"])
    with Image.open(run_dir / "figures" / "boundary_exp.gif") as im:
        assert im.n_frames == 5  # held on the last finite boundary
    assert (run_dir / "figures" / "boundaries.png").is_file()


def test_interrupted_run_resumes_at_the_next_activation(cli, home):
    from practicum.store import Index

    args = ("run", "activations-halfmoon", "--no-report", *TINY,
            "-o", 'model.activations=["relu", "sort", "sin"]')
    assert cli(*args)[0] == 0
    rec = only_run(cli)
    run_dir = Path(rec["dir"])
    metrics = [{k: v for k, v in json.loads(line).items() if k != "time"}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    # pretend the process died while training "sin": its checkpoint never got written
    (run_dir / "checkpoints" / "sin.pt").unlink()
    (run_dir / "summary.json").unlink()
    Index(home).set_status(rec["id"], "interrupted")

    code, out, err = cli(*args)
    assert code == 0, err
    again = only_run(cli)
    assert again["id"] == rec["id"] and again["status"] == "finished"
    assert again["summary"] == rec["summary"]
    resumed = [{k: v for k, v in json.loads(line).items() if k != "time"}
               for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert resumed == metrics  # sin's lines rewritten once, identically


def test_unknown_activation_names_the_nearest(cli):
    code, _, err = cli("run", "activations-halfmoon", "--quick", "-o", 'model.activations=["rleu"]')
    assert code == 2 and "unknown activation 'rleu' (did you mean 'relu'?)" in err


def test_quick_catalog_entry_end_to_end(cli):
    code, out, err = cli("run", "activations-halfmoon", "--quick")
    assert code == 0, err
    rec = only_run(cli)
    run_dir = Path(rec["dir"])
    names = ["relu", "sin", "sort", "permute", "tan", "sgn"]
    assert list(table(run_dir)) == names
    for name in names:
        with Image.open(run_dir / "figures" / f"boundary_{name}.gif") as im:
            assert im.n_frames == 5 and im.size == (96, 96)
    summary = rec["summary"]
    assert summary["test/accuracy"] >= 0.8  # the entry's quick_min: worst of relu, sin, sort, permute
    assert summary["test/accuracy_sort"] >= 0.9 and summary["test/accuracy_permute"] >= 0.85
    assert table(run_dir)["sgn"]["mean |grad W1|"] == 0
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/gif;base64,") == len(names)


def test_frames_must_fit_steps_and_size(cli):
    code, _, err = cli("run", "activations-halfmoon", "--quick", "-o", "animation.frames=200")
    assert code == 2 and "animation.frames = 200 needs train.steps >= 199" in err
    code, _, err = cli("run", "activations-halfmoon", "--quick", "-o", "animation.frames=120",
                       "-o", "train.steps=300")
    assert code == 2 and "needs animation.size >= 120" in err
