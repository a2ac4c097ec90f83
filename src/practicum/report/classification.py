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
        cols = 8
        rows = math.ceil(k / cols)
        fig, axes = plots.plt.subplots(rows, cols, figsize=(cols * 1.3, rows * 1.5), squeeze=False)
        for a in axes.ravel():
            a.axis("off")
        for a, img, i in zip(axes.ravel(), imgs[:k], idx[:k]):
            a.imshow(img, cmap="gray" if img.ndim == 2 else None)
            a.set_title(f"{classes[y_true[i]]}→{classes[y_pred[i]]}", fontsize=7)
        fig.suptitle(f"{title}: misclassified test images (true→predicted)")
        images.append(Image(plots.save(fig, out_dir / "misclassified.png"), "misclassified test images"))
    return images
