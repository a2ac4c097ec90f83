"""Seed 003, task 06 / D2L 12.3-12.4 (and 12.11's cosine): gradient descent in one and two
dimensions, Newton's method, and learning-rate schedules, each written by hand.

The sibling of ``optim2d`` (the six optimizers on the 2-D test functions): the same test
functions (``optim2d.FUNCTIONS``), the same ``[train]`` keys, the same resume helper. Three parts:

1. **The learning rate on f(x) = x^2** (D2L 12.3.1). Gradient descent x <- x - eta f'(x) =
   (1 - 2 eta) x, so x_t = (1 - 2 eta)^t x0 exactly: a rate that is too small (0.05: x shrinks
   by 0.9 a step) creeps, the right one (0.2: by 0.6) converges, a rate above 1 (1.1: the factor
   is -1.2) overshoots further at every step and diverges. The diverging walk is a result, drawn
   and tabled, not an error; a walk that overflows to inf stops there.
2. **A non-convex function, f(x) = x cos(cx), c = 0.15 pi** (D2L 12.3.1.2 and 12.3.3), from
   D2L's x0 = 10, f' and f'' written by hand (checked against autograd). Gradient descent with
   D2L's eta = 2 jumps over the nearest valley into a worse one: after 10 steps it is at -1.528
   (D2L's number), oscillating about the local minimum at -1.826 (f = -1.19; eta f'' = 1.9 < 2,
   so it converges, slowly); with eta = 0.2 it heads for the nearest minimum, 7.27 (f = -6.98).
   Newton's method x <- x - eta f'(x) / f''(x): with eta = 1 it goes
   "spectacularly wrong" (D2L) to a local *maximum* (26.83, where f'' < 0: Newton seeks any
   stationary point). D2L names two fixes, |f''| and a learning rate; its code runs the rate:
   - ``newton`` with eta = 0.5 (D2L's run: the damped step, still the signed f''), which reaches
     the nearest minimum, 7.2699 as D2L prints;
   - ``newton_abs``: |f''| in place of f'' (named by D2L, not run there). From x0 = 10 it walks
     downhill to 5, where f'' = 0.12 is nearly flat, so the next step throws it uphill to x = 25;
     it ends in the minimum at 20.22: |f''| makes every step's direction a descent, not its length.
   Newton on a quadratic reaches the minimum in one step (table ``4_checks``).
3. **Learning-rate schedules in 2-D** (D2L 12.4.2-3, cosine of 12.11), on D2L's
   f = x1^2 + 2 x2^2 from (-5, -2): eta_t at step t = 0, 1, ...
   - constant      eta
   - exponential   eta exp(-lambda t)
   - polynomial    eta (beta t + 1)^(-alpha)
   - cosine        eta_T + (eta - eta_T)(1 + cos(pi t / T)) / 2 for t <= T, then eta_T
   (D2L's code starts its counter at t = 2 through a global that is incremented before use; here
   the first step has t = 0, so eta_0 = eta.) Each walks twice: with the exact gradient, and with
   D2L 12.4's simulated stochastic gradient, N(0, noise^2) added to each coordinate, ``repeats``
   times; every schedule sees the same noise draws (seeded by ``seed``), so the rows differ by
   the schedule only. Exact gradients favour the largest steps; noisy ones need the rate to decay,
   but an exponential decay spends a finite budget (eta sum e^{-lambda t} ~ 1) and stops short.
   Each schedule's exact walk and its first noisy one are replayed with ``torch.optim.SGD`` +
   ``LambdaLR`` (the same noise added to ``x.grad``), and the exact constant walk is optim2d's
   ``scratch-sgd`` walk.

The schedules' cosine is train/optim.py's ``cosine`` (the multiplier of the fit loop's schedule),
mapped to D2L's absolute final rate and held at step T; constant is its ``constant``. The
exponential and polynomial forms are the book's and live here.

Resume: a checkpoint after each part and each schedule (train/checkpoint.py); a resumed run does
only what was not finished.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator
from torch import Tensor

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.practicals.optim2d import FUNCTIONS, TestFunction
from practicum.practicals.optim2d import Train as Optim2dTrain
from practicum.registry import Registry
from practicum.store import Run
from practicum.train import optim as train_optim

# -- config ---------------------------------------------------------------------------------------


class Rates(Section):
    """Part 1: gradient descent on f(x) = x^2 with three learning rates (D2L 12.3.1)."""

    x0: float = Field(10.0, description="start (D2L: 10)")
    steps: int = Field(10, gt=0, description="gradient steps (D2L: 10)")
    too_small: float = Field(0.05, gt=0, description="D2L's 'too small' rate")
    right: float = Field(0.2, gt=0, description="D2L's working rate")
    too_large: float = Field(1.1, gt=0, description="D2L's 'too large' rate: |1 - 2 eta| > 1 diverges")

    def rates(self) -> dict[str, float]:
        return {"too_small": self.too_small, "right": self.right, "too_large": self.too_large}


class Walk(Section):
    method: Literal["gd", "newton", "newton_abs"] = Field(
        description="gd: x - eta f'; newton: x - eta f'/f''; newton_abs: x - eta f'/|f''|")
    lr: float = Field(gt=0, description="eta (1 = the plain Newton step)")

    @property
    def key(self) -> str:
        return f"{self.method}_lr{self.lr:g}"

    @property
    def label(self) -> str:
        name = {"gd": "gradient descent", "newton": "Newton", "newton_abs": "Newton, |f''|"}[self.method]
        return f"{name}, η = {self.lr:g}"


class NonConvex(Section):
    """Part 2: f(x) = x cos(cx), gradient descent against Newton's method (D2L 12.3)."""

    c_over_pi: float = Field(0.15, gt=0, description="c / pi (D2L: c = 0.15 pi)")
    x0: float = Field(10.0, description="start (D2L: 10)")
    steps: int = Field(10, gt=0, description="steps per walk (D2L: 10)")
    walks: list[Walk] = Field(
        [Walk(method="gd", lr=2.0), Walk(method="gd", lr=0.2), Walk(method="newton", lr=1.0),
         Walk(method="newton", lr=0.5), Walk(method="newton_abs", lr=1.0)], min_length=1)


