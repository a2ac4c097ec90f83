"""D2L 20.2: a deep convolutional GAN, here on MNIST (or Fashion-MNIST) at 28x28.

Generator and discriminator are ``practicum.models.gan.DCGenerator`` / ``DCDiscriminator``
(transposed convolutions up, strided convolutions down, batch norm, LeakyReLU 0.2, DCGAN's
N(0, 0.02) initialisation). Training is D2L's loop: per mini-batch one discriminator step (real
-> 1, generated -> 0) and one generator step (generated -> 1), BCE-with-logits, Adam with
beta1 = 0.5. Pixels are scaled to [-1, 1] to match the generator's tanh.

Reproducible samples: a *fixed* noise batch (its own seeded generator, saved in ``samples.npz``)
is pushed through the generator (eval mode: batch-norm running statistics, so a sample does not
depend on the rest of its batch) at the end of every epoch -- one PNG grid per epoch -- and every
``gif_every`` steps for ``samples.gif``. ``weights.pt`` + the saved noise regenerate the last grid
exactly (tested).

How good are the samples? A small CNN "judge" is trained on the real training images first; on
generated images it gives the Inception-score analogue ``exp(E_x KL(p(y|x) || p(y)))``: near 10
when samples are confidently recognisable *and* cover all ten classes, 1 when they are neither.
The same score on real test images is the reference.

Resume: a checkpoint at every epoch end.
"""

from __future__ import annotations

import io
import math
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import Tensor, nn

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.train.device import torch_threads
from practicum.store import Run
from practicum.train import checkpoint


class Data(Section):
    name: Literal["mnist", "fashion-mnist"] = "mnist"
    train_limit: int | None = Field(20000, gt=0, description="training images used (first N)")


class Model(Section):
    latent_dim: int = Field(100, gt=0)
    width: int = Field(32, gt=0, description="generator / discriminator channels (x2 in the middle layer)")


class Optim(Section):
    lr: float = Field(2e-4, gt=0)
    beta1: float = Field(0.5, ge=0, lt=1)
    batch_size: int = Field(128, gt=0)


class Train(Section):
    epochs: int = Field(5, gt=0)
    log_every: int = Field(20, gt=0, description="steps between loss lines")
    gif_every: int = Field(40, gt=0, description="steps between GIF frames")


class Judge(Section):
    train_images: int = Field(12000, gt=0)
    epochs: int = Field(1, gt=0)
    score_samples: int = Field(1000, gt=0, description="generated (and real test) images scored")


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    judge: Judge = Judge()


GRID = 8  # the fixed noise is GRID x GRID samples


# -- pictures ---------------------------------------------------------------------------------


