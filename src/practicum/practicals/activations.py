"""Seed 000, practical 5: which hidden non-linearities let a tiny MLP fit half-moons?

One MLP 2 -> 10 -> 10 -> 1 (plain torch, a logit out, BCE-with-logits, AdamW by default, full
batch) is trained per activation from the *same* initial weights, and each run is filmed: an
animated GIF of the decision boundary every few steps, with the training points on top. A final grid shows every
boundary side by side, and a table gives final accuracy, loss, and whether training diverged.

Where the non-linearity sits (as in the seed's code):

- pointwise ``f`` (abs, exp, exp_cos, sin, square, relu, sigmoid, reciprocal, tan, sgn) follows
  *both* hidden layers -- the seed's "abs x abs":   ``fc3(f(fc2(f(fc1(x)))))``;
- ``sort`` sorts the first hidden vector along the feature dimension, once:
  ``fc3(fc2(sort(fc1(x))))``. Sorting is piecewise linear (the identity inside each region where
  the order of the 10 features is fixed), and it is permutation-*invariant*: whatever order fc1
  puts its units in, sort returns the same vector;
- ``permute`` computes ``h = fc1(x)`` and ``y = fc2(h)`` with no activation at all, then reorders
  ``y`` by the sort order of ``h``: ``y'[n, j] = y[n, argsort(h[n])[j]]`` (the seed's
  ``torch.gather(fc2(x), -1, torch.sort(x, -1).indices)``); the output is ``fc3(y')``. The index
  is piecewise constant in x, so the gradient flows through ``y`` only, never through the ranking.
  This needs fc2 square (hidden -> hidden), which it is.

Divergence: every step's loss is checked; the first non-finite one stops that activation (reported
as ``diverged at step N``, its GIF held on the last finite boundary) and the others go on. What
fails, and how, measured: exp and exp_cos NaN at a large learning rate (exp(exp(.)) overflows, then
inf - inf); 1/x and tan rarely NaN in float32 under AdamW -- their first-layer gradients reach
1e4..1e8, Adam normalises the steps, and they simply do not fit. ``sgn`` has zero gradient almost
everywhere: fc1 and fc2 only shrink by weight decay, which leaves every sign -- the features --
unchanged, so only fc3 learns, on fixed random features (gradient column: 0).

Headline: ``test/accuracy`` is the *worst* test accuracy among the listed activations the seed
reports as fitting, so the expected band fails if any one of them stops fitting.

The loop stays here, not in the fit loop: full-batch steps, twelve models filmed in turn, and a
divergence that is reported, not an error -- divergence is the lesson. The boundaries are
recorded as data (``boundaries.npz``: the probability grid at every filmed step) and drawn from
it by report/activations.py with the renderer of report/boundary.py.

Resume: each finished activation is checkpointed (train/checkpoint.py: its table row and film),
so an interrupted run picks up at the next activation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.registry import Registry, nearest
from practicum.store import Run
from practicum.train import config


# -- the non-linearities ----------------------------------------------------------------------


@dataclass(frozen=True)
class Activation:
    """``fn`` maps a hidden batch (N, H) to (N, H); ``kind`` says where the model applies it.

    ``permute``'s fn takes two tensors, ``fn(y, h)``: it reorders ``y`` by the sort order of ``h``.
    ``seed_fits`` is what the seed reported (its "fits" and "cannot fit" lists).
    """

    fn: Callable[..., Tensor]
    kind: Literal["pointwise", "sort", "permute"] = "pointwise"
    seed_fits: bool = True


def sort_features(h: Tensor) -> Tensor:
    """(N, H) -> (N, H), each row sorted ascending. The gradient routes back through the order."""
    return torch.sort(h, dim=-1).values


def permute_by(y: Tensor, h: Tensor) -> Tensor:
    """(N, H), (N, H) -> (N, H): ``out[n, j] = y[n, argsort(h[n])[j]]``; each row of ``out`` is
    a permutation of that row of ``y``. No gradient reaches ``h`` (an index is not differentiable)."""
    return torch.gather(y, -1, torch.argsort(h, dim=-1))


ACTIVATIONS: Registry[Activation] = Registry("activation")
ACTIVATIONS.register("abs", Activation(torch.abs))
ACTIVATIONS.register("exp", Activation(torch.exp))
ACTIVATIONS.register("exp_cos", Activation(lambda x: torch.exp(x) * torch.cos(x)))
ACTIVATIONS.register("sin", Activation(torch.sin))
ACTIVATIONS.register("square", Activation(torch.square))
ACTIVATIONS.register("relu", Activation(torch.relu))
ACTIVATIONS.register("sigmoid", Activation(torch.sigmoid))
ACTIVATIONS.register("sort", Activation(sort_features, "sort"))
ACTIVATIONS.register("permute", Activation(permute_by, "permute"))
# The seed's failures: poles at 0 (1/x) and at pi/2 + k pi (tan); sgn's derivative is 0 a.e.
ACTIVATIONS.register("reciprocal", Activation(torch.reciprocal, seed_fits=False))
ACTIVATIONS.register("tan", Activation(torch.tan, seed_fits=False))
ACTIVATIONS.register("sgn", Activation(torch.sign, seed_fits=False))


class MoonNet(nn.Module):
    """2 -> hidden -> hidden -> 1, the non-linearity placed as the module docstring says."""

    def __init__(self, activation: str, hidden: int = 10):
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.fc1 = nn.Linear(2, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, 1)

    def forward(self, x: Tensor) -> Tensor:  # (N, 2) -> (N,) logits
        h = self.fc1(x)  # (N, H)
        if self.act.kind == "sort":
            h = self.fc2(self.act.fn(h))
        elif self.act.kind == "permute":
            h = self.act.fn(self.fc2(h), h)
        else:
            h = self.act.fn(self.fc2(self.act.fn(h)))
        return self.fc3(h).squeeze(-1)


# -- config -----------------------------------------------------------------------------------


class Data(Section):
    n_samples: int = Field(1000, ge=10, description="half-moons points generated")
    noise: float = Field(0.2, ge=0, description="Gaussian noise on each coordinate")
    test_fraction: float = Field(0.2, gt=0, lt=1, description="held-out share")


class Model(Section):
    hidden: int = Field(10, gt=0, description="width of both hidden layers")
    activations: list[str] = Field(
        ["abs", "exp", "exp_cos", "sin", "square", "relu", "sigmoid", "sort", "permute",
         "reciprocal", "tan", "sgn"],
        min_length=1, description="one model per name, trained in this order")

    @field_validator("activations")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for name in names:
            if name not in ACTIVATIONS:
                raise ValueError(f"unknown activation '{name}'{nearest(name, ACTIVATIONS.names())}; "
                                 f"valid: {', '.join(ACTIVATIONS.names())}")
        if len(set(names)) != len(names):
            raise ValueError("an activation is listed twice")
        return names


class Optim(Section):
    name: str = Field("adamw", description="an optimizer of train/optim.py's registry")
    lr: float = Field(0.02, gt=0)
    weight_decay: float = Field(0.01, ge=0, description="AdamW's decoupled weight decay")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return config.check_name("optimizer", name)


class Train(config.Compute):
    steps: int = Field(1000, gt=0, description="full-batch steps per activation")
    log_steps: int = Field(50, gt=0, description="steps between metrics.jsonl lines")
    fit_threshold: float = Field(0.9, gt=0, le=1, description="test accuracy that counts as 'fits'")
    threads: int = Field(1, ge=0, description="torch threads; 1: for a 10-unit MLP intra-op threads only "
                         "add synchronisation (2.5 ms a step on 1 thread, 36 ms on 2, measured on a "
                         "shared 2-core machine); 0: all cores")


class Animation(Section):
    frames: int = Field(30, ge=2, description="GIF frames: the boundary at steps "
                        "round(linspace(0, steps, frames)), the first before any update")
    size: int = Field(240, ge=64, description="GIF width = height in pixels (title bar included)")
    resolution: int = Field(60, ge=8, description="the model is evaluated on resolution x resolution "
                            "points, upsampled bilinearly to the frame")
    frame_ms: int = Field(120, gt=0, description="display time of one frame; the last is held 1.5 s")


class Config(Experiment):
    version: ClassVar[int] = 2  # the registry's optimizer, device/precision keys, films recorded as data
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    animation: Animation = Animation()

    @model_validator(mode="after")
    def _frames_fit(self) -> "Config":
        # Distinct frames need distinct steps and distinct progress-bar lengths. A UsageError, not a
        # ValueError: pydantic lets it through unwrapped, not buried under a dump of the config.
        frames = self.animation.frames
        if frames > self.train.steps + 1:
            raise UsageError(f"animation.frames = {frames} needs train.steps >= {frames - 1} "
                             f"(it is {self.train.steps})")
        if frames > self.animation.size:
            raise UsageError(f"animation.frames = {frames} needs animation.size >= {frames} "
                             f"(it is {self.animation.size})")
        return self


# -- training ---------------------------------------------------------------------------------


def accuracy(logits: Tensor, y: Tensor) -> float:
    return float(((logits > 0) == (y > 0.5)).float().mean())


def train_one(name: str, cfg: Config, data: dict, amp, run: Run) -> dict:
    """Train one activation and film it: its table row, plus its boundary (a probability grid
    over the canvas) and accuracies at every filmed step."""
    from practicum.train.optim import build_optimizer

    xtr, ytr, xte, yte, grid = (data[k] for k in ("xtr", "ytr", "xte", "yte", "grid"))
    torch.manual_seed(cfg.seed)  # every activation starts from the same weights
    model = MoonNet(name, cfg.model.hidden).to(xtr.device)
    # AdamW by default: the registry's is torch's fused kernel, one for all six tensors (~20% less time per step)
    opt = build_optimizer(cfg.optim.name, model.parameters(), cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()
    steps = cfg.train.steps
    frame_steps = set(np.round(np.linspace(0, steps, cfg.animation.frames)).astype(int).tolist())

    def forward(x: Tensor) -> Tensor:
        with amp():
            return model(x).float()

    @torch.no_grad()
    def snapshot() -> tuple[float, float]:
        return accuracy(forward(xtr), ytr), accuracy(forward(xte), yte)

    film = {"probs": [], "steps": [], "train": [], "test": []}
    diverged_at, fc1_grads = None, []
    for step in range(steps + 1):  # step 0 is the initial boundary; steps 1..steps are updates
        run.guard()
        if step > 0:
            opt.zero_grad(set_to_none=True)
            loss = loss_fn(forward(xtr), ytr)
            loss.backward()
            # Watching the loss is enough: an inf gradient makes AdamW's update inf/inf = NaN, and a
            # NaN weight reaches every logit, so the next loss is NaN (reported one step late).
            loss_value = loss.item()
            if not math.isfinite(loss_value):
                diverged_at = step
                break
            log = step == 1 or step % cfg.train.log_steps == 0 or step == steps
            if log:  # |dL/dW1| before the update, in float64 (float32 overflows for 1/x and tan) on the CPU (MPS has none)
                fc1_grads.append(float(model.fc1.weight.grad.cpu().double().norm()))
            opt.step()
            if log:
                tr_acc, te_acc = snapshot()
                run.log({"loss": loss_value, "accuracy": tr_acc, "test_accuracy": te_acc,
                         "grad_fc1": fc1_grads[-1]}, split=name, step=step)
        if step in frame_steps:
            with torch.no_grad():
                prob = torch.sigmoid(forward(grid))  # (res * res,)
            tr_acc, te_acc = snapshot()
            for key, value in (("probs", prob.cpu()), ("steps", step), ("train", tr_acc), ("test", te_acc)):
                film[key].append(value)

    if diverged_at is None:
        with torch.no_grad():
            final_loss = float(loss_fn(forward(xtr), ytr))
        train_acc, test_acc = snapshot()
        status = "fits" if test_acc >= cfg.train.fit_threshold else "does not fit"
    else:
        final_loss = train_acc = test_acc = float("nan")
        status = f"diverged at step {diverged_at}"
    return {"name": name, "train_acc": train_acc, "test_acc": test_acc, "loss": final_loss,
            "diverged_at": diverged_at, "fc1_grad": float(np.mean(fc1_grads)) if fc1_grads else math.nan,
            "status": status, "seed": "fits" if ACTIVATIONS[name].seed_fits else "fails",
            "prob": film["probs"][-1],  # the last boundary (a diverged one: its last finite one)
            "film": {"probs": torch.stack(film["probs"]).half(), "steps": film["steps"], "train": film["train"],
                     "test": film["test"]}}  # float16 boundaries: enough for 2 x 5 colour bands


def load_data(cfg: Config) -> dict:
    from practicum.data.synthetic import make_moons, train_test_split

    rng = np.random.default_rng(cfg.seed)
    x, y = make_moons(cfg.data.n_samples, cfg.data.noise, rng)
    xtr, xte, ytr, yte = train_test_split(x, y, cfg.data.test_fraction, rng)
    return {"xtr": xtr, "ytr": ytr, "xte": xte, "yte": yte}


def run(cfg: Config, run: Run) -> dict:
    from practicum.report.activations import boundary_gif, grid_figure
    from practicum.report.boundary import Canvas
    from practicum.train import checkpoint
    from practicum.train.device import autocast, resolve_device, resolve_precision

    device = resolve_device(cfg.train.device)
    dtype = resolve_precision(cfg.train.precision, device)
    raw = load_data(cfg)
    canvas = Canvas.around(np.concatenate([raw["xtr"], raw["xte"]]), cfg.animation.size, cfg.animation.resolution)
    data = {k: torch.from_numpy(v).float().to(device) for k, v in raw.items()}  # labels as 0./1. for BCE
    data["grid"] = torch.from_numpy(canvas.grid()).to(device)  # (res * res, 2)

    rows = []
    for name in cfg.model.activations:
        path = run.checkpoint_path(f"{name}.pt")
        row = checkpoint.load_run_state(run, path)  # a finished activation of a resumed run
        if row is None:
            row = train_one(name, cfg, data, lambda: autocast(device, dtype), run)
            checkpoint.save_run_state(run, path, extra=row, done=True)
        rows.append(row)

    # Data first (every figure is drawn from it), then the figures and the table.
    res = canvas.res
    arrays = {"lo": canvas.lo, "hi": canvas.hi, "xtr": raw["xtr"], "ytr": raw["ytr"]}
    for r in rows:
        f = r["film"]
        arrays[f"prob_{r['name']}"] = r["prob"].numpy().reshape(res, res)
        arrays[f"film_{r['name']}"] = f["probs"].numpy().reshape(-1, res, res)
        arrays[f"film_steps_{r['name']}"] = np.array(f["steps"])
        arrays[f"film_train_{r['name']}"] = np.array(f["train"])
        arrays[f"film_test_{r['name']}"] = np.array(f["test"])
    npz = run.artifact_path("boundaries.npz")
    fileio.save_npz(npz, **arrays)
    a = cfg.animation
    for r in rows:
        boundary_gif(npz, r, cfg.train.steps, a.frames, a.size, a.frame_ms,
                     run.figure_path(f"boundary_{r['name']}.gif"))
    grid_figure(npz, rows, run.figure_path("boundaries.png"), a.size)
    run.write_table("activations", ["activation", "train acc", "test acc", "final loss", "diverged at step",
                                    "mean |grad W1|", "result", "seed"],
                    [[r["name"], _num(r["train_acc"]), _num(r["test_acc"]), _num(r["loss"]),
                      r["diverged_at"], _num(r["fc1_grad"]), r["status"], r["seed"]] for r in rows],
                    caption=(f"Half-moons, MLP 2-{cfg.model.hidden}-{cfg.model.hidden}-1, {cfg.optim.name} lr "
                             f"{cfg.optim.lr}, {cfg.train.steps} full-batch steps; 'fits' = test accuracy >= "
                             f"{cfg.train.fit_threshold}; |grad W1| = norm of the first layer's weight "
                             f"gradient, mean over step 1 and every {cfg.train.log_steps}th step; seed = what "
                             "seed 000 reported"))
    return summarize(rows, cfg.train.fit_threshold)


def _num(v: float) -> float | None:
    """A table cell: 4 significant digits; NaN (diverged, nothing measured) becomes empty."""
    return None if not math.isfinite(v) else float(f"{v:.4g}")


def summarize(rows: list[dict], fit_threshold: float) -> dict:
    """``test/accuracy_<name>`` per activation (NaN when it diverged), and as the headline
    ``test/accuracy`` = the *worst* test accuracy among activations the seed says fit (so the
    expected band fails if any one of them stops fitting); ``test/fitted`` counts the activations
    at or above the threshold, ``train/diverged`` those that diverged."""
    summary = {}
    for r in rows:
        summary[f"test/accuracy_{r['name']}"] = r["test_acc"]
        summary[f"train/accuracy_{r['name']}"] = r["train_acc"]
    fitting = [r["test_acc"] for r in rows if ACTIVATIONS[r["name"]].seed_fits]
    finite = [a for a in fitting if math.isfinite(a)]
    summary["test/accuracy"] = min(finite) if finite and len(finite) == len(fitting) else float("nan")
    summary["test/accuracy_best"] = max((r["test_acc"] for r in rows if math.isfinite(r["test_acc"])),
                                        default=float("nan"))
    summary["test/fitted"] = float(sum(r["test_acc"] >= fit_threshold for r in rows))
    summary["train/diverged"] = float(sum(r["diverged_at"] is not None for r in rows))
    return summary
