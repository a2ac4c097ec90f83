"""Seed 003, task 03 / D2L 5.4: numerical stability -- vanishing and exploding gradients, and
why the initialisation matters.

Three exhibits in one run:

1. The gradient of the sigmoid, by autograd (``sigmoid.npz``, figure ``sigmoid``, table
   ``1_sigmoid``): at most 1/4 (at 0) and ~0 once |x| > 5, so a product of many of them, one
   per layer, vanishes.
2. A product of ``probe.matrices`` random ``n x n`` Gaussian matrices (D2L: 100 of 4x4, each
   entry N(0, 1)): its norm grows exponentially in the number of factors (table ``2_matrix``,
   figure ``matrix_product``). Beside it the same product with entries N(0, 1/n) (Xavier's idea:
   a variance that keeps the output's scale): it neither explodes nor vanishes as fast.
3. A deep MLP (preset ``mlp-deep``: ten Linear layers) trained on Fashion-MNIST by the shared fit
   loop; ``model.options.activation`` and ``model.options.init`` (default | xavier | kaiming,
   models/layers.py) are the study's axes. For the first ``probe.grad_steps`` optimizer steps
   the objective's ``after_step`` hook reads every layer's weight gradient (still in ``.grad``:
   the next zero_grad comes with the next step) and keeps its norm in the objective's memory, so
   a run killed mid-way resumes with the norms it had. Table ``3_grad_norms``, figure
   ``grad_norms`` (``grad_norms.json``), and ``grad/log10_ratio``: the mean over those steps
   of log10(|grad of the first layer| / |grad of the last|) -- about -7 means the first layer's
   gradient is ten million times smaller than the head's (and ``grad/log10_*_layer_step1``).

The test split is evaluated at every epoch end; no model is selected on it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.train import config

DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Data(Section):
    name: Literal["mnist", "fashion-mnist"] = "fashion-mnist"
    train_limit: int | None = Field(None, gt=0, description="use the first N training images")
    test_limit: int | None = Field(None, gt=0, description="use the first N test images")
    normalize: bool = Field(True, description="subtract the training set's mean, divide by its std")


class Model(Section):
    name: str = Field("mlp-deep", description="a preset of practicum.models")
    options: dict[str, Any] = Field(default_factory=dict, description="family options: activation, init, ...")

    @model_validator(mode="after")
    def _known(self):
        from practicum.models import MODELS

        config.in_registry(MODELS, self.name)
        MODELS[self.name].check(self.options)
        return self

    def resolved(self) -> dict:
        from practicum.models import MODELS

        return MODELS[self.name].identity()


class Optim(config.Optim):
    name: str = Field("sgd", description="plain SGD: the gradient's scale is the step's (Adam would hide it)")
    lr: float = Field(0.1, gt=0)
    batch_size: int = Field(128, gt=0)


class Train(config.Train):
    epochs: int = Field(5, gt=0)


class Probe(Section):
    grad_steps: int = Field(100, ge=1, description="record per-layer gradient norms for the first N steps")
    matrices: int = Field(100, ge=1, description="random matrices multiplied (D2L: 100)")
    matrix_size: int = Field(4, ge=1, description="their size n (D2L: 4x4)")
    sigmoid_range: float = Field(8.0, gt=0, description="the sigmoid figure's x range [-r, r] (D2L: 8)")


class Config(Experiment):
    version = 1

    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    probe: Probe = Probe()


# -- 1. the sigmoid's gradient -----------------------------------------------------------------


def sigmoid_gradient(r: float, points: int = 401) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """x, sigmoid(x), d sigmoid / dx by autograd (D2L: y.backward(torch.ones_like(x)))."""
    x = torch.linspace(-r, r, points, dtype=torch.float64, requires_grad=True)
    y = torch.sigmoid(x)
    y.backward(torch.ones_like(x))
    return x.detach().numpy(), y.detach().numpy(), x.grad.numpy()


# -- 2. a product of random matrices ---------------------------------------------------------


def matrix_product_norms(count: int, n: int, std: float, gen: torch.Generator) -> list[float]:
    """Frobenius norm of M_k = A_0 A_1 ... A_k for k = 0..count, entries of every A ~ N(0, std^2)
    (float64: N(0, 1) 4x4 products reach ~1e25 after 100 factors, far from overflow)."""
    M = torch.normal(0.0, std, (n, n), generator=gen, dtype=torch.float64)
    norms = [float(M.norm())]
    for _ in range(count):
        M = M @ torch.normal(0.0, std, (n, n), generator=gen, dtype=torch.float64)
        norms.append(float(M.norm()))
    return norms


# -- 3. per-layer gradient norms on the fit loop -------------------------------------------------


def weight_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The Linear and Conv2d layers in forward order (for the MLP: hidden.0, hidden.3, ..., head)."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def grad_norm_recorder(model: nn.Module, memory: dict, steps: int):
    """An ``after_step`` hook: after each of the first ``steps`` optimizer steps, append every
    layer's weight-gradient norm to ``memory["grad_norms"]`` (the gradients of the step just taken)."""
    layers = [m for _, m in weight_layers(model)]

    def record(_model) -> None:
        norms = memory.setdefault("grad_norms", [])
        if len(norms) < steps:
            norms.append([float(m.weight.grad.norm()) if m.weight.grad is not None else 0.0 for m in layers])

    return record


