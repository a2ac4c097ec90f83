"""Mini-batch SGD (with momentum, optionally Nesterov) and learning-rate schedules.

``SGD`` follows ``torch.optim.SGD`` (dampening 0) update for update:

    buf = momentum * buf + g
    g   = g + momentum * buf    (Nesterov)   or   buf    (classic momentum)
    p  -= lr * g

Schedules are pure functions of the fractional epoch (``step / steps_per_epoch``), so a resumed
run recomputes the same learning rate from the step count alone.
"""

from __future__ import annotations

import functools
import inspect
import math

import numpy as np

from practicum.errors import UsageError
from practicum.registry import Registry, nearest
from practicum.scratch.layers import check_state


class SGD:
    """Updates the arrays of ``params`` (e.g. ``model.params()``) in place.

    Set ``opt.lr`` before a step to follow a schedule. Momentum buffers start at zero, which
    gives torch's first step (buf = g) exactly.
    """

    def __init__(self, params: dict[str, np.ndarray], lr: float, momentum: float = 0.0,
                 nesterov: bool = False):
        if nesterov and momentum <= 0:
            raise UsageError("Nesterov SGD needs momentum > 0")
        self.params = params
        self.lr = lr
        self.momentum = momentum
        self.nesterov = nesterov
        self.buffers = {k: np.zeros_like(p) for k, p in params.items()} if momentum else {}

    def step(self, grads: dict[str, np.ndarray]) -> None:
        lr, m = float(self.lr), float(self.momentum)  # Python floats never upcast float32 arrays
        for k, p in self.params.items():
            g = grads[k]
            if m:
                buf = self.buffers[k]
                buf *= m
                buf += g
                g = g + m * buf if self.nesterov else buf
            p -= lr * g  # lr is a Python float: stays float32

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of the momentum buffers, ``"momentum.<param name>"`` -> array (empty without
        momentum). Hyperparameters come from the config, not from here."""
        return {f"momentum.{k}": b.copy() for k, b in self.buffers.items()}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        own = {f"momentum.{k}": b for k, b in self.buffers.items()}
        check_state(own, state, "optimizer")
        for k, b in own.items():
            np.copyto(b, state[k])


# --- learning-rate schedules: (base_lr, epoch, **settings) -> lr -----------------------------

SCHEDULES: Registry = Registry("schedule")


@SCHEDULES.register("constant")
def constant(base_lr: float, epoch: float) -> float:
    return base_lr


@SCHEDULES.register("step")
def step_decay(base_lr: float, epoch: float, decay_every: float, decay_rate: float) -> float:
    """``base_lr * decay_rate ** floor(epoch / decay_every)``: drops by decay_rate every decay_every epochs."""
    return base_lr * decay_rate ** math.floor(epoch / decay_every)


@SCHEDULES.register("cosine")
def cosine_warmup(base_lr: float, epoch: float, total_epochs: float, warmup_epochs: float = 0.0,
                  min_lr: float = 0.0) -> float:
    """Linear warm-up from 0 to base_lr over ``warmup_epochs``, then a half cosine from base_lr
    down to ``min_lr`` at ``total_epochs`` (and min_lr after it)."""
    if epoch < warmup_epochs:
        return base_lr * epoch / warmup_epochs
    t = min(1.0, (epoch - warmup_epochs) / max(total_epochs - warmup_epochs, 1e-12))  # 0 -> 1
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * t))


@SCHEDULES.register("cosine_exp")
def cosine_warmup_exp(base_lr: float, epoch: float, total_epochs: float, decay_rate: float,
                      warmup_epochs: float = 0.0, min_lr: float = 0.0) -> float:
    """Seed report 000's schedule: ``cosine`` (with warm-up) times ``decay_rate ** epoch``."""
    return cosine_warmup(base_lr, epoch, total_epochs, warmup_epochs, min_lr) * decay_rate ** epoch


@functools.cache
def _settings_of(fn) -> list[str]:
    """A schedule's setting names: its parameters after (base_lr, epoch). Cached: lr_at runs every step."""
    return list(inspect.signature(fn).parameters)[2:]


def lr_at(schedule: dict, base_lr: float, epoch: float) -> float:
    """The learning rate at a fractional ``epoch`` for a schedule config such as
    ``{"name": "cosine", "warmup_epochs": 5, "total_epochs": 400, "min_lr": 0.0}``
    (no "name" means constant).

    A missing setting or an unknown one is a UsageError naming it.
    """
    settings = dict(schedule)
    name = settings.pop("name", "constant")
    fn = SCHEDULES[name]
    accepted = _settings_of(fn)
    for key in settings:
        if key not in accepted:
            raise UsageError(f"schedule '{name}' has no setting '{key}'{nearest(key, accepted)};"
                             f" valid: {', '.join(accepted)}")
    try:
        return float(fn(base_lr, epoch, **settings))
    except TypeError as e:  # a required setting is missing
        raise UsageError(f"schedule {schedule!r}: {e}") from None
