"""D2L's optimizer chapter on a sheet of paper: six optimizers on 2-D test functions.

Every optimizer in ``practicum.optimizers_scratch`` (SGD, momentum, AdaGrad, RMSProp, AdaDelta,
Adam, written by hand) walks from D2L's start point ``(-5, -2)`` for ``steps`` steps on each test
function; each walk is replayed with the torch.optim class of the same name and hyperparameters,
and the largest coordinate difference between the two is recorded (float64, so it is rounding
error or a bug). The trajectories are saved as data (``trajectories.npz``) and drawn from it:
one contour grid per function and one convergence plot per function.

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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from pydantic import Field, field_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.optimizers_scratch import SCRATCH_OPTIMIZERS, build
from practicum.registry import Registry
from practicum.train.device import torch_threads
from practicum.store import Run


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
            SCRATCH_OPTIMIZERS[n]
        return names


class Config(Experiment):
    study: Study = Study()
    sgd: SGDCfg = SGDCfg()
    momentum: MomentumCfg = MomentumCfg()
    adagrad: AdaGradCfg = AdaGradCfg()
    rmsprop: RMSPropCfg = RMSPropCfg()
    adadelta: AdaDeltaCfg = AdaDeltaCfg()
    adam: AdamCfg = AdamCfg()


# ---------------------------------------------------------------------------------------------


def walk(fn: TestFunction, optimizer: str, hyper: dict, steps: int, implementation: str) -> np.ndarray:
    """(steps + 1, 2) float64 trajectory from ``fn.start``; it ends early (shorter array) when it
    leaves the function's box or goes non-finite."""
    x = torch.tensor(fn.start, dtype=torch.float64, requires_grad=True)
    opt = build(optimizer, [x], implementation, **hyper)
    lo1, hi1, lo2, hi2 = fn.box
    path = [x.detach().clone()]
    for _ in range(steps):
        opt.zero_grad()
        fn.f(x).backward()
        opt.step()
        path.append(x.detach().clone())
        x1, x2 = path[-1].tolist()
        outside = not (lo1 <= x1 <= hi1 and lo2 <= x2 <= hi2)
        if not (math.isfinite(x1) and math.isfinite(x2)) or fn.minimum is None and outside:
            break
    return torch.stack(path).numpy()


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    if run.resumed:  # seconds of work: start over
        run.rewind_metrics(0)
    rows, arrays, summary, worst = [], {}, {}, 0.0
    for fname in cfg.study.functions:
        fn = FUNCTIONS[fname]
        for oname in cfg.study.optimizers:
            hyper = getattr(cfg, oname).model_dump()
            ours = walk(fn, oname, hyper, cfg.study.steps, "scratch")
            theirs = walk(fn, oname, hyper, cfg.study.steps, "torch")
            n = min(len(ours), len(theirs))
            diff = float(np.abs(ours[:n] - theirs[:n]).max()) if len(ours) == len(theirs) else math.inf
            worst = max(worst, diff)
            values = fn.f(torch.from_numpy(ours)).numpy()  # (T,)
            for t, v in enumerate(values):
                run.log({f"f_{fname}": float(v)}, split=oname, step=t)
            arrays[f"{fname}.{oname}"] = ours
            below = np.flatnonzero(values - (fn.minimum or 0.0) < 1e-2) if fn.minimum is not None else []
            rows.append([fname, oname, _hyper_text(hyper), len(ours) - 1,
                         round(float(ours[-1, 0]), 4), round(float(ours[-1, 1]), 4),
                         _round(float(values[-1])),
                         int(below[0]) if len(below) else None, f"{diff:.1e}"])
            summary[f"{fname}/f_final_{oname}"] = float(values[-1])
            summary[f"{fname}/dist_final_{oname}"] = float(np.linalg.norm(ours[-1]))
    summary["torch/max_abs_diff"] = worst

    fileio.save_npz(run.artifact_path("trajectories.npz"), **arrays)
    fileio.write_json(run.dir / "tables" / "optimizers_2d.json", {
        "columns": ["function", "optimizer", "hyperparameters", "steps", "x1", "x2", "f(x)",
                    "first step with f - f* < 0.01", "max |scratch - torch.optim|"],
        "rows": rows,
        "caption": (f"Six from-scratch optimizers, {cfg.study.steps} steps from (-5, -2) "
                    "((-5, 0.001) on the saddle, stopped when it leaves the box); last column: the "
                    "same walk with torch.optim, float64"),
    })
    for fname in cfg.study.functions:
        trajectory_figure(run.artifact_path("trajectories.npz"), fname, cfg.study.optimizers, cfg,
                          run.figure_path(f"trajectories_{fname}.png"))
        convergence_figure(run.artifact_path("trajectories.npz"), fname, cfg.study.optimizers,
                           run.figure_path(f"convergence_{fname}.png"))
    return summary


def _hyper_text(hyper: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in hyper.items() if k != "eps")


def _round(v: float) -> float | None:
    return float(f"{v:.4g}") if math.isfinite(v) else None


# -- figures, drawn from trajectories.npz ------------------------------------------------------


def trajectory_figure(npz, fname: str, optimizers: list[str], cfg: Config, path) -> None:
    """D2L's ``show_trace_2d`` for every optimizer: contours of f and the walk on top."""
    from practicum.report.plots import plt, save

    fn = FUNCTIONS[fname]
    lo1, hi1, lo2, hi2 = fn.box
    g1, g2 = np.meshgrid(np.linspace(lo1, hi1, 200), np.linspace(lo2, hi2, 200))
    fz = fn.f(torch.from_numpy(np.stack([g1, g2], -1))).numpy()  # (200, 200)
    with np.load(npz) as z:
        paths = {o: z[f"{fname}.{o}"] for o in optimizers}
    cols = min(3, len(optimizers))
    rows = math.ceil(len(optimizers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, o in zip(axes.ravel(), optimizers):
        ax.contour(g1, g2, fz, levels=15, colors="#1f77b4", linewidths=0.7)
        p = paths[o]
        ax.plot(p[:, 0], p[:, 1], "-o", color="#ff7f0e", markersize=3, linewidth=1)
        ax.plot(*p[0], "ks", markersize=4)
        ax.set_xlim(lo1, hi1)
        ax.set_ylim(lo2, hi2)
        f_end = float(fn.f(torch.from_numpy(p[-1])))
        ax.set_title(f"{o} ({_hyper_text(getattr(cfg, o).model_dump())})\n"
                     f"{len(p) - 1} steps, f = {f_end:.3g}", fontsize=8)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    for ax in axes.ravel()[len(optimizers):]:
        ax.axis("off")
    fig.suptitle(f"{fname}: f = {fn.formula}")
    fig.tight_layout()
    save(fig, path)


def convergence_figure(npz, fname: str, optimizers: list[str], path) -> None:
    """f(x_t) - f* against t (log scale) for every optimizer; plain f for the saddle."""
    from practicum.report.plots import plt, save

    fn = FUNCTIONS[fname]
    fig, ax = plt.subplots(figsize=(6, 4))
    with np.load(npz) as z:
        for o in optimizers:
            values = fn.f(torch.from_numpy(z[f"{fname}.{o}"])).numpy()
            if fn.minimum is not None:
                ax.semilogy(np.maximum(values - fn.minimum, 1e-16), marker=".", label=o)
            else:
                ax.plot(values, marker=".", label=o)
    ax.set_xlabel("step")
    ax.set_ylabel("f(x) - f*" if fn.minimum is not None else "f(x)")
    ax.set_title(f"{fname}: f = {fn.formula}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
