"""Figures of detection runs, drawn from their ``detections.npz``: every test detection ``dets``
(K, 7) rows (image, class, score, x1, y1, x2, y2), the true boxes ``truth`` (G, 6) rows (image,
class, x1, y1, x2, y2), ``classes``, ``names`` (one per test image), ``iou_threshold``, and the
few images the figure shows (``shown`` indices, ``shown_images`` (k, S, S, 3) uint8)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from practicum.report import plots

DETECTIONS = "detections.npz"
COLORS = {"apple": "#d62728", "banana": "#e6c700", "orange": "#ff7f0e"}


def read_detections(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def color(name: str) -> str:
    return COLORS.get(name, "#1f77b4")


def curves(data: dict) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{class: (recall, precision, AP)} recomputed from the recorded detections (VOC all-point)."""
    import torch

    from practicum.detection.metrics import mean_average_precision

    dets, truth = torch.from_numpy(data["dets"]).float(), torch.from_numpy(data["truth"]).float()
    n = len(data["names"])
    per_image = lambda rows: [rows[rows[:, 0] == i, 1:] for i in range(n)]  # noqa: E731
    classes = [str(c) for c in data["classes"]]
    result = mean_average_precision(per_image(dets), per_image(truth), len(classes), float(data["iou_threshold"]))
    return {c: (rec, prec, ap) for c, (rec, prec), ap in zip(classes, result["curves"], result["ap"])}


def detections_figure(npz: Path, path: Path, threshold: float, limit: int) -> Path | None:
    """Test images: true boxes dashed, detections above ``threshold`` solid with class and score."""
    plt = plots.plt
    z = read_detections(npz)
    dets, truth, classes, names = z["dets"], z["truth"], [str(c) for c in z["classes"]], z["names"]
    shown, images = z["shown"][:limit], z["shown_images"][:limit]
    if len(shown) == 0:
        return None
    cols = min(4, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.4 * rows), squeeze=False)
    for ax, k, img in zip(axes.ravel(), shown, images):
        S = img.shape[0]
        ax.imshow(img)
        for c, *box in truth[truth[:, 0] == k][:, 1:]:
            x1, y1, x2, y2 = np.array(box) * S
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle="--",
                                       linewidth=1.5, edgecolor="white"))
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linestyle="--",
                                       linewidth=1.0, edgecolor=color(classes[int(c)])))
        for _, c, score, *box in dets[(dets[:, 0] == k) & (dets[:, 2] >= threshold)]:
            x1, y1, x2, y2 = np.array(box) * S
            ax.add_patch(plt.Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, linewidth=2,
                                       edgecolor=color(classes[int(c)])))
            ax.text(x1, y1, f"{classes[int(c)]} {score:.2f}", fontsize=7, color="black", va="bottom",
                    bbox=dict(facecolor=color(classes[int(c)]), alpha=0.8, pad=1, linewidth=0))
        ax.set_title(str(names[k]).split("/")[-1], fontsize=8)
        ax.axis("off")
    for ax in axes.ravel()[len(shown):]:
        ax.axis("off")
    fig.suptitle(f"test images: true boxes dashed, detections with score >= {threshold} solid")
    fig.tight_layout()
    return plots.save(fig, path)


def pr_figure(npz: Path, path: Path) -> Path:
    """The precision-recall curve of each class on the test split, AP in the legend."""
    data = read_detections(npz)
    fig, ax = plots.plt.subplots(figsize=(5, 4))
    for name, (rec, prec, ap) in curves(data).items():
        ax.plot(rec, prec, color=color(name), label=f"{name} (AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1), ylim=(0, 1.02),
           title=f"test precision-recall, IoU {float(data['iou_threshold']):g}")
    ax.grid(alpha=0.3)
    ax.legend()
    return plots.save(fig, path)