SCHEDULE_NAMES = ["constant", "exponential", "polynomial", "cosine"]


class Schedules(Section):
    """Part 3: 2-D gradient descent under four learning-rate schedules (D2L 12.4, 12.11)."""

    function: str = Field("elliptic", description="an optim2d test function with its minimum at the origin")
    lr: float = Field(0.1, gt=0, description="eta, the rate at t = 0 (D2L 12.4: 0.1)")
    steps: int = Field(50, gt=0, description="steps per walk (D2L 12.4: 50; 1000 for the exponential)")
    names: list[str] = Field(SCHEDULE_NAMES, min_length=1)
    noise: float = Field(1.0, ge=0, description="std of the N(0, noise^2) added to each gradient coordinate "
                         "(D2L 12.4's simulated SGD: 1); 0: the exact walks only")
    repeats: int = Field(10, gt=0, description="noisy walks per schedule (the same draws for every schedule)")
    exp_lambda: float = Field(0.1, gt=0, description="exponential: eta exp(-lambda t) (D2L: 0.1)")
    poly_alpha: float = Field(0.5, gt=0, description="polynomial: eta (beta t + 1)^-alpha (D2L: 0.5)")
    poly_beta: float = Field(0.1, gt=0, description="polynomial's beta (D2L: 0.1)")
    cos_final: float = Field(0.01, ge=0, description="cosine: eta_T, the final rate (D2L 12.11: 0.01)")
    cos_steps: int | None = Field(None, gt=0, description="cosine: T, the steps of the half cosine "
                                  "(D2L 12.11: max_update); default: all the steps")

    @field_validator("function")
    @classmethod
    def _bounded(cls, name):
        if FUNCTIONS[name].minimum is None:
            raise ValueError(f"'{name}' is unbounded below: the schedules need a minimum (elliptic, ill_conditioned)")
        return name

    @field_validator("names")
    @classmethod
    def _known(cls, names):
        for n in names:
            SCHEDULES[n]
        return names