def log10_ratio(norms: list[list[float]]) -> float:
    """Mean over the recorded steps of log10(|g_first| / |g_last|)."""
    ratios = [math.log10(max(r[0], 1e-300) / max(r[-1], 1e-300)) for r in norms]
    return float(np.mean(ratios)) if ratios else float("nan")


def train(cfg: Config, run) -> tuple[dict, list[str], list[list[float]]]:
    """Train the model on the fit loop; (summary, layer names, per-step gradient norms)."""
    from practicum.data.tensors import Loader, Pipeline, TensorSet
    from practicum.data.vision import load_mnist
    from practicum.models import build_model
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import Recorder, fit, summarize
    from practicum.train.objective import classification
    from practicum.train.optim import build_training

    d, o, t = cfg.data, cfg.optim, cfg.train
    world, rank = ddp.world_size(), ddp.rank()
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    raw = load_mnist(d.name)
    train_set = TensorSet.from_arrays(raw.train_x[: d.train_limit], raw.train_y[: d.train_limit], raw.classes)
    test_set = TensorSet.from_arrays(raw.test_x[: d.test_limit], raw.test_y[: d.test_limit], raw.classes)
    mean, std = train_set.mean_std() if d.normalize else (None, None)
    pipe = Pipeline(mean=mean, std=std)
    model = build_model(cfg.model.name, num_classes=len(raw.classes), in_channels=1, image_size=28,
                        **cfg.model.options).to(device)
    loader = Loader(train_set, o.batch_size, pipe, train=True, generator=torch.Generator().manual_seed(cfg.seed),
                    rank=rank, world=world, device=device)
    test = Loader(test_set, t.eval_batch_size, pipe, train=False, rank=rank, world=world, device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    objective = classification(len(raw.classes))
    objective.after_step = grad_norm_recorder(model, objective.memory, cfg.probe.grad_steps)
    rec = Recorder(run, tensorboard=t.tensorboard)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = cfg.model.name
    state = fit(model, opt, sched, objective, loader, {"test": test}, fit_cfg, run, rec)
    summary = summarize(state, model)
    if ddp.is_main():
        rec.finish(cfg.hparams(), summary)
    return summary, [name for name, _ in weight_layers(model)], objective.memory.get("grad_norms", [])


def run(cfg: Config, run) -> dict:
    from practicum.report import stability as figures
    from practicum.train import ddp

    gen = torch.Generator().manual_seed(cfg.seed)
    p = cfg.probe
    x, y, g = sigmoid_gradient(p.sigmoid_range)
    n = p.matrix_size
    unit, scaled = (matrix_product_norms(p.matrices, n, s, gen) for s in (1.0, 1.0 / math.sqrt(n)))
    summary, layers, norms = train(cfg, run)
    if not ddp.is_main():
        return summary

    at = torch.tensor([v for v in (0.0, 1.0, 2.0, 4.0, 6.0, 8.0) if v <= p.sigmoid_range], dtype=torch.float64,
                      requires_grad=True)
    torch.sigmoid(at).sum().backward()  # autograd at the table's points
    s_at = torch.sigmoid(at.detach())
    run.write_table("1_sigmoid", ["x", "sigmoid(x)", "autograd d/dx", "sigmoid (1 - sigmoid)"],
                    [[float(v), float(s), float(dv), float(s * (1 - s))]
                     for v, s, dv in zip(at.detach(), s_at, at.grad)],
                    "The sigmoid's gradient: 1/4 at most, ~0 in both tails (an even function: x < 0 alike)")
    ks = sorted({k for k in (0, 1, 2, 5, 10, 20, 50, 100, p.matrices) if k <= p.matrices})
    run.write_table("2_matrix", ["factors", "|M| entries N(0, 1)", f"|M| entries N(0, 1/{n})"],
                    [[k + 1, unit[k], scaled[k]] for k in ks],
                    f"Frobenius norm of a product of random {n}x{n} matrices (D2L 5.4: {p.matrices + 1} factors "
                    "of N(0, 1) explode; variance 1/n keeps the scale far longer)")
    steps = len(norms)
    shown = sorted({s for s in (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, steps) if 1 <= s <= steps})
    run.write_table("3_grad_norms", ["step", *layers], [[s, *norms[s - 1]] for s in shown],
                    f"Weight-gradient norm of every layer (first = input side) at the first {steps} SGD steps; "
                    f"{cfg.model.name}, {label(cfg)}")
    fileio.save_npz(run.artifact_path("stability.npz"), x=x, sigmoid=y, grad=g,
                    matrix_unit=np.array(unit), matrix_scaled=np.array(scaled))
    fileio.write_json(run.artifact_path(figures.GRAD_NORMS), {"layers": layers, "norms": norms,
                                                                "label": label(cfg)})
    figures.run_figures(run.dir)

    summary["grad/log10_ratio"] = log10_ratio(norms)
    if norms:
        summary["grad/log10_first_layer_step1"] = math.log10(max(norms[0][0], 1e-300))  # logs: the study
        summary["grad/log10_last_layer_step1"] = math.log10(max(norms[0][-1], 1e-300))  # table shows 4 decimals
    summary["matrix/log10_norm"] = math.log10(unit[-1])
    summary["matrix/log10_norm_scaled"] = math.log10(scaled[-1])
    return summary


def label(cfg: Config) -> str:
    from practicum.models import MODELS

    import inspect

    preset = MODELS[cfg.model.name]
    signature = inspect.signature(preset.cls).parameters
    opts = {k: p.default for k, p in signature.items()} | preset.defaults | cfg.model.options
    return f"{opts.get('activation', '?')}, init {opts.get('init', 'default')}"
