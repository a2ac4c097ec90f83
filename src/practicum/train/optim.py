"""Registries for what a config names in training: optimizers, learning-rate schedules, losses.

    opt = build_optimizer("sgd", model.parameters(), lr=0.1, momentum=0.9, nesterov=True)
    opt = build_optimizer("scratch-adam", model.parameters(), lr=1e-3)  # train/optim_scratch.py Adam
    sched = build_schedule(opt, "cosine", total_steps=1000, warmup_steps=100)   # stepped per batch
    loss_fn = build_loss("cross_entropy", label_smoothing=0.1)                  # (logits, y) -> loss

A schedule is a multiplier of the base learning rate as a function of the step, wrapped in
``LambdaLR`` (its state_dict holds plain numbers, so checkpoints load with weights_only=True).
Linear warm-up composes with every schedule: the multiplier ramps from 1/warmup to 1 over the
first ``warmup_steps``, and the schedule runs over the remaining steps.
"""

from __future__ import annotations

import math
from typing import Callable, Iterable

import torch
import torch.nn.functional as F

from practicum.errors import UsageError
from practicum.registry import Registry
from practicum.train import optim_scratch as scratch

# ---------------------------------------------------------------------------------------------
# Optimizers: name -> (params, lr, options) -> torch.optim.Optimizer

OPTIMIZERS: Registry[Callable[..., torch.optim.Optimizer]] = Registry("optimizer")


def fused_kernel(device_type: str, op: str) -> bool:
    """Whether torch has a fused kernel ``torch._fused_<op>_`` (adam, adamw, sgd, adagrad) for
    ``device_type``: the device is in the pinned torch's own list of devices with fused optimizer
    kernels (``torch.utils._foreach_utils._get_fused_kernels_supported_devices``, what
    ``fused=True`` is checked against), and this torch build registers the op for it (the list
    is per device type, not per op: torch 2.13 has no fused Adagrad on mps)."""
    from torch.utils._foreach_utils import _get_fused_kernels_supported_devices

    if device_type not in _get_fused_kernels_supported_devices():
        return False
    key = {"cuda": "CUDA", "cpu": "CPU", "mps": "MPS", "xpu": "XPU", "hpu": "HPU", "mtia": "MTIA"}.get(
        device_type, "PrivateUse1")
    return torch._C._dispatch_has_kernel_for_dispatch_key(f"aten::_fused_{op}_", key)


def _fusable(params: list, op: str) -> bool | None:
    """torch's fused kernels (one kernel for every parameter's update) where torch has them for
    ``op`` on the parameters' device (``fused_kernel``): 4 % of a LeNet step on this CPU
    (bench/loop.py). Elsewhere torch's default (None)."""
    tensors = []
    for p in params:
        if isinstance(p, dict):  # a parameter group: its params may be a one-shot generator
            p["params"] = list(p["params"])
            tensors += p["params"]
        else:
            tensors.append(p)
    devices = {t.device.type for t in tensors}
    fusable = tensors and all(t.is_floating_point() for t in tensors) and all(fused_kernel(d, op) for d in devices)
    return True if fusable else None


@OPTIMIZERS.register("sgd")
def _sgd(params, lr, momentum=0.0, nesterov=False, weight_decay=0.0, **_):
    params = list(params)
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay,
                           fused=_fusable(params, "sgd"))


@OPTIMIZERS.register("adam")
def _adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **_):
    params = list(params)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                            fused=_fusable(params, "adam"))


@OPTIMIZERS.register("adamw")
def _adamw(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.01, **_):
    params = list(params)
    return torch.optim.AdamW(params, lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                             fused=_fusable(params, "adamw"))


@OPTIMIZERS.register("adagrad")
def _adagrad(params, lr, eps=1e-10, weight_decay=0.0, **_):
    params = list(params)
    return torch.optim.Adagrad(params, lr=lr, eps=eps, weight_decay=weight_decay, fused=_fusable(params, "adagrad"))