class Config(Experiment):
    version: ClassVar[int] = 1
    rates: Rates = Rates()
    nonconvex: NonConvex = NonConvex()
    schedules: Schedules = Schedules()
    train: Optim2dTrain = Optim2dTrain()


# -- the functions, with their derivatives by hand -------------------------------------------------


@dataclass(frozen=True)
class Curve:
    f: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor], Tensor]  # f'
    hess: Callable[[Tensor], Tensor]  # f''
    formula: str


def square() -> Curve:
    return Curve(lambda x: x ** 2, lambda x: 2 * x, lambda x: torch.full_like(x, 2.0), "$x^2$")


def xcos(c: float) -> Curve:
    """f = x cos(cx); f' = cos(cx) - cx sin(cx); f'' = -2c sin(cx) - c^2 x cos(cx) (D2L 12.3.3)."""
    return Curve(lambda x: x * torch.cos(c * x),
                 lambda x: torch.cos(c * x) - c * x * torch.sin(c * x),
                 lambda x: -2 * c * torch.sin(c * x) - c ** 2 * x * torch.cos(c * x),
                 rf"$x\cos({c / math.pi:g}\pi x)$")


# -- the walks -------------------------------------------------------------------------------------


def _finite(x: Tensor) -> bool:
    return bool(torch.isfinite(x).all())


def gd(curve: Curve, x0: Tensor, lr: float, steps: int) -> Tensor:
    """D2L's ``gd``: x <- x - lr f'(x). (steps + 1,) iterates, x0 first; shorter when x overflows."""
    xs = [x0]
    for _ in range(steps):
        x = xs[-1] - lr * curve.grad(xs[-1])
        if not _finite(x):
            break
        xs.append(x)
    return torch.stack(xs)


def newton(curve: Curve, x0: Tensor, steps: int, lr: float = 1.0, absolute: bool = False) -> Tensor:
    """Newton's method, x <- x - lr f'(x) / h(x), h = f'' (or |f''| with ``absolute``). It seeks a
    zero of f', any: a maximum where f'' < 0 unless h is made positive. (steps + 1,) iterates."""
    xs = [x0]
    for _ in range(steps):
        h = curve.hess(xs[-1])
        x = xs[-1] - lr * curve.grad(xs[-1]) / (h.abs() if absolute else h)
        if not _finite(x):
            break
        xs.append(x)
    return torch.stack(xs)


def walk_1d(curve: Curve, w: Walk, x0: Tensor, steps: int) -> Tensor:
    if w.method == "gd":
        return gd(curve, x0, w.lr, steps)
    return newton(curve, x0, steps, w.lr, absolute=w.method == "newton_abs")


def gradient(f: Callable[[Tensor], Tensor], x: Tensor) -> Tensor:
    x = x.detach().requires_grad_(True)
    (g,) = torch.autograd.grad(f(x), x)
    return g


def gd_2d(fn: TestFunction, start: Tensor, lr_at: Callable[[int], float], steps: int,
          noise: Tensor | None = None) -> Tensor:
    """x <- x - eta_t (grad f(x) + noise_t) from ``start`` (2,); noise (steps, 2) or None for the exact
    gradient (D2L 12.4's ``sgd`` with its simulated noise). (steps + 1, 2); shorter on overflow."""
    path = [start]
    for t in range(steps):
        g = gradient(fn.f, path[-1])
        if noise is not None:
            g = g + noise[t]
        x = path[-1] - lr_at(t) * g
        if not _finite(x):
            break
        path.append(x)
    return torch.stack(path)


