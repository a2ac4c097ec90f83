"""Figures of the DCGAN (practicals/dcgan.py), drawn from its ``samples.npz``: the fixed-noise
samples recorded during training as uint8 pixels (``frames`` (F, N, 28, 28), taken at
``frame_steps``; ``epoch_frames`` indexes the frame at each epoch end). One PNG grid per epoch
and a GIF of every frame."""

from __future__ import annotations

import io
import math

import numpy as np

from practicum import fileio

GRID = 8  # samples per row of a grid


def grid_image(pix: np.ndarray, label: str = "", scale: int = 2) -> np.ndarray:
    """(N, 28, 28) uint8 -> (H, W, 3) uint8: a GRID-wide mosaic, 2 px gaps, a caption bar."""
    from PIL import Image, ImageDraw

    n, h, w = pix.shape
    rows = math.ceil(n / GRID)
    canvas = np.full((rows * (h + 2) + 2, GRID * (w + 2) + 2), 255, np.uint8)
    for i in range(n):
        r, c = divmod(i, GRID)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = pix[i]
    img = Image.fromarray(canvas).resize((canvas.shape[1] * scale, canvas.shape[0] * scale), Image.NEAREST)
    out = Image.new("RGB", (img.width, img.height + 16), (255, 255, 255))
    out.paste(img.convert("RGB"), (0, 16))
    ImageDraw.Draw(out).text((4, 2), label, fill=(0, 0, 0))
    return np.array(out)


def save_png(path, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    fileio.write_bytes(path, buf.getvalue())


def _labels(steps: np.ndarray, epoch_frames: np.ndarray) -> list[str]:
    labels = [f"step {int(s)}" for s in steps]
    for epoch, i in enumerate(epoch_frames, start=1):
        labels[i] = f"epoch {epoch}  (step {int(steps[i])})"
    return labels


def sample_figures(npz, figure_path) -> None:
    """``samples_epoch_<k>.png`` for every epoch and ``samples.gif``; ``figure_path(name)`` -> a path."""
    with np.load(npz) as z:
        frames, steps, epoch_frames = z["frames"], z["frame_steps"], z["epoch_frames"]
    labels = _labels(steps, epoch_frames)
    grids = [grid_image(f, label) for f, label in zip(frames, labels)]
    for epoch, i in enumerate(epoch_frames, start=1):
        save_png(figure_path(f"samples_epoch_{epoch:02d}.png"), grids[i])
    fileio.write_gif(figure_path("samples.gif"), grids, 200)
