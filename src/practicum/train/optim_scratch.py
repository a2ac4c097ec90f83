"""Six optimizers written out by hand (D2L chapter "Optimization Algorithms"), next to torch.optim.

Each class is a ``torch.optim.Optimizer`` so it drops into any training loop (``zero_grad``,
``state_dict``, learning-rate schedulers all come from the base class); only the update rule is
ours, and it is the whole of ``step``. The rules follow torch's definitions exactly (where D2L's
text differs, the docstring says how), so ``tests/test_d2l_optim.py`` can check them step for step
against the torch.optim class of the same name on the same parameters. Build them by name with
``train.optim.build_optimizer("scratch-adam", params, lr=...)``: the ``scratch-*`` entries of
its registry, beside the torch ones.

For a parameter x with gradient g at step t (state starts at zero):

    sgd        x -= lr g
    momentum   v = mu v + g;                             x -= lr v
    adagrad    s += g^2;                                 x -= lr g / (sqrt(s) + eps)
    rmsprop    s = a s + (1 - a) g^2;                    x -= lr g / (sqrt(s) + eps)
    adadelta   s = r s + (1 - r) g^2;  d = sqrt(u + eps) / sqrt(s + eps) g;
               u = r u + (1 - r) d^2;                    x -= lr d
    adam       m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
               x -= lr / (1 - b1^t) m / (sqrt(v) / sqrt(1 - b2^t) + eps)
"""

from __future__ import annotations

import math
from typing import Callable

import torch



class _Scratch(torch.optim.Optimizer):
    """The shared plumbing: iterate over parameters that have a gradient, hand each to ``update``."""

    @torch.no_grad()
    def step(self, closure: Callable | None = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self.update(p, p.grad, self.state[p], group)
        return loss

    def update(self, p: torch.Tensor, g: torch.Tensor, state: dict, group: dict) -> None:
        raise NotImplementedError


class SGD(_Scratch):
    """Plain (minibatch) stochastic gradient descent: ``x -= lr * g``."""

    def __init__(self, params, lr: float):
        super().__init__(params, dict(lr=lr))

    def update(self, p, g, state, group):
        p.sub_(group["lr"] * g)


class Momentum(_Scratch):
    """Heavy-ball momentum, torch's form: ``v = mu v + g; x -= lr v``.

    D2L writes the same thing (its ``beta`` is ``mu``); some texts use ``v = mu v + (1 - mu) g``,
    which is this with lr scaled by (1 - mu).
    """

    def __init__(self, params, lr: float, momentum: float = 0.9):
        super().__init__(params, dict(lr=lr, momentum=momentum))

    def update(self, p, g, state, group):
        if "v" not in state:
            state["v"] = torch.zeros_like(p)
        v = state["v"]
        v.mul_(group["momentum"]).add_(g)
        p.sub_(group["lr"] * v)


class AdaGrad(_Scratch):
    """Per-coordinate step ``lr / sqrt(sum of squared gradients)``.

    torch adds eps *outside* the square root (1e-10); D2L adds it inside (1e-6). We follow torch.
    """

    def __init__(self, params, lr: float = 0.01, eps: float = 1e-10):
        super().__init__(params, dict(lr=lr, eps=eps))

    def update(self, p, g, state, group):
        if "s" not in state:
            state["s"] = torch.zeros_like(p)
        s = state["s"]
        s.add_(g * g)
        p.sub_(group["lr"] * g / (s.sqrt() + group["eps"]))


class RMSProp(_Scratch):
    """AdaGrad with a leaky average of squared gradients (decay ``alpha``; D2L calls it gamma)."""

    def __init__(self, params, lr: float = 0.01, alpha: float = 0.99, eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps))

    def update(self, p, g, state, group):
        if "s" not in state:
            state["s"] = torch.zeros_like(p)
        s, a = state["s"], group["alpha"]
        s.mul_(a).add_((1 - a) * g * g)
        p.sub_(group["lr"] * g / (s.sqrt() + group["eps"]))


class AdaDelta(_Scratch):
    """RMSProp whose step size is a leaky average of past squared *updates*: no learning rate
    in D2L (torch keeps an ``lr`` multiplier, default 1.0). Because ``u`` starts at zero the
    first steps are about ``sqrt(eps) / rms(g)`` times the gradient: AdaDelta starts slowly."""

    def __init__(self, params, lr: float = 1.0, rho: float = 0.9, eps: float = 1e-6):
        super().__init__(params, dict(lr=lr, rho=rho, eps=eps))

    def update(self, p, g, state, group):
        if "s" not in state:
            state["s"], state["u"] = torch.zeros_like(p), torch.zeros_like(p)
        s, u, r, eps = state["s"], state["u"], group["rho"], group["eps"]
        s.mul_(r).add_((1 - r) * g * g)
        delta = (u + eps).sqrt() / (s + eps).sqrt() * g
        u.mul_(r).add_((1 - r) * delta * delta)
        p.sub_(group["lr"] * delta)


class Adam(_Scratch):
    """Momentum on g and RMSProp on g^2, both bias-corrected for their zero start.

    D2L writes ``x -= lr m_hat / (sqrt(v_hat) + eps)`` with ``m_hat = m / (1 - b1^t)`` and
    ``v_hat = v / (1 - b2^t)``; torch arranges the same expression as
    ``lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)`` (equal algebraically). We use
    torch's arrangement, so the two agree to rounding error.
    """

    def __init__(self, params, lr: float = 0.001, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8):
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps))

    def update(self, p, g, state, group):
        if "m" not in state:
            state["t"], state["m"], state["v"] = 0, torch.zeros_like(p), torch.zeros_like(p)
        b1, b2 = group["betas"]
        state["t"] += 1
        m, v, t = state["m"], state["v"], state["t"]
        m.mul_(b1).add_((1 - b1) * g)
        v.mul_(b2).add_((1 - b2) * g * g)
        denom = v.sqrt() / math.sqrt(1 - b2**t) + group["eps"]
        p.sub_(group["lr"] / (1 - b1**t) * m / denom)