def torch_walk(fn: TestFunction, start: Tensor, lr: float, lr_at: Callable[[int], float], steps: int,
               noise: Tensor | None = None) -> Tensor:
    """The same walk with torch.optim.SGD(lr) and LambdaLR(eta_t / lr): the oracle for ``gd_2d``."""
    x = start.clone().requires_grad_(True)
    opt = torch.optim.SGD([x], lr=lr)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: lr_at(t) / lr)
    path = [x.detach().clone()]
    for t in range(steps):
        opt.zero_grad()
        fn.f(x).backward()
        if noise is not None:
            x.grad += noise[t]
        opt.step()
        sched.step()
        if not _finite(x.detach()):
            break
        path.append(x.detach().clone())
    return torch.stack(path)


# -- the schedules: eta_t at step t = 0, 1, ... ------------------------------------------------------

SCHEDULES: Registry[Callable[[int, Schedules], float]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(t: int, s: Schedules) -> float:
    """eta (train/optim.py's ``constant`` multiplier, 1)."""
    return s.lr * train_optim.constant(t, s.steps)


@SCHEDULES.register("exponential")
def exponential(t: int, s: Schedules) -> float:
    """eta exp(-lambda t) (D2L 12.4.3): the sum of all steps is finite, eta / (1 - e^-lambda)."""
    return s.lr * math.exp(-s.exp_lambda * t)


@SCHEDULES.register("polynomial")
def polynomial(t: int, s: Schedules) -> float:
    """eta (beta t + 1)^-alpha (D2L 12.4.3): for alpha <= 1 the sum of the steps grows without bound."""
    return s.lr * (s.poly_beta * t + 1) ** (-s.poly_alpha)


@SCHEDULES.register("cosine")
def cosine(t: int, s: Schedules) -> float:
    """eta_T + (eta - eta_T)(1 + cos(pi t / T)) / 2 for t <= T, eta_T after (D2L 12.11's
    CosineScheduler without warm-up): train/optim.py's ``cosine`` multiplier over T + 1 steps
    (it reaches its end at step total - 1 = T), its ``final`` the ratio eta_T / eta."""
    T = s.cos_steps or s.steps
    return s.lr * train_optim.cosine(min(t, T), T + 1, final=s.cos_final / s.lr)


def schedule_text(name: str, s: Schedules) -> str:
    T = s.cos_steps or s.steps
    return {"constant": f"{s.lr:g}",
            "exponential": f"{s.lr:g} · exp(−{s.exp_lambda:g} t)",
            "polynomial": f"{s.lr:g} · ({s.poly_beta:g} t + 1)^−{s.poly_alpha:g}",
            "cosine": f"{s.cos_final:g} + ({s.lr:g} − {s.cos_final:g}) · (1 + cos(π t / {T})) / 2, t ≤ {T}"}[name]


# -- the run ----------------------------------------------------------------------------------------


def behaviour(lr: float, curvature: float = 2.0) -> str:
    """What gradient descent does on a quadratic of this curvature: x_t = (1 - lr f'')^t x0."""
    r = 1 - lr * curvature
    if abs(r) > 1:
        return f"diverges, {'oscillating' if r < 0 else 'monotonically'}: |x| grows ×{abs(r):g} a step"
    if abs(r) == 1:
        return "never gets closer"
    if r == 0:
        return "reaches the minimum in one step"
    return f"converges{', oscillating' if r < 0 else ''}: |x| shrinks ×{abs(r):g} a step"


def stationary(g: float, h: float, tol: float = 1e-3) -> str:
    if not (math.isfinite(g) and math.isfinite(h)):
        return "overflowed"
    if abs(g) > tol:
        return f"not yet at a stationary point (|f'| = {abs(g):.2g})"
    return "a local minimum (f'' > 0)" if h > 0 else "a local maximum (f'' < 0)" if h < 0 else "f'' = 0"


def plain(formula: str) -> str:
    """'$x_1^2 + 2x_2^2$' -> 'x1² + 2x2²', for table text."""
    return formula.strip("$").replace("^2", "²").replace("x_1", "x1").replace("x_2", "x2")


def rel_diff(a: Tensor, b: Tensor) -> float:
    """max |a - b| / max(1, |b|): absolute near 0, relative where the walk grows (the diverging rate)."""
    return float(((a - b).abs() / b.abs().clamp(min=1)).max())


def _r(v: float, digits: int = 6) -> float | None:
    return float(f"{v:.{digits}g}") if math.isfinite(v) else None


def run(cfg: Config, run: Run) -> dict:
    from practicum.train import checkpoint
    from practicum.train.device import resolve_device

    device = resolve_device(cfg.train.device)
    if device.type == "mps":
        raise UsageError("train.device = 'mps': Apple's Metal backend has no float64; use 'cpu'")
    path = run.checkpoint_path("last.pt")
    p = checkpoint.load_run_state(run, path) or {"done": [], "rows": {}, "checks": [], "arrays": {}, "summary": {}}
    scalar = lambda v: torch.tensor(v, dtype=torch.float64, device=device)  # noqa: E731

    if "rates" not in p["done"]:
        part_rates(cfg.rates, scalar, p, run)
        p["done"].append("rates")
        checkpoint.save_run_state(run, path, extra=p)
    if "nonconvex" not in p["done"]:
        part_nonconvex(cfg.nonconvex, scalar, p, run)
        p["done"].append("nonconvex")
        checkpoint.save_run_state(run, path, extra=p)
    s = cfg.schedules
    fn = FUNCTIONS[s.function]
    start = torch.tensor(fn.start, dtype=torch.float64, device=device)
    gen = torch.Generator().manual_seed(cfg.seed)  # the same draws for every schedule (and on any device)
    noise = (s.noise * torch.randn(s.repeats, s.steps, 2, generator=gen, dtype=torch.float64)).to(device) \
        if s.noise > 0 else None  # (R, T, 2)
    for name in s.names:
        if f"schedule.{name}" not in p["done"]:
            part_schedule(name, s, fn, start, noise, p, run)
            p["done"].append(f"schedule.{name}")
            checkpoint.save_run_state(run, path, extra=p)
    schedules_check(s, fn, start, p)

    write_tables(cfg, p, run)
    npz = run.artifact_path("gd_basics.npz")
    fileio.save_npz(npz, **{k: v.numpy() for k, v in p["arrays"].items()}, **figure_data(cfg, p))
    from practicum.report import gd_basics as figures

    figures.rates_figure(npz, list(cfg.rates.rates()), run.figure_path("1_learning_rates_on_x2.png"))
    figures.nonconvex_figure(npz, [w.key for w in cfg.nonconvex.walks], run.figure_path("2_gd_against_newton.png"))
    for name in s.names:
        figures.schedule_figure(npz, name, run.figure_path(f"3_schedule_{name}.png"))
    figures.schedules_figure(npz, s.names, run.figure_path("4_schedules_compared.png"))
    checks = p["checks"] + p["rows"]["checks_2d"]
    return {**p["summary"], "check/max_diff": max(c[1] for c in checks)}


def part_rates(r: Rates, scalar, p: dict, run: Run) -> None:
    curve, x0 = square(), scalar(r.x0)
    rows = []
    for label, lr in r.rates().items():
        xs = gd(curve, x0, lr, r.steps)  # (T' + 1,), T' <= T when it overflowed
        for t, x in enumerate(xs.tolist()):
            run.log({"x": x}, split=f"x2-{label}", step=t)
        hand = (1 - 2 * lr) ** torch.arange(len(xs), dtype=torch.float64) * r.x0  # x_t = (1 - 2 eta)^t x0
        p["checks"].append([f"gradient descent on x², η = {lr:g}: x_t against (1 − 2η)^t x0",
                            rel_diff(xs.cpu(), hand)])
        p["arrays"][f"rates.{label}"] = xs.cpu()
        p["arrays"][f"rates.f.{label}"] = curve.f(xs).cpu()
        x_T = float(xs[-1])
        rows.append([label.replace("_", " "), lr, _r(1 - 2 * lr), behaviour(lr),
                     _r(float(xs[10])) if len(xs) > 10 else None, len(xs) - 1, _r(x_T), _r(float(hand[-1])),
                     _r(x_T ** 2)])
        p["summary"][f"rates/x_{label}"] = x_T
        p["summary"][f"rates/abs_x_{label}"] = abs(x_T)
    p["rows"]["rates"] = rows


def part_nonconvex(n: NonConvex, scalar, p: dict, run: Run) -> None:
    c = n.c_over_pi * math.pi
    curve, x0 = xcos(c), scalar(n.x0)
    rows, iterates = [], []
    for w in n.walks:
        xs = walk_1d(curve, w, x0, n.steps)
        iterates.append(xs)
        for t, x in enumerate(xs.tolist()):
            run.log({"x": x}, split=w.key, step=t)
        x_T = xs[-1]
        f, g, h = (float(v(x_T)) for v in (curve.f, curve.grad, curve.hess))
        rule = {"gd": "x − η f′(x)", "newton": "x − η f′(x) / f″(x)", "newton_abs": "x − η f′(x) / |f″(x)|"}
        rows.append([w.label, rule[w.method], w.lr, len(xs) - 1, _r(float(x_T)), _r(f), _r(g, 3), _r(h, 4),
                     stationary(g, h)])
        p["arrays"][f"nonconvex.{w.key}"] = xs.cpu()
        p["arrays"][f"nonconvex.f.{w.key}"] = curve.f(xs).cpu()
        p["summary"].update({f"nonconvex/{w.key}/x": float(x_T), f"nonconvex/{w.key}/f": f,
                             f"nonconvex/{w.key}/abs_grad": abs(g), f"nonconvex/{w.key}/hess": h})
    p["rows"]["nonconvex"] = rows

    # f' and f'' by hand against autograd, at every iterate of every walk
    xs = torch.cat(iterates).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(curve.f(xs).sum(), xs, create_graph=True)
    (h,) = torch.autograd.grad(g.sum(), xs)
    p["checks"].append(["f′ of x cos(cx) by hand against autograd, at every iterate", rel_diff(curve.grad(xs.detach()), g.detach())])
    p["checks"].append(["f″ of x cos(cx) by hand against autograd, at every iterate", rel_diff(curve.hess(xs.detach()), h)])
    # Newton on a quadratic: f = (x - 3)^2 + 1 from x0, one step lands on 3
    quad = Curve(lambda x: (x - 3) ** 2 + 1, lambda x: 2 * (x - 3), lambda x: torch.full_like(x, 2.0), "")
    p["checks"].append([f"Newton on (x − 3)² + 1 from {n.x0:g}: one step reaches 3",
                        abs(float(newton(quad, x0, 1)[1]) - 3.0)])


def part_schedule(name: str, s: Schedules, fn: TestFunction, start: Tensor, noise: Tensor | None, p: dict,
                  run: Run) -> None:
    lr_at = lambda t: SCHEDULES[name](t, s)  # noqa: E731
    lrs = torch.tensor([lr_at(t) for t in range(s.steps)], dtype=torch.float64)  # (T,) eta_t
    exact = gd_2d(fn, start, lr_at, s.steps)  # (T + 1, 2)
    diff = float((exact - torch_walk(fn, start, s.lr, lr_at, s.steps)).abs().max()) \
        if len(exact) == s.steps + 1 else math.inf
    dist = exact.norm(dim=1).cpu()  # the optimum is the origin
    p["arrays"][f"schedule.{name}.lr"] = lrs
    p["arrays"][f"schedule.{name}.exact"] = exact.cpu()
    summary = {f"schedule/{name}/dist_exact": float(dist[-1]), f"schedule/{name}/lr_final": float(lrs[-1]),
               f"schedule/{name}/lr_sum": float(lrs.sum())}
    noisy_dist = None
    if noise is not None:
        walks = [gd_2d(fn, start, lr_at, s.steps, noise[i]) for i in range(s.repeats)]
        if any(len(w) != s.steps + 1 for w in walks):
            noisy_dist = torch.full((s.repeats, s.steps + 1), math.inf, dtype=torch.float64)
        else:
            noisy = torch.stack(walks).cpu()  # (R, T + 1, 2)
            noisy_dist = noisy.norm(dim=2)  # (R, T + 1)
            p["arrays"][f"schedule.{name}.noisy"] = noisy
            oracle = torch_walk(fn, start, s.lr, lr_at, s.steps, noise[0]).cpu()
            diff = max(diff, float((noisy[0] - oracle).abs().max()) if len(oracle) == s.steps + 1 else math.inf)
        end = noisy_dist[:, -1]
        summary.update({f"schedule/{name}/dist_noisy_mean": float(end.mean()),
                        f"schedule/{name}/dist_noisy_std": float(end.std()) if s.repeats > 1 else 0.0})
        p["arrays"][f"schedule.{name}.noisy_dist"] = noisy_dist
    for t in range(len(dist)):
        line = {"distance": float(dist[t])}
        if t < s.steps:
            line["lr"] = float(lrs[t])  # the run report draws "lr" (and only it) as its curves
        if noisy_dist is not None:
            line["distance_noisy"] = float(noisy_dist[:, t].mean())
        run.log(line, split=f"schedule-{name}", step=t)
    summary[f"schedule/{name}/torch_max_abs_diff"] = diff
    p["summary"].update(summary)
    p["rows"].setdefault("schedules", []).append([
        name, schedule_text(name, s), _r(float(lrs[-1]), 4), _r(float(lrs.sum()), 4),
        f"({float(exact[-1, 0]):.3g}, {float(exact[-1, 1]):.3g})", _r(float(dist[-1]), 4),
        (f"{summary[f'schedule/{name}/dist_noisy_mean']:.3g} ± {summary[f'schedule/{name}/dist_noisy_std']:.2g}"
         if noise is not None else None), f"{diff:.1e}"])


def schedules_check(s: Schedules, fn: TestFunction, start: Tensor, p: dict) -> None:
    """Hand checks of the 2-D part (cheap, so not checkpointed): on f = a x1^2 + b x2^2 the exact
    constant walk is x_t = ((1 - 2 a eta)^t x1, (1 - 2 b eta)^t x2), and it is optim2d's scratch-sgd walk."""
    from practicum.practicals.optim2d import walk

    rows = []
    const = gd_2d(fn, start, lambda t: s.lr, s.steps).cpu()  # (T + 1, 2)
    if len(const) == s.steps + 1:
        ab = torch.tensor([float(fn.f(torch.tensor([1.0, 0.0], dtype=torch.float64))),
                           float(fn.f(torch.tensor([0.0, 1.0], dtype=torch.float64)))], dtype=torch.float64)
        t = torch.arange(s.steps + 1, dtype=torch.float64)[:, None]
        hand = (1 - 2 * ab * s.lr) ** t * start.cpu()
        what = (f"2-D gradient descent on {plain(fn.formula)} = a x1² + b x2², η = {s.lr:g}: x_t against "
                "((1 − 2aη)^t x1, (1 − 2bη)^t x2)")
        rows.append([what, rel_diff(const, hand)])
        theirs = torch.from_numpy(walk(fn, "sgd", {"lr": s.lr}, s.steps, "scratch"))
        if len(theirs) == len(const):
            rows.append(["constant schedule, exact gradient: optim2d's scratch-sgd walk",
                         float((const - theirs).abs().max())])
    worst = max((v for k, v in p["summary"].items() if k.endswith("/torch_max_abs_diff")), default=0.0)
    rows.append(["every schedule's walks (exact and the first noisy one) against torch.optim.SGD + LambdaLR", worst])
    p["rows"]["checks_2d"] = rows
    p["summary"]["torch/max_abs_diff"] = worst


def write_tables(cfg: Config, p: dict, run: Run) -> None:
    r, n, s = cfg.rates, cfg.nonconvex, cfg.schedules
    T = r.steps
    run.write_table("1_gd_x2", ["rate", "η", "1 − 2η", "what it does", "x after 10 steps", "steps", f"x_{T}",
                                f"(1 − 2η)^{T} · x0 by hand", "f(x)"], p["rows"]["rates"],
                    f"Gradient descent on f(x) = x² from x0 = {r.x0:g}, {T} steps (D2L 12.3.1 prints x after "
                    "10: 3.486784, 0.060466, 61.917364); x_t = (1 − 2η)^t x0 exactly")
    run.write_table("2_gd_newton", ["method", "update", "η", "steps", "x", "f(x)", "f′(x)", "f″(x)", "where it ends"],
                    p["rows"]["nonconvex"],
                    f"f(x) = x cos(cx), c = {n.c_over_pi:g}π, from x0 = {n.x0:g}, {n.steps} steps: gradient "
                    "descent against Newton's method (D2L 12.3: gd η = 2 ends at −1.528166; Newton η = 1 at "
                    "26.8341, η = 0.5 at 7.2699)")
    noisy = f"noisy ‖x − x*‖, mean ± std of {s.repeats}" if s.noise > 0 else "noisy ‖x − x*‖ (noise = 0)"
    run.write_table("3_schedules", ["schedule", "η_t", "η at the last step", "Σ η_t", "x, exact gradient",
                                    "‖x − x*‖, exact", noisy, "max |scratch − torch.optim|"], p["rows"]["schedules"],
                    f"Gradient descent on f = {plain(FUNCTIONS[s.function].formula)} ({s.function}) from {FUNCTIONS[s.function].start}, {s.steps} steps, x* = 0; "
                    f"noisy: N(0, {s.noise:g}²) added to each gradient coordinate (D2L 12.4), the same draws for "
                    "every schedule")
    run.write_table("4_checks", ["check", "max |difference| (relative where |value| > 1)"],
                    [[c, float(f"{v:.3g}")] for c, v in p["checks"] + p["rows"]["checks_2d"]],
                    "The from-scratch pieces against hand-computed values, autograd and torch.optim (float64)")


def figure_data(cfg: Config, p: dict, size: int = 400) -> dict[str, np.ndarray]:
    """What the figures need besides the walks: f on a line under each 1-D walk (D2L's
    ``show_trace``: over [-n, n], n the largest |x| reached), f on a grid over the 2-D box, labels."""
    data = {}
    for label, lr in cfg.rates.rates().items():
        n = float(p["arrays"][f"rates.{label}"].abs().max())
        line = np.linspace(-n, n, size)
        data[f"rates.line.{label}"] = np.stack([line, line ** 2])  # (2, G): x, f
        data[f"rates.title.{label}"] = np.array(f"{label.replace('_', ' ')}: η = {lr:g}")
    nc = cfg.nonconvex
    c = nc.c_over_pi * math.pi
    n = max(float(p["arrays"][f"nonconvex.{w.key}"].abs().max()) for w in nc.walks)
    line = torch.linspace(-n, n, size, dtype=torch.float64)
    data["nonconvex.line"] = torch.stack([line, xcos(c).f(line)]).numpy()
    data["nonconvex.formula"] = np.array(xcos(c).formula)
    for w in nc.walks:
        data[f"nonconvex.label.{w.key}"] = np.array(w.label)
    s = cfg.schedules
    fn = FUNCTIONS[s.function]
    lo1, hi1, lo2, hi2 = fn.box
    g1, g2 = np.meshgrid(np.linspace(lo1, hi1, 200), np.linspace(lo2, hi2, 200))
    data["schedule.grid"] = fn.f(torch.from_numpy(np.stack([g1, g2], -1))).numpy()  # (200, 200)
    data["schedule.box"] = np.array(fn.box)
    data["schedule.formula"] = np.array(fn.formula)
    data["schedule.noise"] = np.array(s.noise)
    for name in s.names:
        data[f"schedule.{name}.text"] = np.array(schedule_text(name, s))
    return data
