"""D2L 20.2: a deep convolutional GAN, here on MNIST (or Fashion-MNIST) at 28x28.

Generator and discriminator are ``practicum.models.gan.DCGenerator`` / ``DCDiscriminator``
(transposed convolutions up, strided convolutions down, batch norm, LeakyReLU 0.2, DCGAN's
N(0, 0.02) initialisation). Training is D2L's loop: per mini-batch one discriminator step (real
-> 1, generated -> 0) and one generator step (generated -> 1), BCE-with-logits, Adam with
beta1 = 0.5 (``optim.betas``) -- ``models.gan.update_D`` / ``update_G``, shared with the 2-D GAN.
The loop stays here, not in the fit loop: two models alternate within one batch. Pixels are
scaled to [-1, 1] to match the generator's tanh.

Reproducible samples: a *fixed* noise batch (its own seeded generator, saved in ``samples.npz``)
is pushed through the generator (eval mode: batch-norm running statistics, so a sample does not
depend on the rest of its batch) every ``train.gif_steps`` steps and at every epoch end, and
recorded as pixels; report/dcgan.py draws one PNG grid per epoch and ``samples.gif`` from them.
``weights.pt`` + the saved noise regenerate the last samples exactly (tested).

How good are the samples? A small CNN "judge" is trained on the real training images first; on
generated images it gives the Inception-score analogue ``exp(E_x KL(p(y|x) || p(y)))``: near 10
when samples are confidently recognisable *and* cover all ten classes, 1 when they are neither.
The same score on real test images is the reference.

Resume (train/checkpoint.py): the GAN at every epoch end and every ``train.checkpoint_steps``
steps, the judge at its epoch ends; a killed run resumes bit-identically. A loss that is not
finite stops the run (exit 1), the last good checkpoint kept.
"""

from __future__ import annotations

import math
import time
from contextlib import nullcontext
from typing import ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.store import Run
from practicum.train import config


class Data(Section):
    name: Literal["mnist", "fashion-mnist"] = "mnist"
    train_limit: int | None = Field(20000, gt=0, description="training images used (first N)")


class Model(Section):
    latent_dim: int = Field(100, gt=0)
    width: int = Field(32, gt=0, description="generator / discriminator channels (x2 in the middle layer)")


class Optim(config.Optim):
    lr: float = Field(2e-4, gt=0, description="the generator's learning rate (and the discriminator's "
                      "unless optim.lr_d is set)")
    lr_d: float | None = Field(None, gt=0, description="the discriminator's learning rate; None: optim.lr")
    betas: tuple[float, float] | None = (0.5, 0.999)
    batch_size: int = Field(128, gt=0)


class Train(config.Compute):
    epochs: int = Field(5, gt=0)
    log_steps: int = Field(20, gt=0, description="steps between loss lines")
    gif_steps: int = Field(40, gt=0, description="steps between GIF frames")
    checkpoint_steps: int = Field(0, ge=0, description="checkpoint every N steps, besides epoch ends")


class Judge(Section):
    train_images: int = Field(12000, gt=0)
    epochs: int = Field(1, gt=0)
    score_samples: int = Field(1000, gt=0, description="generated (and real test) images scored")
    optim: config.Optim = config.Optim(name="adam", lr=1e-3, batch_size=128)


class Config(Experiment):
    version: ClassVar[int] = 2  # registry optimizers, device/precision keys, mid-epoch resume
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    judge: Judge = Judge()


GRID = 8  # the fixed noise is GRID x GRID samples


@torch.no_grad()
def sample(net_g, z: Tensor, amp=None) -> Tensor:
    """Generator output for ``z`` in eval mode (running BN statistics), then back to train mode."""
    was_training = net_g.training
    net_g.eval()
    with (amp or nullcontext)():
        x = net_g(z).float()
    net_g.train(was_training)
    return x


def pixels(x: Tensor) -> Tensor:
    """(N, 1, 28, 28) in [-1, 1] -> (N, 28, 28) uint8 on the CPU: what the grids show."""
    return ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


# -- the judge ----------------------------------------------------------------------------------


