"""D2L 20.1: a generative adversarial network that learns a 2-D Gaussian.

Real data: ``X = Z A + b`` with Z ~ N(0, I), A = [[1, 2], [-0.1, 0.5]], b = [1, 2] -- a Gaussian
with mean b and covariance A^T A. The generator is one linear layer (so it can represent exactly
this family), the discriminator an MLP 2-5-3-1 with tanh. Each mini-batch: one discriminator
step on real (label 1) and generated (label 0) points, then one generator step that asks the
discriminator to say 1 (the non-saturating loss). D2L's settings: batch 8, Adam lr 0.05 (D) and
0.005 (G), 20 epochs, weights N(0, 0.02), BCE-with-logits summed per batch and reported per
example.

Because the generator is linear, its output distribution is known exactly: N(c, W W^T) for
G(z) = W z + c. The summary compares it with the true N(b, A^T A) by the Frechet (2-Wasserstein)
distance between the two Gaussians -- no sampling noise. Samples from one *fixed* noise batch are
recorded every epoch (the same z every time, so the panels show the generator moving, not new
noise) and drawn as a grid of per-epoch scatter plots and a GIF.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from pydantic import Field
from torch import nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.train.device import torch_threads
from practicum.store import Run
from practicum.train import checkpoint


class Data(Section):
    n_samples: int = Field(1000, gt=0)
    A: list[list[float]] = [[1.0, 2.0], [-0.1, 0.5]]
    b: list[float] = [1.0, 2.0]


class Train(Section):
    epochs: int = Field(20, gt=0)
    batch_size: int = Field(8, gt=0)
    lr_d: float = Field(0.05, gt=0)
    lr_g: float = Field(0.005, gt=0)
    latent_dim: int = Field(2, gt=0)
    fixed_samples: int = Field(100, gt=0, description="points from the fixed noise shown per epoch")


class Config(Experiment):
    data: Data = Data()
    train: Train = Train()


def gaussian_frechet(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2): the squared 2-Wasserstein
    distance between two Gaussians (the formula behind FID)."""
    def sqrtm(m):
        vals, vecs = np.linalg.eigh((m + m.T) / 2)
        return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T

    s1 = sqrtm(cov1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * sqrtm(s1 @ cov2 @ s1)))


def update_d(x, z, net_d, net_g, loss, opt_d) -> float:
    """One discriminator step: real -> 1, generated (not back-propagated into G) -> 0."""
    ones, zeros = torch.ones(len(x)), torch.zeros(len(x))
    opt_d.zero_grad()
    loss_d = (loss(net_d(x), ones) + loss(net_d(net_g(z).detach()), zeros)) / 2
    loss_d.backward()
    opt_d.step()
    return loss_d.item()


