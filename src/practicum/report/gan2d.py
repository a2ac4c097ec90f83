"""Figures of the 2-D GAN (practicals/gan2d.py), drawn from its ``samples.npz``: the real points,
the fixed-noise samples after every epoch (``snapshots``, epoch 0 = before training) and the
Frechet distance per epoch."""

from __future__ import annotations

import math

import numpy as np

from practicum import fileio


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
