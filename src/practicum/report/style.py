"""Figures of style transfer (practicals/style.py), drawn from its ``images.npz`` (the content,
style and result images, and the image at ``frame_steps`` as ``frames``) and metrics.jsonl (the
weighted loss terms, one split each)."""

from __future__ import annotations

import io

import numpy as np

from practicum import fileio


def images_figure(npz, path, content: str, style: str) -> None:
    """Content, style and result side by side; ``content``/``style`` name their sources."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        panels = [("content: " + content, z["content"]), ("style: " + style, z["style"]), ("result", z["result"])]
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for ax, (title, img) in zip(axes, panels):
        ax.imshow(img)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    save(fig, path)


def loss_figure(run_dir, path) -> None:
    """The weighted loss terms against step, log scale (the content term starts at 0: not drawn there)."""
    from practicum.report.plots import plt, save
    from practicum.store import read_metrics

    rows = read_metrics(run_dir)
    fig, ax = plt.subplots(figsize=(6, 4))
    for split in ("total", "content", "style", "tv"):
        pts = [(r["step"], r["value"]) for r in rows if r["split"] == split and r["value"] > 0]
        if pts:
            ax.semilogy(*zip(*pts), label=split)
    ax.set_xlabel("step")
    ax.set_ylabel("weighted loss")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("style transfer: loss terms")
    save(fig, path)


def progress_gif(npz, path) -> None:
    """The image as optimisation goes on, looping; the last frame held."""
    from PIL import Image, ImageDraw

    with np.load(npz) as z:
        frames, steps = z["frames"], z["frame_steps"]
    images = []
    for f, step in zip(frames, steps):
        im = Image.fromarray(f)
        ImageDraw.Draw(im).text((3, 2), f"step {int(step)}", fill=(255, 255, 255))
        images.append(im)
    fileio.write_gif(path, images, 150)


def result_png(npz, path) -> None:
    from PIL import Image

    with np.load(npz) as z:
        result = z["result"]
    buf = io.BytesIO()
    Image.fromarray(result).save(buf, format="PNG")
    fileio.write_bytes(path, buf.getvalue())