def update_g(z, net_d, net_g, loss, opt_g) -> float:
    """One generator step: make D call the generated points real (non-saturating loss)."""
    opt_g.zero_grad()
    loss_g = loss(net_d(net_g(z)), torch.ones(len(z)))
    loss_g.backward()
    opt_g.step()
    return loss_g.item()


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    from practicum.models.gan import Discriminator2D, Generator2D

    if run.resumed:  # seconds of work: start over
        run.rewind_metrics(0)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    A, b = torch.tensor(cfg.data.A), torch.tensor(cfg.data.b)
    data = torch.randn(cfg.data.n_samples, 2, generator=gen) @ A + b  # (N, 2)
    fixed_z = torch.randn(cfg.train.fixed_samples, cfg.train.latent_dim,
                          generator=torch.Generator().manual_seed(cfg.seed + 1))

    net_g, net_d = Generator2D(cfg.train.latent_dim), Discriminator2D()
    for p in [*net_g.parameters(), *net_d.parameters()]:
        nn.init.normal_(p, 0, 0.02)
    loss = nn.BCEWithLogitsLoss(reduction="sum")
    opt_d = torch.optim.Adam(net_d.parameters(), lr=cfg.train.lr_d)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=cfg.train.lr_g)

    bs = cfg.train.batch_size
    steps = math.ceil(len(data) / bs)
    snapshots = [net_g(fixed_z).detach().numpy()]  # epoch 0: before training
    frechet = []
    for epoch in range(cfg.train.epochs):
        order = torch.randperm(len(data), generator=gen)
        sum_d = sum_g = 0.0
        for i in range(steps):
            x = data[order[i * bs: (i + 1) * bs]]
            z = torch.randn(len(x), cfg.train.latent_dim, generator=gen)
            sum_d += update_d(x, z, net_d, net_g, loss, opt_d)
            sum_g += update_g(z, net_d, net_g, loss, opt_g)
        # per example, as D2L prints; log(2) = 0.693 is the value at equilibrium
        run.log({"loss": sum_d / len(data)}, split="discriminator", step=(epoch + 1) * steps, epoch=epoch + 1)
        run.log({"loss": sum_g / len(data)}, split="generator", step=(epoch + 1) * steps, epoch=epoch + 1)
        with torch.no_grad():
            snapshots.append(net_g(fixed_z).numpy())
        mu_g, cov_g = generator_gaussian(net_g)
        frechet.append(gaussian_frechet(mu_g, cov_g, b.numpy(), (A.T @ A).numpy()))
        run.log({"frechet": frechet[-1]}, split="generator", step=(epoch + 1) * steps, epoch=epoch + 1)

    mu_g, cov_g = generator_gaussian(net_g)
    true_cov = (A.T @ A).numpy()
    fileio.save_npz(run.artifact_path("samples.npz"), real=data.numpy(), snapshots=np.stack(snapshots),
                    fixed_z=fixed_z.numpy(), frechet=np.array(frechet))
    checkpoint.save(run.artifact_path("weights.pt"), {"generator": net_g.state_dict(),
                                                      "discriminator": net_d.state_dict()})
    fileio.write_json(run.dir / "tables" / "distribution.json", {
        "columns": ["statistic", "true", "generator"],
        "rows": [["mean x1", float(b[0]), round(float(mu_g[0]), 4)],
                 ["mean x2", float(b[1]), round(float(mu_g[1]), 4)],
                 ["var x1", round(float(true_cov[0, 0]), 4), round(float(cov_g[0, 0]), 4)],
                 ["var x2", round(float(true_cov[1, 1]), 4), round(float(cov_g[1, 1]), 4)],
                 ["cov x1 x2", round(float(true_cov[0, 1]), 4), round(float(cov_g[0, 1]), 4)]],
        "caption": ("The generator's output distribution N(c, W W^T), exact from its weights, against "
                    f"the data's N(b, A^T A); Frechet distance {frechet[-1]:.4f}"),
    })
    samples_figure(run.artifact_path("samples.npz"), run.figure_path("samples_by_epoch.png"))
    samples_gif(run.artifact_path("samples.npz"), run.figure_path("samples.gif"))
    return {"samples/frechet": frechet[-1], "samples/frechet_best": min(frechet),
            "samples/mean_error": float(np.linalg.norm(mu_g - b.numpy())),
            "train/loss_discriminator": sum_d / len(data), "train/loss_generator": sum_g / len(data)}


def generator_gaussian(net_g) -> tuple[np.ndarray, np.ndarray]:
    """Mean c and covariance W W^T of G(z) = W z + c for z ~ N(0, I)."""
    W, c = net_g.net.weight.detach().numpy(), net_g.net.bias.detach().numpy()
    return c.astype(np.float64), (W @ W.T).astype(np.float64)


def _scatter(ax, real, fake, title: str) -> None:
    ax.scatter(real[:, 0], real[:, 1], s=3, c="#1f77b4", alpha=0.4, label="real")
    ax.scatter(fake[:, 0], fake[:, 1], s=3, c="#ff7f0e", alpha=0.8, label="generated")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def samples_figure(npz, path) -> None:
    """One small scatter per epoch: real points (blue) and the fixed-noise samples (orange)."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        real, snaps, frechet = z["real"], z["snapshots"], z["frechet"]
    lo, hi = real.min(0) - 1, real.max(0) + 1
    cols = min(7, len(snaps))
    rows = math.ceil(len(snaps) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows), squeeze=False)
    for e, (ax, fake) in enumerate(zip(axes.ravel(), snaps)):
        _scatter(ax, real, fake, "start" if e == 0 else f"epoch {e}: FD {frechet[e - 1]:.2f}")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
    for ax in axes.ravel()[len(snaps):]:
        ax.axis("off")
    axes[0, 0].legend(fontsize=6, loc="upper left")
    fig.suptitle("fixed-noise samples per epoch (orange) over the real data (blue)")
    fig.tight_layout()
    save(fig, path)


def samples_gif(npz, path) -> None:
    from practicum.report.plots import plt

    with np.load(npz) as z:
        real, snaps = z["real"], z["snapshots"]
    lo, hi = real.min(0) - 1, real.max(0) + 1
    frames = []
    for e, fake in enumerate(snaps):
        fig, ax = plt.subplots(figsize=(3, 3))
        _scatter(ax, real, fake, f"epoch {e}")
        ax.set_xlim(lo[0], hi[0])
        ax.set_ylim(lo[1], hi[1])
        fig.canvas.draw()
        frames.append(np.asarray(fig.canvas.buffer_rgba())[..., :3].copy())
        plt.close(fig)
    fileio.write_gif(path, frames, 300)