@OPTIMIZERS.register("adadelta")
def _adadelta(params, lr, rho=0.9, eps=1e-6, weight_decay=0.0, **_):
    return torch.optim.Adadelta(params, lr=lr, rho=rho, eps=eps, weight_decay=weight_decay)


@OPTIMIZERS.register("rmsprop")
def _rmsprop(params, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0, **_):
    return torch.optim.RMSprop(params, lr=lr, alpha=alpha, eps=eps, momentum=momentum, weight_decay=weight_decay)


# The from-scratch update rules of train/optim_scratch.py (D2L 12.x), under "scratch-<name>":
# the same loop, checkpoints and schedules as torch.optim, so a study can train a real model with
# the hand-written rules. They implement no weight decay (D2L's versions have none).


def _no_weight_decay(name: str, weight_decay: float) -> None:
    if weight_decay:
        raise UsageError(f"optimizer '{name}' has no weight decay; use '{name.removeprefix('scratch-')}' "
                         "(torch.optim) or leave optim.weight_decay unset")


@OPTIMIZERS.register("scratch-sgd")
def _scratch_sgd(params, lr, weight_decay=0.0, **_):
    _no_weight_decay("scratch-sgd", weight_decay)
    return scratch.SGD(params, lr=lr)


@OPTIMIZERS.register("scratch-momentum")
def _scratch_momentum(params, lr, momentum=0.0, weight_decay=0.0, **_):
    _no_weight_decay("scratch-momentum", weight_decay)
    if not momentum:
        raise UsageError("optimizer 'scratch-momentum' needs optim.momentum > 0 (e.g. 0.9)")
    return scratch.Momentum(params, lr=lr, momentum=momentum)


@OPTIMIZERS.register("scratch-adagrad")
def _scratch_adagrad(params, lr, eps=1e-10, weight_decay=0.0, **_):
    _no_weight_decay("scratch-adagrad", weight_decay)
    return scratch.AdaGrad(params, lr=lr, eps=eps)


@OPTIMIZERS.register("scratch-rmsprop")
def _scratch_rmsprop(params, lr, alpha=0.99, eps=1e-8, momentum=0.0, weight_decay=0.0, **_):
    _no_weight_decay("scratch-rmsprop", weight_decay)
    if momentum:
        raise UsageError("optimizer 'scratch-rmsprop' has no momentum; use 'rmsprop' (torch.optim)")
    return scratch.RMSProp(params, lr=lr, alpha=alpha, eps=eps)


@OPTIMIZERS.register("scratch-adadelta")
def _scratch_adadelta(params, lr, rho=0.9, eps=1e-6, weight_decay=0.0, **_):
    _no_weight_decay("scratch-adadelta", weight_decay)
    return scratch.AdaDelta(params, lr=lr, rho=rho, eps=eps)


@OPTIMIZERS.register("scratch-adam")
def _scratch_adam(params, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, **_):
    _no_weight_decay("scratch-adam", weight_decay)
    return scratch.Adam(params, lr=lr, betas=tuple(betas), eps=eps)


def build_optimizer(name: str, params: Iterable, lr: float, **options) -> torch.optim.Optimizer:
    """``options`` may hold settings other optimizers use (a config has one optim section for
    all of them); each builder takes the ones it knows. Nesterov without momentum is an error."""
    if options.get("nesterov") and not options.get("momentum"):
        raise UsageError("optim.nesterov needs optim.momentum > 0")
    if options.get("nesterov") and name != "sgd":
        raise UsageError(f"optim.nesterov applies to sgd only, not '{name}'")
    options = {k: v for k, v in options.items() if v is not None}
    return OPTIMIZERS[name](params, lr=lr, **options)


# ---------------------------------------------------------------------------------------------
# Schedules: name -> multiplier(step, total, **options) with step in [0, total)

SCHEDULES: Registry[Callable[..., float]] = Registry("schedule")


@SCHEDULES.register("constant")
def constant(step: int, total: int, **_) -> float:
    return 1.0