def grid_image(x: Tensor, label: str = "", scale: int = 2) -> np.ndarray:
    """(N, 1, 28, 28) in [-1, 1] -> (H, W, 3) uint8: a GRID-wide mosaic, 2 px gaps, a caption bar."""
    from PIL import Image, ImageDraw

    n, _, h, w = x.shape
    cols = GRID
    rows = math.ceil(n / cols)
    canvas = np.full((rows * (h + 2) + 2, cols * (w + 2) + 2), 255, np.uint8)
    pix = ((x[:, 0].clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).numpy()
    for i in range(n):
        r, c = divmod(i, cols)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = pix[i]
    img = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    out = Image.new("RGB", (img.width, img.height + 16), (255, 255, 255))
    out.paste(img.convert("RGB"), (0, 16))
    ImageDraw.Draw(out).text((4, 2), label, fill=(0, 0, 0))
    return np.array(out)  # a writable copy (torch.from_numpy warns on read-only arrays)


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    fileio.write_bytes(path, buf.getvalue())


@torch.no_grad()
def sample(net_g, z: Tensor) -> Tensor:
    """Generator output for ``z`` in eval mode (running BN statistics), then back to train mode."""
    was_training = net_g.training
    net_g.eval()
    x = net_g(z)
    net_g.train(was_training)
    return x


# -- the judge ----------------------------------------------------------------------------------


def train_judge(x: Tensor, y: Tensor, cfg: Judge, seed: int):
    from practicum.models.gan import Judge as JudgeNet

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    net = JudgeNet()
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    for _ in range(cfg.epochs):
        order = torch.randperm(len(x), generator=gen)
        for i in range(0, len(x), 128):
            idx = order[i: i + 128]
            opt.zero_grad()
            F.cross_entropy(net(x[idx]), y[idx]).backward()
            opt.step()
    return net.eval()


@torch.no_grad()
def judge_score(judge, x: Tensor) -> dict:
    """exp(E KL(p(y|x) || p(y))), mean top probability, and entropy of the predicted-class mix."""
    p = torch.cat([F.softmax(judge(x[i: i + 500]), 1) for i in range(0, len(x), 500)])  # (N, 10)
    marginal = p.mean(0)
    kl = (p * (torch.log(p + 1e-12) - torch.log(marginal + 1e-12))).sum(1).mean()
    counts = torch.bincount(p.argmax(1), minlength=p.shape[1]).float()
    mix = counts / counts.sum()
    return {"score": float(torch.exp(kl)), "confidence": float(p.max(1).values.mean()),
            "class_entropy": float(-(mix * torch.log(mix + 1e-12)).sum()), "counts": counts.tolist()}


# -- training -----------------------------------------------------------------------------------


def save_checkpoint(run: Run, state: dict) -> None:
    checkpoint.save(run.checkpoint_path("last.pt"), state)


def run(cfg: Config, run: Run) -> dict:
    with torch_threads(1):  # shared machines: see practicals/threads.py
        return _run(cfg, run)


def _run(cfg: Config, run: Run) -> dict:
    from practicum.data.vision import load_mnist
    from practicum.models.gan import DCDiscriminator, DCGenerator, dcgan_init

    data = load_mnist(cfg.data.name)
    real = torch.from_numpy(data.train_x[: cfg.data.train_limit]).float()[:, None] / 127.5 - 1  # (N, 1, 28, 28)
    labels = torch.from_numpy(data.train_y[: cfg.data.train_limit])
    test = torch.from_numpy(data.test_x[: cfg.judge.score_samples]).float()[:, None] / 127.5 - 1

    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    fixed_z = torch.randn(GRID * GRID, cfg.model.latent_dim, generator=torch.Generator().manual_seed(cfg.seed + 1))
    net_g, net_d = DCGenerator(cfg.model.latent_dim, cfg.model.width), DCDiscriminator(cfg.model.width)
    dcgan_init(net_g)
    dcgan_init(net_d)
    betas = (cfg.optim.beta1, 0.999)
    opt_g = torch.optim.Adam(net_g.parameters(), lr=cfg.optim.lr, betas=betas)
    opt_d = torch.optim.Adam(net_d.parameters(), lr=cfg.optim.lr, betas=betas)
    loss = nn.BCEWithLogitsLoss()

    start, frames, history = 0, [], {"epoch_seconds": []}
    if run.resumed and run.checkpoint_path("last.pt").exists():
        s = checkpoint.load(run.checkpoint_path("last.pt"))
        net_g.load_state_dict(s["g"])
        net_d.load_state_dict(s["d"])
        opt_g.load_state_dict(s["opt_g"])
        opt_d.load_state_dict(s["opt_d"])
        gen.set_state(s["gen"])
        torch.set_rng_state(s["torch_rng"])
        start, frames, history = s["epoch"] + 1, list(s["frames"]), s["history"]
        run.rewind_metrics(s["metrics_position"])
    elif run.resumed:
        run.rewind_metrics(0)
    if not frames:
        frames.append(torch.from_numpy(grid_image(sample(net_g, fixed_z), "step 0")))

    bs = cfg.optim.batch_size
    steps = len(real) // bs  # drop the last partial batch (BN on a tiny batch is noisy)
    for epoch in range(start, cfg.train.epochs):
        t0 = time.perf_counter()
        order = torch.randperm(len(real), generator=gen)
        sum_d = sum_g = 0.0
        for i in range(steps):
            x = real[order[i * bs: (i + 1) * bs]]
            z = torch.randn(len(x), cfg.model.latent_dim, generator=gen)
            ones, zeros = torch.ones(len(x)), torch.zeros(len(x))
            # discriminator: real -> 1, generated (detached from G) -> 0
            fake = net_g(z)
            opt_d.zero_grad()
            loss_d = (loss(net_d(x), ones) + loss(net_d(fake.detach()), zeros)) / 2
            loss_d.backward()
            opt_d.step()
            # generator: make D say 1 on the same generated batch
            opt_g.zero_grad()
            loss_g = loss(net_d(fake), ones)
            loss_g.backward()
            opt_g.step()
            ld, lg = loss_d.item(), loss_g.item()
            sum_d, sum_g = sum_d + ld, sum_g + lg
            step = epoch * steps + i + 1
            if step % cfg.train.log_every == 0:
                run.log({"loss": ld}, split="discriminator", step=step, epoch=step / steps)
                run.log({"loss": lg}, split="generator", step=step, epoch=step / steps)
            if step % cfg.train.gif_every == 0:
                frames.append(torch.from_numpy(grid_image(sample(net_g, fixed_z), f"step {step}")))
        history["epoch_seconds"].append(time.perf_counter() - t0)
        grid = grid_image(sample(net_g, fixed_z), f"epoch {epoch + 1}  (step {(epoch + 1) * steps})")
        save_png(run.figure_path(f"samples_epoch_{epoch + 1:02d}.png"), grid)
        if (epoch + 1) * steps % cfg.train.gif_every:
            frames.append(torch.from_numpy(grid))
        history.setdefault("epoch_losses", []).append([sum_d / steps, sum_g / steps])
        save_checkpoint(run, {"g": net_g.state_dict(), "d": net_d.state_dict(), "opt_g": opt_g.state_dict(),
                              "opt_d": opt_d.state_dict(), "gen": gen.get_state(),
                              "torch_rng": torch.get_rng_state(), "epoch": epoch,
                              "frames": torch.stack(frames), "history": history,
                              "metrics_position": run.metrics_position()})

    final = sample(net_g, fixed_z)  # (64, 1, 28, 28)
    checkpoint.save(run.artifact_path("weights.pt"), {"generator": net_g.state_dict(),
                                                      "discriminator": net_d.state_dict()})
    fileio.save_npz(run.artifact_path("samples.npz"), fixed_z=fixed_z.numpy(), final=final.numpy(),
                    frames=torch.stack(frames).numpy())
    fileio.write_gif(run.figure_path("samples.gif"), [f.numpy() for f in frames], 200)

    judge = train_judge(real[: cfg.judge.train_images], labels[: cfg.judge.train_images], cfg.judge, cfg.seed)
    with torch.no_grad():
        judge_acc = float((judge(test).argmax(1) == torch.from_numpy(data.test_y[: len(test)])).float().mean())
    score_gen = torch.Generator().manual_seed(cfg.seed + 2)
    z = torch.randn(cfg.judge.score_samples, cfg.model.latent_dim, generator=score_gen)
    fake_stats, real_stats = judge_score(judge, sample(net_g, z)), judge_score(judge, test)
    fileio.write_json(run.dir / "tables" / "judge.json", {
        "columns": ["images", "judge score (max 10)", "mean top probability", "class-mix entropy (max 2.303)",
                    "predicted class counts"],
        "rows": [[name, round(s["score"], 3), round(s["confidence"], 3), round(s["class_entropy"], 3),
                  " ".join(str(int(c)) for c in s["counts"])]
                 for name, s in (("generated", fake_stats), ("real test", real_stats))],
        "caption": (f"A small CNN trained on {cfg.judge.train_images} real {cfg.data.name} images "
                    f"(test accuracy {judge_acc:.3f}) scores {len(test)} generated and {len(test)} real images"),
    })
    return {"samples/judge_score": fake_stats["score"], "samples/judge_confidence": fake_stats["confidence"],
            "samples/class_entropy": fake_stats["class_entropy"], "real/judge_score": real_stats["score"],
            "judge/test_accuracy": judge_acc,
            "train/loss_discriminator": history["epoch_losses"][-1][0],
            "train/loss_generator": history["epoch_losses"][-1][1],
            "train/seconds_per_epoch": float(np.median(history["epoch_seconds"]))}
