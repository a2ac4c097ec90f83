"""D2L 20.1: a generative adversarial network that learns a 2-D Gaussian.

Real data: ``X = Z A + b`` with Z ~ N(0, I), A = [[1, 2], [-0.1, 0.5]], b = [1, 2] -- a Gaussian
with mean b and covariance A^T A. The generator is one linear layer (so it can represent exactly
this family), the discriminator an MLP 2-5-3-1 with tanh. Each mini-batch: one discriminator
step on real (label 1) and generated (label 0) points, then one generator step that asks the
discriminator to say 1 (the non-saturating loss): ``models.gan.update_D`` / ``update_G``, the pair
DCGAN shares. D2L's settings: batch 8, Adam lr 0.05 (D, ``optim.lr_d``) and 0.005 (G,
``optim.lr``), 20 epochs, weights N(0, 0.02), BCE-with-logits summed per batch and reported per
example. The loop stays here, not in the fit loop: two models and two optimizers alternate
within one batch, and that alternation is the lesson.

Because the generator is linear, its output distribution is known exactly: N(c, W W^T) for
G(z) = W z + c. The summary compares it with the true N(b, A^T A) by the Frechet (2-Wasserstein)
distance between the two Gaussians -- no sampling noise. Samples from one *fixed* noise batch are
recorded every epoch (the same z every time, so the panels show the generator moving, not new
noise) and drawn (report/gan2d.py) as a grid of per-epoch scatter plots and a GIF.

Resume: a checkpoint at every epoch end (train/checkpoint.py ``save_run_state``); a loss that is
not finite stops the run (exit 1) with the last good epoch kept.
"""

from __future__ import annotations

import math
from typing import ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.store import Run
from practicum.train import config


class Data(Section):
    n_samples: int = Field(1000, gt=0)
    A: list[list[float]] = [[1.0, 2.0], [-0.1, 0.5]]
    b: list[float] = [1.0, 2.0]


class Model(Section):
    latent_dim: int = Field(2, gt=0)


class Optim(config.Optim):
    lr: float = Field(0.005, gt=0, description="the generator's learning rate")
    lr_d: float | None = Field(0.05, gt=0, description="the discriminator's learning rate; None: optim.lr")
    batch_size: int = Field(8, gt=0)


class Train(config.Compute):
    epochs: int = Field(20, gt=0)
    threads: int = Field(1, ge=0, description="torch threads; 1: for batches of 8 points, more threads "
                         "only synchronise (0: all cores)")
    fixed_samples: int = Field(100, gt=0, description="points from the fixed noise shown per epoch")


class Config(Experiment):
    version: ClassVar[int] = 2  # the registry's (fused) Adam, optimizer/precision/device keys, resume
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()


