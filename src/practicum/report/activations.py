"""Figures of the activations practical (practicals/activations.py), drawn from its
``boundaries.npz`` with the renderer of report/boundary.py:

    lo, hi, xtr, ytr                 the plot box and the training points
    prob_<name>  (res, res)          the final boundary (a diverged one: its last finite one)
    film_<name>  (F, res, res)       the boundary at each filmed step, float16
    film_steps_<name>, film_train_<name>, film_test_<name>   (F,) step and accuracies of each

One GIF per activation (a diverged one holds its last finite frame up to the configured count)
and one sheet with every final boundary.
"""

from __future__ import annotations

import math

import numpy as np

from practicum import fileio
from practicum.report.boundary import PALETTE, TITLE_PX, WHITE, Canvas, points_layer, render_frame, save_png


def _canvas(z, size: int, res: int) -> tuple[Canvas, tuple]:
    canvas = Canvas(z["lo"], z["hi"], size, size - TITLE_PX, res)
    return canvas, points_layer(canvas, z["xtr"], z["ytr"])


def boundary_gif(npz, row: dict, steps: int, frames: int, size: int, frame_ms: int, path) -> None:
    """The film of activation ``row["name"]``: ``frames`` frames, step and accuracies in the title,
    a progress bar under it; after a divergence the last finite boundary held, saying so."""
    name = row["name"]
    with np.load(npz, allow_pickle=False) as z:
        film = z[f"film_{name}"].astype(np.float32)
        at, train, test = z[f"film_steps_{name}"], z[f"film_train_{name}"], z[f"film_test_{name}"]
        canvas, points = _canvas(z, size, film.shape[1])
    images = [render_frame(prob.ravel(), canvas, points, [f"{name}   step {int(s)}/{steps}",
                                                          f"train acc {tr:.3f}   test {te:.3f}"],
                           progress=(i + 1) / frames)
              for i, (prob, s, tr, te) in enumerate(zip(film, at, train, test))]
    while len(images) < frames:  # diverged: keep the frame count, hold the last finite boundary
        images.append(render_frame(film[-1].ravel(), canvas, points, [
            f"{name}   DIVERGED at step {row['diverged_at']}", "loss is NaN/inf: stopped"],
            progress=(len(images) + 1) / frames))
    fileio.write_gif(path, images, frame_ms)


def grid_figure(npz, rows: list[dict], path, size: int) -> None:
    """All final boundaries side by side (PNG), the GIFs' renderer on boundaries.npz."""
    from PIL import Image

    with np.load(npz, allow_pickle=False) as z:
        probs = {r["name"]: z[f"prob_{r['name']}"] for r in rows}
        canvas, points = _canvas(z, size, next(iter(probs.values())).shape[0])
    cols = min(4, len(rows))
    sheet = Image.new("P", (cols * size, math.ceil(len(rows) / cols) * size), WHITE)
    sheet.putpalette(PALETTE)
    for i, r in enumerate(rows):
        result = (f"diverged at step {r['diverged_at']}" if r["diverged_at"] is not None
                  else f"train {r['train_acc']:.3f}  test {r['test_acc']:.3f}")
        tile = render_frame(probs[r["name"]].ravel(), canvas, points, [r["name"], result])
        sheet.paste(tile, ((i % cols) * size, (i // cols) * size))
    save_png(sheet, path)