def train_judge(x: Tensor, y: Tensor, cfg: Judge, seed: int, run: Run, amp) -> nn.Module:
    """The judge's own small loop (cross-entropy on real digits), resumable at its epoch ends."""
    from practicum.models.gan import Judge as JudgeNet
    from practicum.train import checkpoint
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_training

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = JudgeNet().to(x.device)
    bs = cfg.optim.batch_size
    steps = math.ceil(len(x) / bs)
    opt, sched = build_training(cfg.optim, net.parameters(), steps, cfg.epochs)
    path = run.checkpoint_path("judge.pt")
    state = dict(modules={"judge": net}, optimizers={"judge": opt}, schedulers={"judge": sched},
                 generators={"data": gen})
    progress = checkpoint.load_run_state(run, path, **state) or {"epoch": 0}
    for epoch in range(progress["epoch"], cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(steps):
            run.guard()
            idx = order[i * bs: (i + 1) * bs]
            with amp():
                loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            lr = opt.param_groups[0]["lr"]
            opt.step()
            sched.step()
            step = epoch * steps + i + 1
            check_finite(loss.item(), label="dcgan judge", step=step, epoch=step / steps, lr=lr,
                         hint="try a lower judge.optim.lr")
        progress["epoch"] = epoch + 1
        checkpoint.save_run_state(run, path, **state, extra=progress)
    return net.eval()


@torch.no_grad()
def judge_score(judge, x: Tensor, amp) -> dict:
    """exp(E KL(p(y|x) || p(y))), mean top probability, and entropy of the predicted-class mix."""
    with amp():
        p = torch.cat([F.softmax(judge(x[i: i + 500]).float(), 1) for i in range(0, len(x), 500)])  # (N, 10)
    marginal = p.mean(0)
    kl = (p * (torch.log(p + 1e-12) - torch.log(marginal + 1e-12))).sum(1).mean()
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).float()
    mix = counts / counts.sum()
    return {"score": float(torch.exp(kl)), "confidence": float(p.max(1).values.mean()),
            "class_entropy": float(-(mix * torch.log(mix + 1e-12)).sum()), "counts": counts.tolist()}


# -- training -----------------------------------------------------------------------------------


