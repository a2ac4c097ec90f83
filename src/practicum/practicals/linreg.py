"""Seed 003, task 1: linear regression on synthetic data, from scratch and with torch.nn (D2L 3.2/3.3).

Data: ``y = X w + b + noise``, X ~ N(0, 1) of shape (n, d), noise ~ N(0, sigma^2), with the seed's
true parameters (w = [2, -3.4], b = 4.2; or the 3-feature case w = [10.2, -33.4, 0.84], b = 0.4).

``implementation = "scratch"``: everything by hand -- shuffled mini-batch index slices, the model
``X @ w + b``, the squared loss ``(y_hat - y)^2 / 2``, its gradient derived on paper
(``linreg_grads``; tests check it against autograd) and the SGD step. No autograd, no nn.

``implementation = "torch"``: the same training with the library -- ``nn.Linear``, ``nn.MSELoss``,
``DataLoader`` and the optimizer the config names (``optim.name``, default ``sgd``: torch's SGD
from the registry of train/optim.py, with its schedules). ``MSELoss`` has no 1/2, so its gradient
is twice the scratch one at the same learning rate (D2L notes this); the seed's lr 0.03 works for
both. Both loops stay here, not in the fit loop: the loop is the lesson (d2l's scratch beside
concise).

The report tabulates true vs learned parameters and draws the loss curve (logged per epoch on the
whole data set, as D2L prints it). A checkpoint at every epoch end (train/checkpoint.py) lets a
killed run resume; a loss that is not finite stops it (exit 1), the last good epoch kept.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.store import Run
from practicum.train import config


class Data(Section):
    true_w: list[float] = Field([2.0, -3.4], min_length=1)
    true_b: float = 4.2
    n_samples: int = Field(1000, gt=0)
    noise: float = Field(0.01, ge=0, description="std of the Gaussian noise on y (D2L: 0.01)")


class Optim(config.Optim):
    name: str = Field("sgd", description="implementation = 'torch': an optimizer of train/optim.py's "
                      "registry; 'scratch' is SGD written by hand")
    lr: float = Field(0.03, gt=0)
    batch_size: int = Field(64, gt=0)


class Train(config.Compute):
    implementation: Literal["scratch", "torch"] = "scratch"
    epochs: int = Field(100, gt=0, description="passes over the data (seed: 100 'it_nums')")
    init_std: float = Field(0.01, ge=0, description="w ~ N(0, init_std^2), b = 0 (D2L)")
    threads: int = Field(1, ge=0, description="torch threads; 1: batches of 64 x 2 numbers gain nothing "
                         "from more (0: all cores)")


class Config(Experiment):
    version: ClassVar[int] = 2  # the registry's SGD, [optim] keys, device/precision, resume
    data: Data = Data()
    optim: Optim = Optim()
    train: Train = Train()

    @model_validator(mode="after")
    def _sizes(self):
        if self.optim.batch_size > self.data.n_samples:
            raise ValueError(f"optim.batch_size {self.optim.batch_size} exceeds data.n_samples "
                             f"{self.data.n_samples}")
        if self.train.implementation == "scratch":
            extra = sorted(set(self.optim.model_dump(exclude_defaults=True)) - {"lr", "batch_size"})
            if extra or self.optim.name != "sgd":
                raise ValueError(f"train.implementation = 'scratch' is plain SGD written by hand: "
                                 f"{', '.join('optim.' + k for k in extra or ['name'])} apply to "
                                 "implementation = 'torch' only")
        return self


# -- the from-scratch pieces (D2L 3.2) ---------------------------------------------------------


def synthetic_data(w: Tensor, b: float, n: int, noise: float, gen: torch.Generator):
    """X (n, d) ~ N(0, 1); y (n,) = X w + b + N(0, noise^2)."""
    X = torch.randn(n, len(w), generator=gen)
    y = X @ w + b + noise * torch.randn(n, generator=gen)
    return X, y


def data_iter(batch_size: int, n: int, gen: torch.Generator):
    """Shuffled index slices covering 0..n-1 once; the last one may be short."""
    order = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield order[i: i + batch_size]


def linreg(X: Tensor, w: Tensor, b: Tensor) -> Tensor:
    return X @ w + b  # (B, d) @ (d,) -> (B,)


def squared_loss(y_hat: Tensor, y: Tensor) -> Tensor:
    return (y_hat - y) ** 2 / 2  # (B,), one loss per example


def linreg_grads(X: Tensor, y: Tensor, w: Tensor, b: Tensor) -> tuple[Tensor, Tensor]:
    """Gradient of the *mean* squared loss over the batch: with r = X w + b - y,
    dL/dw = X^T r / B and dL/db = mean(r)."""
    r = linreg(X, w, b) - y  # (B,) residuals
    return X.T @ r / len(y), r.mean()


def sgd(params: list[Tensor], grads: list[Tensor], lr: float) -> None:
    for p, g in zip(params, grads):
        p -= lr * g


def fit_scratch(cfg: Config, X: Tensor, y: Tensor, gen: torch.Generator, run: Run, amp):
    from practicum.train import checkpoint
    from practicum.train.divergence import check_finite

    o = cfg.optim
    w = cfg.train.init_std * torch.randn(X.shape[1], generator=gen).to(X.device)  # (d,)
    b = torch.zeros((), device=X.device)
    path = run.checkpoint_path("last.pt")
    p = checkpoint.load_run_state(run, path, generators={"data": gen}) or {"epoch": 0, "w": w, "b": b}
    w, b = p["w"].to(X.device), p["b"].to(X.device)
    steps = -(-len(y) // o.batch_size)
    for epoch in range(p["epoch"], cfg.train.epochs):
        for idx in data_iter(o.batch_size, len(y), gen):
            run.guard()
            with amp():
                gw, gb = linreg_grads(X[idx], y[idx], w, b)
            sgd([w, b], [gw, gb], o.lr)
        with amp():
            loss = float(squared_loss(linreg(X, w, b), y).mean())
        check_finite(loss, label="linreg (scratch)", step=(epoch + 1) * steps, epoch=epoch + 1, lr=o.lr,
                     hint="try a lower optim.lr")
        run.log({"loss": loss}, split="train", step=epoch + 1, epoch=epoch + 1)
        checkpoint.save_run_state(run, path, generators={"data": gen}, extra={"epoch": epoch + 1, "w": w, "b": b})
    return w, b


# -- the same with torch.nn (D2L 3.3) ----------------------------------------------------------


def fit_torch(cfg: Config, X: Tensor, y: Tensor, gen: torch.Generator, run: Run, amp):
    from practicum.train import checkpoint
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_training

    net = nn.Sequential(nn.Linear(X.shape[1], 1))
    with torch.no_grad():
        net[0].weight.normal_(0, cfg.train.init_std, generator=gen)
        net[0].bias.zero_()
    net = net.to(X.device)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y[:, None]),
                                         batch_size=cfg.optim.batch_size, shuffle=True, generator=gen)
    loss_fn = nn.MSELoss()
    opt, sched = build_training(cfg.optim, net.parameters(), len(loader), cfg.train.epochs)
    path = run.checkpoint_path("last.pt")
    state = dict(modules={"net": net}, optimizers={"net": opt}, schedulers={"net": sched},
                 generators={"data": gen})
    p = checkpoint.load_run_state(run, path, **state) or {"epoch": 0}
    for epoch in range(p["epoch"], cfg.train.epochs):
        for i, (xb, yb) in enumerate(loader):
            run.guard()
            with amp():
                loss = loss_fn(net(xb).float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            step = epoch * len(loader) + i + 1
            check_finite(loss.item(), label=f"linreg ({cfg.optim.name})", step=step,
                         epoch=step / len(loader), lr=lr)
        with torch.no_grad(), amp():  # reported as the scratch loss, (y_hat - y)^2 / 2, to compare
            loss = float(squared_loss(net(X)[:, 0].float(), y).mean())
        run.log({"loss": loss}, split="train", step=epoch + 1, epoch=epoch + 1)
        checkpoint.save_run_state(run, path, **state, extra={"epoch": epoch + 1})
    return net[0].weight.detach()[0].clone(), net[0].bias.detach()[0].clone()


# ---------------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    from practicum.report.linreg import fit_figure
    from practicum.train.device import autocast, resolve_device, resolve_precision

    device = resolve_device(cfg.train.device)
    dtype = resolve_precision(cfg.train.precision, device)
    gen = torch.Generator().manual_seed(cfg.seed)
    true_w = torch.tensor(cfg.data.true_w)
    X, y = synthetic_data(true_w, cfg.data.true_b, cfg.data.n_samples, cfg.data.noise, gen)
    X, y = X.to(device), y.to(device)  # the data moves once
    fit = fit_scratch if cfg.train.implementation == "scratch" else fit_torch
    w, b = fit(cfg, X, y, gen, run, lambda: autocast(device, dtype))

    names = [f"w{i + 1}" for i in range(len(true_w))] + ["b"]
    true = [*cfg.data.true_w, cfg.data.true_b]
    learned = [*w.tolist(), float(b)]
    errors = [abs(t - v) for t, v in zip(true, learned)]
    o = cfg.optim
    run.write_table("parameters", ["parameter", "true", "learned", "|error|"],
                    [[n, t, round(v, 4), float(f"{e:.2g}")] for n, t, v, e in zip(names, true, learned, errors)],
                    caption=(f"True vs learned parameters ({cfg.train.implementation}, {cfg.data.n_samples} "
                             f"samples, noise {cfg.data.noise}, batch {o.batch_size}, {o.name} lr {o.lr}, "
                             f"{cfg.train.epochs} epochs)"))
    with torch.no_grad():
        y_hat = linreg(X, w, b)
    fileio.save_npz(run.artifact_path("fit.npz"), y=y.cpu().numpy(), y_hat=y_hat.cpu().numpy(),
                    true=np.array(true), learned=np.array(learned))
    fit_figure(run.artifact_path("fit.npz"), run.figure_path("fit.png"), cfg.train.implementation)

    summary = {f"params/{n}": v for n, v in zip(names, learned)}
    summary["params/max_abs_error"] = max(errors)
    summary["train/loss"] = float(squared_loss(y_hat, y).mean())
    return summary