@SCHEDULES.register("step")
def step_decay(step: int, total: int, step_size: int = 1, gamma: float = 0.1, **_) -> float:
    """StepLR: times ``gamma`` every ``step_size`` steps."""
    return gamma ** (step // max(1, step_size))


@SCHEDULES.register("cosine")
def cosine(step: int, total: int, final: float = 0.0, **_) -> float:
    """Half a cosine from 1 down to ``final`` at the last step."""
    t = step / max(1, total - 1)
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * t))


@SCHEDULES.register("onecycle")
def one_cycle(step: int, total: int, pct_start: float = 0.25, start: float = 0.04, final: float = 0.0,
              **_) -> float:
    """Linear up from ``start`` to 1 over ``pct_start`` of the steps, then linear down to ``final``
    (airbench's triangular one-cycle; only the learning rate cycles, not the momentum)."""
    peak = max(1, round(pct_start * total))
    if step < peak:
        return start + (1 - start) * step / peak
    return 1 + (final - 1) * (step - peak) / max(1, total - 1 - peak)


def multiplier(name: str, step: int, total: int, warmup_steps: int = 0, **options) -> float:
    """The learning-rate multiplier at ``step`` (0-based) of ``total`` steps."""
    schedule = SCHEDULES[name]
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return schedule(step - warmup_steps, max(1, total - warmup_steps), **options)


def build_schedule(opt: torch.optim.Optimizer, name: str, total_steps: int, warmup_steps: int = 0,
                   **options) -> torch.optim.lr_scheduler.LambdaLR:
    SCHEDULES[name]  # an unknown name fails here, not at the first step
    options = {k: v for k, v in options.items() if v is not None}
    return torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: multiplier(name, step, total_steps, warmup_steps, **options))


# ---------------------------------------------------------------------------------------------
# Losses: name -> factory(label_smoothing) -> (logits (B, K), targets) -> scalar

LOSSES: Registry[Callable[..., Callable]] = Registry("loss")


@LOSSES.register("cross_entropy")
def _cross_entropy(label_smoothing: float = 0.0):
    return lambda logits, y: F.cross_entropy(logits, y, label_smoothing=label_smoothing)


@LOSSES.register("nll")
def _nll(label_smoothing: float = 0.0):
    """NLL on log_softmax, as seed 000's ViT (the model ends in log_softmax there; ours in logits)."""
    if label_smoothing:
        raise UsageError("loss 'nll' takes no label smoothing; use 'label_smoothing'")
    return lambda logits, y: F.nll_loss(F.log_softmax(logits, dim=1), y)


@LOSSES.register("label_smoothing")
def _label_smoothing(label_smoothing: float = 0.1):
    """Cross-entropy against (1 - eps) one-hot + eps / K: eps 0.1 unless set."""
    return _cross_entropy(label_smoothing or 0.1)


@LOSSES.register("bce")
def _bce(label_smoothing: float = 0.0):
    """Multi-label: a sigmoid per class against a multi-hot float target."""
    def loss(logits, y):
        y = y.float()
        if label_smoothing:
            y = y * (1 - label_smoothing) + 0.5 * label_smoothing
        return F.binary_cross_entropy_with_logits(logits, y)
    return loss


def build_loss(name: str, label_smoothing: float = 0.0) -> Callable:
    return LOSSES[name](label_smoothing=label_smoothing)


# ---------------------------------------------------------------------------------------------


def build_training(o, params, steps_per_epoch: int, epochs: int):
    """(optimizer, per-step schedule) from an ``[optim]`` section (train/config.py): the same
    keys build the same thing in every practical."""
    s = o.schedule
    opt = build_optimizer(o.name, params, o.lr, momentum=o.momentum, nesterov=o.nesterov,
                          weight_decay=o.weight_decay, betas=o.betas, eps=o.eps)
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * steps_per_epoch)
    sched = build_schedule(opt, s.name, total_steps=epochs * steps_per_epoch, warmup_steps=warmup,
                           step_size=max(1, round(s.step_epochs * steps_per_epoch)), gamma=s.gamma,
                           final=s.final, pct_start=s.pct_start, start=s.start)
    return opt, sched