def run(cfg: Config, run: Run) -> dict:
    from practicum.data.vision import load_mnist
    from practicum.models.gan import DCDiscriminator, DCGenerator, dcgan_init, update_D, update_G
    from practicum.report.dcgan import sample_figures
    from practicum.train import checkpoint
    from practicum.train.device import autocast, resolve_device, resolve_precision
    from practicum.train.divergence import check_finite
    from practicum.train.optim import build_training

    t, o = cfg.train, cfg.optim
    device = resolve_device(t.device)
    dtype = resolve_precision(t.precision, device)
    amp = lambda: autocast(device, dtype)  # noqa: E731 - the forward passes' context (a no-op for fp32)

    data = load_mnist(cfg.data.name)
    images = torch.from_numpy(data.train_x[: cfg.data.train_limit]).float()[:, None]  # (N, 1, 28, 28)
    real = (images / 127.5 - 1).to(device)  # the data moves once
    labels = torch.from_numpy(data.train_y[: cfg.data.train_limit]).to(device)
    test = (torch.from_numpy(data.test_x[: cfg.judge.score_samples]).float()[:, None] / 127.5 - 1).to(device)
    test_y = torch.from_numpy(data.test_y[: len(test)]).to(device)

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)  # every epoch's order and noise
    fixed_z = torch.randn(GRID * GRID, cfg.model.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    fixed = fixed_z.to(device)
    net_g, net_d = DCGenerator(cfg.model.latent_dim, cfg.model.width), DCDiscriminator(cfg.model.width)
    dcgan_init(net_g)
    dcgan_init(net_d)
    net_g, net_d = net_g.to(device), net_d.to(device)
    loss = nn.BCEWithLogitsLoss()
    bs = o.batch_size
    steps = len(real) // bs  # drop the last partial batch (BN on a tiny batch is noisy)
    opt_g, sched_g = build_training(o, net_g.parameters(), steps, t.epochs)
    o_d = o.model_copy(update={"lr": o.lr_d or o.lr})  # the discriminator's: its own rate
    opt_d, sched_d = build_training(o_d, net_d.parameters(), steps, t.epochs)

    path = run.checkpoint_path("last.pt")
    state = dict(modules={"generator": net_g, "discriminator": net_d},
                 optimizers={"generator": opt_g, "discriminator": opt_d},
                 schedulers={"generator": sched_g, "discriminator": sched_d}, generators={"data": gen})
    p = checkpoint.load_run_state(run, path, **state) or {
        "epoch": 0, "position": 0, "order": None, "sums": [0.0, 0.0], "seconds": 0.0,
        "frames": [pixels(sample(net_g, fixed, amp))], "frame_steps": [0], "epoch_frames": [],
        "epoch_seconds": [], "epoch_losses": []}

    def frame(step: int) -> None:
        if p["frame_steps"][-1] != step:
            p["frames"].append(pixels(sample(net_g, fixed, amp)))
            p["frame_steps"].append(step)

    for epoch in range(p["epoch"], t.epochs):
        if p["order"] is None:
            p["order"] = torch.randperm(len(real), generator=gen)
        tick = time.perf_counter()
        for i in range(p["position"], steps):
            run.guard()
            x = real[p["order"][i * bs: (i + 1) * bs]]  # (B, 1, 28, 28)
            # drawn on the CPU: the same noise on any device
            z = torch.randn(len(x), cfg.model.latent_dim, generator=gen).to(device)
            with amp():
                fake = net_g(z)
            step, lr_d, lr_g = epoch * steps + i + 1, opt_d.param_groups[0]["lr"], opt_g.param_groups[0]["lr"]
            ld = check_finite(update_D(x, fake, net_d, loss, opt_d, amp, o.grad_clip).item(),
                              label="dcgan discriminator", step=step, epoch=step / steps, lr=lr_d)
            lg = check_finite(update_G(fake, net_d, loss, opt_g, amp, o.grad_clip).item(),
                              label="dcgan generator", step=step, epoch=step / steps, lr=lr_g)
            sched_d.step()
            sched_g.step()
            p["sums"] = [p["sums"][0] + ld, p["sums"][1] + lg]
            p["position"] = i + 1
            if step % t.log_steps == 0:
                run.log({"loss": ld}, split="discriminator", step=step, epoch=step / steps)
                run.log({"loss": lg}, split="generator", step=step, epoch=step / steps)
            if step % t.gif_steps == 0:
                frame(step)
            if t.checkpoint_steps and step % t.checkpoint_steps == 0 and i + 1 < steps:
                p["seconds"] += time.perf_counter() - tick
                checkpoint.save_run_state(run, path, **state, extra=p)
                tick = time.perf_counter()
        p["epoch_seconds"].append(p["seconds"] + time.perf_counter() - tick)
        frame((epoch + 1) * steps)
        p["epoch_frames"].append(len(p["frames"]) - 1)
        p["epoch_losses"].append([p["sums"][0] / steps, p["sums"][1] / steps])
        p.update(epoch=epoch + 1, position=0, order=None, sums=[0.0, 0.0], seconds=0.0)
        # the last one ends the GAN's part: the judge's checkpoints follow it
        checkpoint.save_run_state(run, path, **state, extra=p, done=epoch + 1 == t.epochs)

    final = sample(net_g, fixed, amp)  # (64, 1, 28, 28)
    checkpoint.save(run.artifact_path("weights.pt"), {"generator": net_g.state_dict(),
                                                      "discriminator": net_d.state_dict()})
    fileio.save_npz(run.artifact_path("samples.npz"), fixed_z=fixed_z.numpy(), final=final.cpu().numpy(),
                    frames=torch.stack(p["frames"]).numpy(), frame_steps=np.array(p["frame_steps"]),
                    epoch_frames=np.array(p["epoch_frames"]))
    sample_figures(run.artifact_path("samples.npz"), run.figure_path)

    n = cfg.judge.train_images
    judge = train_judge(real[:n], labels[:n], cfg.judge, cfg.seed, run, amp)
    with torch.no_grad(), amp():
        judge_acc = float((judge(test).argmax(1) == test_y).float().mean())
    score_gen = torch.Generator().manual_seed(cfg.seed + 2)
    z = torch.randn(cfg.judge.score_samples, cfg.model.latent_dim, generator=score_gen).to(device)
    fake_stats, real_stats = judge_score(judge, sample(net_g, z, amp), amp), judge_score(judge, test, amp)
    run.write_table("judge", ["images", "judge score (max 10)", "mean top probability",
                              "class-mix entropy (max 2.303)", "predicted class counts"],
                    [[name, round(s["score"], 3), round(s["confidence"], 3), round(s["class_entropy"], 3),
                      " ".join(str(int(c)) for c in s["counts"])]
                     for name, s in (("generated", fake_stats), ("real test", real_stats))],
                    caption=(f"A small CNN trained on {n} real {cfg.data.name} images (test accuracy "
                             f"{judge_acc:.3f}) scores {len(test)} generated and {len(test)} real images"))
    return {"samples/judge_score": fake_stats["score"], "samples/judge_confidence": fake_stats["confidence"],
            "samples/class_entropy": fake_stats["class_entropy"], "real/judge_score": real_stats["score"],
            "judge/test_accuracy": judge_acc,
            "train/loss_discriminator": p["epoch_losses"][-1][0],
            "train/loss_generator": p["epoch_losses"][-1][1],
            "train/seconds_per_epoch": float(np.median(p["epoch_seconds"]))}
