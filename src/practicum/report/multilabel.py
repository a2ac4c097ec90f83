"""Precision-recall figures of multi-label runs, drawn from their ``multilabel_predictions.npz``
(test ``y_true`` (N, K), ``scores`` (N, K) sigmoid probabilities, ``classes``): one figure per
run (a curve per class and the micro curve) and one overlay of the micro curves of several runs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum.report import plots
from practicum.report.render import Heading, Image

PREDICTIONS = "multilabel_predictions.npz"


def read_predictions(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def curves(data: dict) -> dict[str, tuple[np.ndarray, np.ndarray, float]]:
    """{class name or "micro": (precision, recall, AP)} from recorded scores."""
    import torch

    from practicum.metrics.multilabel import per_class, pr_curves

    probs, target = torch.from_numpy(data["scores"]).float(), torch.from_numpy(data["y_true"]).long()
    classes = [str(c) for c in data["classes"]]
    ap = {row[0]: row[-1] for row in per_class(probs, target, classes)}
    out = {}
    for key, (p, r) in pr_curves(probs, target).items():
        name = "micro" if key == "micro" else classes[int(key)]
        # micro AP: the step area under the pooled curve (recall falls along the curve)
        area = float(-np.sum(np.diff(r.numpy()) * p.numpy()[:-1])) if name == "micro" else ap[name]
        out[name] = (p.numpy(), r.numpy(), area)
    return out


def pr_figure(npz: Path, path: Path, title: str) -> Path:
    """A step PR curve per class (AP in the legend) and the micro curve (black, dashed)."""
    fig, ax = plots.plt.subplots(figsize=(5.2, 4.4))
    for name, (p, r, ap) in curves(read_predictions(npz)).items():
        style = dict(color="black", linestyle="--", linewidth=2) if name == "micro" else {}
        ax.step(r, p, where="post", label=f"{name} (AP {ap:.3f})", **style)
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.03), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    return plots.save(fig, path)


def overlay_figure(entries: list[tuple[str, Path]], path: Path, title: str) -> Path:
    """The micro PR curve of each (label, npz) on one axes."""
    fig, ax = plots.plt.subplots(figsize=(5.6, 4.6))
    for label, npz in entries:
        p, r, ap = curves(read_predictions(npz))["micro"]
        ax.step(r, p, where="post", label=f"{label} (micro AP {ap:.3f})")
    ax.set(xlabel="recall", ylabel="precision", xlim=(0, 1.01), ylim=(0, 1.03), title=title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.14), fontsize=8)  # below: never over a curve
    return plots.save(fig, path)


def short_label(point: dict) -> str:
    """The grid values only (``resnet18-imagenet, 0.001``), empty option tables left out."""
    text = ", ".join(str(v) for v in point.values() if v not in ({}, None, "")) or "base"
    return text if len(text) <= 60 else text[:57] + "..."


def study_figures(groups, figures: Path) -> list:
    """Report blocks for a study whose runs recorded multi-label predictions: each grid point's
    PR figure (its first finished seed) and the overlay of their micro curves; [] otherwise."""
    entries = []
    for point, _, runs in groups:
        found = [r for r in runs if (Path(r.dir) / PREDICTIONS).exists()]
        if found:
            entries.append((short_label(point), Path(found[0].dir) / PREDICTIONS))
    if not entries:
        return []
    blocks = [Heading("Precision-recall (test)"),
              Image(overlay_figure(entries, figures / "pr_overlay.png", "micro PR curve per grid point (test)"),
                    "micro-averaged PR curves, one per grid point (first seed)")]
    for i, (name, npz) in enumerate(entries):
        blocks.append(Image(pr_figure(npz, figures / f"pr_{i}.png", name), f"PR curves: {name}"))
    return blocks