def gaussian_frechet(mu1, cov1, mu2, cov2) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1^1/2 S2 S1^1/2)^1/2): the squared 2-Wasserstein
    distance between two Gaussians (the formula behind FID)."""
    def sqrtm(m):
        vals, vecs = np.linalg.eigh((m + m.T) / 2)
        return (vecs * np.sqrt(np.clip(vals, 0, None))) @ vecs.T

    s1 = sqrtm(cov1)
    return float(np.sum((mu1 - mu2) ** 2) + np.trace(cov1 + cov2 - 2 * sqrtm(s1 @ cov2 @ s1)))


def generator_gaussian(net_g) -> tuple[np.ndarray, np.ndarray]:
    """Mean c and covariance W W^T of G(z) = W z + c for z ~ N(0, I)."""
    W, c = net_g.net.weight.detach().cpu().numpy(), net_g.net.bias.detach().cpu().numpy()
    return c.astype(np.float64), (W @ W.T).astype(np.float64)


def run(cfg: Config, run: Run) -> dict:
    from practicum.models.gan import Discriminator2D, Generator2D, update_D, update_G
    from practicum.report.gan2d import samples_figure, samples_gif
    from practicum.train import checkpoint
    from practicum.train.device import autocast, resolve_device, resolve_precision
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_training

    t, o = cfg.train, cfg.optim
    device = resolve_device(t.device)
    dtype = resolve_precision(t.precision, device)
    amp = lambda: autocast(device, dtype)  # noqa: E731 - the forward passes' context (a no-op for fp32)

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # data, then every epoch's order and noise
    A, b = torch.tensor(cfg.data.A), torch.tensor(cfg.data.b)
    true_mu, true_cov = b.numpy().astype(np.float64), (A.T @ A).numpy().astype(np.float64)
    data = torch.randn(cfg.data.n_samples, 2, generator=gen) @ A + b  # (N, 2)
    fixed_z = torch.randn(t.fixed_samples, cfg.model.latent_dim,
                          generator=torch.Generator().manual_seed(cfg.seed + 1))

    net_g, net_d = Generator2D(cfg.model.latent_dim), Discriminator2D()
    for p in [*net_g.parameters(), *net_d.parameters()]:
        nn.init.normal_(p, 0, 0.02)
    net_g, net_d = net_g.to(device), net_d.to(device)
    real, fixed = data.to(device), fixed_z.to(device)  # the data moves once
    loss = nn.BCEWithLogitsLoss(reduction="sum")
    bs = o.batch_size
    steps = math.ceil(len(data) / bs)
    opt_g, sched_g = build_training(o, net_g.parameters(), steps, t.epochs)
    o_d = o.model_copy(update={"lr": o.lr_d or o.lr})  # the discriminator's: its own rate
    opt_d, sched_d = build_training(o_d, net_d.parameters(), steps, t.epochs)

    @torch.no_grad()
    def snapshot() -> torch.Tensor:
        with amp():
            return net_g(fixed).float().cpu()  # (fixed_samples, 2)

    path = run.checkpoint_path("last.pt")
    state = dict(modules={"generator": net_g, "discriminator": net_d},
                 optimizers={"generator": opt_g, "discriminator": opt_d},
                 schedulers={"generator": sched_g, "discriminator": sched_d}, generators={"data": gen})
    progress = checkpoint.load_run_state(run, path, **state) or {
        "epoch": 0, "snapshots": [snapshot()], "frechet": [], "losses": []}  # snapshot 0: before training

    for epoch in range(progress["epoch"], t.epochs):
        order = torch.randperm(len(data), generator=gen)
        sum_d = sum_g = 0.0
        for i in range(steps):
            run.guard()
            x = real[order[i * bs: (i + 1) * bs]]  # (B, 2)
            # drawn on the CPU: the same noise on any device
            z = torch.randn(len(x), cfg.model.latent_dim, generator=gen).to(device)
            with amp():
                fake = net_g(z)  # (B, 2)
            step, lr_d, lr_g = epoch * steps + i + 1, opt_d.param_groups[0]["lr"], opt_g.param_groups[0]["lr"]
            loss_d = update_D(x, fake, net_d, loss, opt_d, amp, o.grad_clip).item()
            check_finite(loss_d / len(x), label="gan-2d discriminator", step=step, epoch=step / steps, lr=lr_d)
            loss_g = update_G(fake, net_d, loss, opt_g, amp, o.grad_clip).item()
            check_finite(loss_g / len(x), label="gan-2d generator", step=step, epoch=step / steps, lr=lr_g)
            sched_d.step()
            sched_g.step()
            sum_d, sum_g = sum_d + loss_d, sum_g + loss_g
        # per example, as D2L prints; log(2) = 0.693 is the value at equilibrium
        end = (epoch + 1) * steps
        run.log({"loss": sum_d / len(data)}, split="discriminator", step=end, epoch=epoch + 1)
        run.log({"loss": sum_g / len(data)}, split="generator", step=end, epoch=epoch + 1)
        progress["snapshots"].append(snapshot())
        progress["frechet"].append(gaussian_frechet(*generator_gaussian(net_g), true_mu, true_cov))
        progress["losses"].append([sum_d / len(data), sum_g / len(data)])
        run.log({"frechet": progress["frechet"][-1]}, split="generator", step=end, epoch=epoch + 1)
        progress["epoch"] = epoch + 1
        checkpoint.save_run_state(run, path, **state, extra=progress)

    mu_g, cov_g = generator_gaussian(net_g)
    frechet = progress["frechet"]
    fileio.save_npz(run.artifact_path("samples.npz"), real=data.numpy(),
                    snapshots=torch.stack(progress["snapshots"]).numpy(), fixed_z=fixed_z.numpy(),
                    frechet=np.array(frechet))
    checkpoint.save(run.artifact_path("weights.pt"), {"generator": net_g.state_dict(),
                                                      "discriminator": net_d.state_dict()})
    run.write_table("distribution", ["statistic", "true", "generator"], [
        ["mean x1", float(b[0]), round(float(mu_g[0]), 4)],
        ["mean x2", float(b[1]), round(float(mu_g[1]), 4)],
        ["var x1", round(float(true_cov[0, 0]), 4), round(float(cov_g[0, 0]), 4)],
        ["var x2", round(float(true_cov[1, 1]), 4), round(float(cov_g[1, 1]), 4)],
        ["cov x1 x2", round(float(true_cov[0, 1]), 4), round(float(cov_g[0, 1]), 4)]],
        caption=("The generator's output distribution N(c, W W^T), exact from its weights, against "
                 f"the data's N(b, A^T A); Frechet distance {frechet[-1]:.4f}"))
    samples_figure(run.artifact_path("samples.npz"), run.figure_path("samples_by_epoch.png"))
    samples_gif(run.artifact_path("samples.npz"), run.figure_path("samples.gif"))
    last_d, last_g = progress["losses"][-1]
    return {"samples/frechet": frechet[-1], "samples/frechet_best": min(frechet),
            "samples/mean_error": float(np.linalg.norm(mu_g - true_mu)),
            "train/loss_discriminator": last_d, "train/loss_generator": last_g}
