"""D2L's optimizer chapter on a sheet of paper: six optimizers on 2-D test functions.

Every optimizer of ``train/optim_scratch.py`` (SGD, momentum, AdaGrad, RMSProp, AdaDelta, Adam,
written by hand; ``scratch-<name>`` in the registry of train/optim.py) walks from D2L's start
point ``(-5, -2)`` for ``steps`` steps on each test function; each walk is replayed with the
torch.optim optimizer of the same name and hyperparameters (momentum: torch's SGD with momentum),
both built by ``build_optimizer``, and the largest coordinate difference between the two is
recorded (float64, so it is rounding error or a bug). The trajectories, f along them and f on a
grid are saved as data (``trajectories.npz``) and drawn from it (report/optim2d.py): one contour
grid per function and one convergence plot per function. The walk is the lesson: it keeps its
own loop.

The test functions, all from D2L:

- ``ill_conditioned``  f = 0.1 x1^2 + 2 x2^2   (momentum, AdaGrad, RMSProp sections): curvature
  20x larger along x2, so plain gradient descent oscillates in x2 while crawling along x1;
- ``elliptic``         f = x1^2 + 2 x2^2       (gradient-descent and SGD sections);
- ``saddle``           f = x1^2 - x2^2         (the saddle point of the "optimization and deep
  learning" section), started just off the ridge at x2 = 1e-3: gradient descent needs many steps
  to notice the descent direction, methods that rescale each coordinate leave at once. The
  function is unbounded below, so the walk is stopped when it leaves the plotted box.

D2L's hyperparameters where it gives them (sgd 0.4; momentum 0.6 with beta 0.5; AdaGrad 0.4;
RMSProp 0.4 with gamma 0.9); AdaDelta and Adam are not shown on these functions in D2L, their
settings here are ours (see the catalog entry).

Resume: a checkpoint after each function's walks (train/checkpoint.py); a walk whose f is not
finite stops the run (exit 1).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.registry import Registry, nearest
from practicum.store import Run
from practicum.train import config


@dataclass(frozen=True)
class TestFunction:
    f: Callable[[torch.Tensor], torch.Tensor]  # x (..., 2) -> f (...)
    formula: str
    start: tuple[float, float]
    box: tuple[float, float, float, float]  # x1 min, x1 max, x2 min, x2 max: plot and stop box
    minimum: float | None  # None when unbounded below


FUNCTIONS: Registry[TestFunction] = Registry("test function")
FUNCTIONS.register("ill_conditioned", TestFunction(
    lambda x: 0.1 * x[..., 0] ** 2 + 2 * x[..., 1] ** 2, r"$0.1x_1^2 + 2x_2^2$", (-5.0, -2.0),
    (-5.5, 1.0, -3.0, 3.0), 0.0))
FUNCTIONS.register("elliptic", TestFunction(
    lambda x: x[..., 0] ** 2 + 2 * x[..., 1] ** 2, r"$x_1^2 + 2x_2^2$", (-5.0, -2.0),
    (-5.5, 1.0, -3.0, 3.0), 0.0))
FUNCTIONS.register("saddle", TestFunction(
    lambda x: x[..., 0] ** 2 - x[..., 1] ** 2, r"$x_1^2 - x_2^2$", (-5.0, 1e-3),
    (-6.0, 6.0, -3.0, 3.0), None))

OPTIMIZERS = ["sgd", "momentum", "adagrad", "rmsprop", "adadelta", "adam"]


def registry_name(optimizer: str, implementation: str) -> str:
    """The name ``build_optimizer`` knows: ``scratch-<name>``, or torch's own (momentum = SGD's)."""
    if implementation == "scratch":
        return f"scratch-{optimizer}"
    return "sgd" if optimizer == "momentum" else optimizer


# -- config: one strict section per optimizer, holding exactly its hyperparameters ---------------


class SGDCfg(Section):
    lr: float = Field(0.4, gt=0)


class MomentumCfg(Section):
    lr: float = Field(0.6, gt=0)
    momentum: float = Field(0.5, ge=0, lt=1, description="D2L's beta")


class AdaGradCfg(Section):
    lr: float = Field(0.4, gt=0)
    eps: float = Field(1e-10, gt=0)


class RMSPropCfg(Section):
    lr: float = Field(0.4, gt=0)
    alpha: float = Field(0.9, ge=0, lt=1, description="D2L's gamma")
    eps: float = Field(1e-8, gt=0)


class AdaDeltaCfg(Section):
    lr: float = Field(1.0, gt=0)
    rho: float = Field(0.9, ge=0, lt=1)
    eps: float = Field(1e-2, gt=0, description="sets the first steps' size, about sqrt(eps)")


class AdamCfg(Section):
    lr: float = Field(0.4, gt=0)
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = Field(1e-8, gt=0)


class Study(Section):
    functions: list[str] = Field(["ill_conditioned", "elliptic", "saddle"], min_length=1)
    optimizers: list[str] = Field(OPTIMIZERS, min_length=1)
    steps: int = Field(20, gt=0, description="optimizer steps per walk (D2L: 20)")

    @field_validator("functions")
    @classmethod
    def _known_functions(cls, names):
        for n in names:
            FUNCTIONS[n]
        return names

    @field_validator("optimizers")
    @classmethod
    def _known_optimizers(cls, names):
        for n in names:
            if n not in OPTIMIZERS:
                raise ValueError(f"unknown optimizer '{n}'{nearest(n, OPTIMIZERS)}; "
                                 f"valid: {', '.join(OPTIMIZERS)}")
        return names


class Train(config.Compute):
    device: Literal["auto", "cpu", "cuda", "mps"] = Field(
        "cpu", description="a walk of one 2-vector: the CPU is fastest; cuda works, mps has no float64")
    threads: int = Field(1, ge=0, description="torch threads; a 2-vector needs one (0: all cores)")
    precision: Literal["fp32"] = Field("fp32", description="the walks are float64 and have no forward "
                                       "pass to autocast")


class Config(Experiment):
    version: ClassVar[int] = 2  # the registry's optimizers (torch's fused kernels), resume, data-drawn figures
    study: Study = Study()
    train: Train = Train()
    sgd: SGDCfg = SGDCfg()
    momentum: MomentumCfg = MomentumCfg()
    adagrad: AdaGradCfg = AdaGradCfg()
    rmsprop: RMSPropCfg = RMSPropCfg()
    adadelta: AdaDeltaCfg = AdaDeltaCfg()
    adam: AdamCfg = AdamCfg()


# ---------------------------------------------------------------------------------------------


def walk(fn: TestFunction, optimizer: str, hyper: dict, steps: int, implementation: str,
         device: torch.device | str = "cpu") -> np.ndarray:
    """(steps + 1, 2) float64 trajectory from ``fn.start``; on an unbounded function it ends early
    (a shorter array) when it leaves the box. A non-finite f is ``Diverged``."""
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_optimizer

    x = torch.tensor(fn.start, dtype=torch.float64, device=device, requires_grad=True)
    opt = build_optimizer(registry_name(optimizer, implementation), [x], **hyper)
    lo1, hi1, lo2, hi2 = fn.box
    path = [x.detach().clone()]
    for t in range(1, steps + 1):
        opt.zero_grad()
        fn.f(x).backward()
        opt.step()
        path.append(x.detach().clone())
        check_finite(float(fn.f(path[-1])), label=f"{optimizer} ({implementation})", step=t,
                     lr=hyper["lr"], hint=f"try a lower {optimizer}.lr")
        x1, x2 = path[-1].tolist()
        if fn.minimum is None and not (lo1 <= x1 <= hi1 and lo2 <= x2 <= hi2):
            break
    return torch.stack(path).cpu().numpy()


def run(cfg: Config, run: Run) -> dict:
    from practicum.report.optim2d import convergence_figure, trajectory_figure
    from practicum.train import checkpoint
    from practicum.train.device import resolve_device

    device = resolve_device(cfg.train.device)
    if device.type == "mps":
        raise UsageError("train.device = 'mps': Apple's Metal backend has no float64; use 'cpu'")
    path = run.checkpoint_path("last.pt")
    p = checkpoint.load_run_state(run, path) or {"done": [], "rows": [], "arrays": {}, "summary": {}, "worst": 0.0}
    for fname in cfg.study.functions:
        if fname in p["done"]:
            continue
        fn = FUNCTIONS[fname]
        for oname in cfg.study.optimizers:
            hyper = getattr(cfg, oname).model_dump()
            ours = walk(fn, oname, hyper, cfg.study.steps, "scratch", device)
            theirs = walk(fn, oname, hyper, cfg.study.steps, "torch", device)
            n = min(len(ours), len(theirs))
            diff = float(np.abs(ours[:n] - theirs[:n]).max()) if len(ours) == len(theirs) else math.inf
            p["worst"] = max(p["worst"], diff)
            values = fn.f(torch.from_numpy(ours)).numpy()  # (T,)
            for t, v in enumerate(values):
                run.log({f"f_{fname}": float(v)}, split=oname, step=t)
            p["arrays"][f"{fname}.{oname}"] = torch.from_numpy(ours)
            p["arrays"][f"values.{fname}.{oname}"] = torch.from_numpy(values)
            below = np.flatnonzero(values - (fn.minimum or 0.0) < 1e-2) if fn.minimum is not None else []
            p["rows"].append([fname, oname, _hyper_text(hyper), len(ours) - 1,
                              round(float(ours[-1, 0]), 4), round(float(ours[-1, 1]), 4),
                              _round(float(values[-1])), int(below[0]) if len(below) else None, f"{diff:.1e}"])
            p["summary"][f"{fname}/f_final_{oname}"] = float(values[-1])
            p["summary"][f"{fname}/dist_final_{oname}"] = float(np.linalg.norm(ours[-1]))
        p["done"].append(fname)
        checkpoint.save_run_state(run, path, extra=p)

    npz = run.artifact_path("trajectories.npz")
    fileio.save_npz(npz, **{k: v.numpy() for k, v in p["arrays"].items()}, **figure_data(cfg))
    run.write_table("optimizers_2d", ["function", "optimizer", "hyperparameters", "steps", "x1", "x2", "f(x)",
                                      "first step with f - f* < 0.01", "max |scratch - torch.optim|"], p["rows"],
                    caption=(f"Six from-scratch optimizers, {cfg.study.steps} steps from (-5, -2) "
                             "((-5, 0.001) on the saddle, stopped when it leaves the box); last column: the "
                             "same walk with torch.optim, float64"))
    for fname in cfg.study.functions:
        trajectory_figure(npz, fname, cfg.study.optimizers, run.figure_path(f"trajectories_{fname}.png"))
        convergence_figure(npz, fname, cfg.study.optimizers, run.figure_path(f"convergence_{fname}.png"))
    return {**p["summary"], "torch/max_abs_diff": p["worst"]}


def figure_data(cfg: Config, size: int = 200) -> dict[str, np.ndarray]:
    """What the figures need besides the walks: f on a grid over each box, the formulas, minima
    and every optimizer's settings as text."""
    data = {f"hyper.{o}": np.array(_hyper_text(getattr(cfg, o).model_dump())) for o in cfg.study.optimizers}
    for fname in cfg.study.functions:
        fn = FUNCTIONS[fname]
        lo1, hi1, lo2, hi2 = fn.box
        g1, g2 = np.meshgrid(np.linspace(lo1, hi1, size), np.linspace(lo2, hi2, size))
        data[f"grid.{fname}"] = fn.f(torch.from_numpy(np.stack([g1, g2], -1))).numpy()  # (size, size)
        data[f"box.{fname}"] = np.array(fn.box)
        data[f"formula.{fname}"] = np.array(fn.formula)
        data[f"minimum.{fname}"] = np.array(math.nan if fn.minimum is None else fn.minimum)
    return data


def _hyper_text(hyper: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyper.items() if k != "eps")


def _round(v: float) -> float | None:
    return float(f"{v:.4g}") if math.isfinite(v) else None
