"""Seed 003, task 1: linear regression on synthetic data, from scratch and with torch.nn (D2L 3.2/3.3).

Data: ``y = X w + b + noise``, X ~ N(0, 1) of shape (n, d), noise ~ N(0, sigma^2), with the seed's
true parameters (w = [2, -3.4], b = 4.2; or the 3-feature case w = [10.2, -33.4, 0.84], b = 0.4).

``implementation = "scratch"``: everything by hand -- shuffled mini-batch index slices, the model
``X @ w + b``, the squared loss ``(y_hat - y)^2 / 2``, its gradient derived on paper
(``linreg_grads``; tests check it against autograd) and the SGD step. No autograd, no nn.

``implementation = "torch"``: the same training with the library -- ``nn.Linear``, ``nn.MSELoss``,
``DataLoader`` and ``torch.optim.SGD``. ``MSELoss`` has no 1/2, so its gradient is twice the
scratch one at the same learning rate (D2L notes this); the seed's lr 0.03 works for both.

The report tabulates true vs learned parameters and draws the loss curve (logged per epoch on the
whole data set, as D2L prints it).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from pydantic import Field, model_validator
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.train.device import torch_threads
from practicum.store import Run


class Data(Section):
    true_w: list[float] = Field([2.0, -3.4], min_length=1)
    true_b: float = 4.2
    n_samples: int = Field(1000, gt=0)
    noise: float = Field(0.01, ge=0, description="std of the Gaussian noise on y (D2L: 0.01)")


class Train(Section):
    implementation: Literal["scratch", "torch"] = "scratch"
    batch_size: int = Field(64, gt=0)
    lr: float = Field(0.03, gt=0)
    epochs: int = Field(100, gt=0, description="passes over the data (seed: 100 'it_nums')")
    init_std: float = Field(0.01, ge=0, description="w ~ N(0, init_std^2), b = 0 (D2L)")


class Config(Experiment):
    data: Data = Data()
    train: Train = Train()

    @model_validator(mode="after")
    def _sizes(self):
        if self.train.batch_size > self.data.n_samples:
            raise ValueError(f"train.batch_size {self.train.batch_size} exceeds data.n_samples "
                             f"{self.data.n_samples}")
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


def fit_scratch(cfg: Config, X: Tensor, y: Tensor, gen: torch.Generator, run: Run):
    d = X.shape[1]
    w = cfg.train.init_std * torch.randn(d, generator=gen)
    b = torch.zeros(())
    for epoch in range(cfg.train.epochs):
        for idx in data_iter(cfg.train.batch_size, len(y), gen):
            gw, gb = linreg_grads(X[idx], y[idx], w, b)
            sgd([w, b], [gw, gb], cfg.train.lr)
        loss = squared_loss(linreg(X, w, b), y).mean()
        run.log({"loss": float(loss)}, split="train", step=epoch + 1, epoch=epoch + 1)
    return w, b


# -- the same with torch.nn (D2L 3.3) ----------------------------------------------------------


def fit_torch(cfg: Config, X: Tensor, y: Tensor, gen: torch.Generator, run: Run):
    d = X.shape[1]
    net = nn.Sequential(nn.Linear(d, 1))
    with torch.no_grad():
        net[0].weight.normal_(0, cfg.train.init_std, generator=gen)
        net[0].bias.zero_()
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(X, y[:, None]),
                                         batch_size=cfg.train.batch_size, shuffle=True, generator=gen)
    loss_fn = nn.MSELoss()
    opt = torch.optim.SGD(net.parameters(), lr=cfg.train.lr)
    for epoch in range(cfg.train.epochs):
        for xb, yb in loader:
            opt.zero_grad()
            loss_fn(net(xb), yb).backward()
            opt.step()
        with torch.no_grad():  # reported as the scratch loss, (y_hat - y)^2 / 2, to compare
            loss = squared_loss(net(X)[:, 0], y).mean()
        run.log({"loss": float(loss)}, split="train", step=epoch + 1, epoch=epoch + 1)
    return net[0].weight.detach()[0].clone(), net[0].bias.detach()[0].clone()


# ---------------------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    if run.resumed:  # a second of work: start over
        run.rewind_metrics(0)
    gen = torch.Generator().manual_seed(cfg.seed)
    true_w = torch.tensor(cfg.data.true_w)
    X, y = synthetic_data(true_w, cfg.data.true_b, cfg.data.n_samples, cfg.data.noise, gen)
    fit = fit_scratch if cfg.train.implementation == "scratch" else fit_torch
    w, b = fit(cfg, X, y, gen, run)

    names = [f"w{i + 1}" for i in range(len(true_w))] + ["b"]
    true = [*cfg.data.true_w, cfg.data.true_b]
    learned = [*w.tolist(), float(b)]
    errors = [abs(t - v) for t, v in zip(true, learned)]
    fileio.write_json(run.dir / "tables" / "parameters.json", {
        "columns": ["parameter", "true", "learned", "|error|"],
        "rows": [[n, t, round(v, 4), float(f"{e:.2g}")] for n, t, v, e in zip(names, true, learned, errors)],
        "caption": (f"True vs learned parameters ({cfg.train.implementation}, {cfg.data.n_samples} samples, "
                    f"noise {cfg.data.noise}, batch {cfg.train.batch_size}, lr {cfg.train.lr}, "
                    f"{cfg.train.epochs} epochs)"),
    })
    with torch.no_grad():
        y_hat = linreg(X, w, b)
    fileio.save_npz(run.artifact_path("fit.npz"), y=y.numpy(), y_hat=y_hat.numpy(),
                    true=np.array(true), learned=np.array(learned))
    fit_figure(run.artifact_path("fit.npz"), run.figure_path("fit.png"), cfg.train.implementation)

    summary = {f"params/{n}": v for n, v in zip(names, learned)}
    summary["params/max_abs_error"] = max(errors)
    summary["train/loss"] = float(squared_loss(y_hat, y).mean())
    return summary


def fit_figure(npz, path, title: str) -> None:
    """Predicted vs true targets, and the residuals' histogram against the noise level."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        y, y_hat = z["y"], z["y_hat"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.scatter(y, y_hat, s=4, alpha=0.5)
    lo, hi = float(min(y.min(), y_hat.min())), float(max(y.max(), y_hat.max()))
    a.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
    a.set_xlabel("y")
    a.set_ylabel("prediction")
    a.set_title(f"{title}: predictions")
    b.hist(y_hat - y, bins=40)
    b.set_xlabel("prediction - y")
    b.set_title("residuals")
    fig.tight_layout()
    save(fig, path)
