"""Figures every classification run gets from its ``predictions.npz``: the confusion matrix and a
grid of misclassified test images (true -> predicted)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from practicum.report import plots
from practicum.report.render import Image

FIGURES = ("confusion_matrix.png", "misclassified.png")


def classification_figures(run_dir: Path, out_dir: Path, title: str) -> list[Image]:
    """Confusion matrix and misclassified test images, when the run recorded predictions.npz."""
    path = Path(run_dir) / "predictions.npz"
    if not path.exists():
        return []
    with np.load(path, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    images = []
    y_true, y_pred = data["y_true"].astype(int), data["y_pred"].astype(int)
    n = int(max(y_true.max(), y_pred.max())) + 1
    classes = [str(c) for c in data["classes"]] if "classes" in data else [str(i) for i in range(n)]
    cm = np.zeros((n, n), int)
    np.add.at(cm, (y_true, y_pred), 1)
    fig, ax = plots.plt.subplots(figsize=(0.55 * n + 2.5, 0.55 * n + 2))
    ax.imshow(cm, cmap="Blues")
    for i in range(n):
        for j in range(n):
            ax.text(j, i, cm[i, j], ha="center", va="center", fontsize=7,
                    color="white" if cm[i, j] > cm.max() / 2 else "black")
    ax.set_xticks(range(n), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"{title}: confusion matrix")
    images.append(Image(plots.save(fig, out_dir / "confusion_matrix.png"), f"{title}: confusion matrix (test)"))
    if "mis_images" in data and len(data["mis_images"]):
        imgs, idx = data["mis_images"], data["mis_index"]
        k = min(len(imgs), 32)
        cols = min(k, 8)
        rows = math.ceil(k / cols)
        # One mosaic in one axes (32 small axes take matplotlib seconds to draw): each image in a
        # cell with a 30 % band above it for its "true→predicted" label.
        h, w = imgs.shape[1:3]
        pad, band = max(2, w // 10), int(0.3 * h)
        cell_h, cell_w = h + band + pad, w + pad
        mosaic = np.ones((rows * cell_h, cols * cell_w) + imgs.shape[3:], imgs.dtype) * 255
        fig, ax = plots.plt.subplots(figsize=(cols * 1.3, rows * 1.5))
        for n, (img, i) in enumerate(zip(imgs[:k], idx[:k])):
            top, left = (n // cols) * cell_h + band, (n % cols) * cell_w
            mosaic[top:top + h, left:left + w] = img
            ax.text(left + w / 2, top - 2, f"{classes[y_true[i]]}→{classes[y_pred[i]]}",
                    ha="center", va="bottom", fontsize=7)
        ax.imshow(mosaic, cmap="gray" if mosaic.ndim == 2 else None, vmin=0, vmax=255)
        ax.axis("off")
        fig.suptitle(f"{title}: misclassified test images (true→predicted)")
        images.append(Image(plots.save(fig, out_dir / "misclassified.png"), "misclassified test images"))
    return images
