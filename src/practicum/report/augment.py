"""Figure of an augmentation policy, drawn from the run's ``augment_examples.npz``: a row per
training image, the original first, then independent draws of the policy.

    {"images": (n, 1 + draws, C, H, W) uint8, "policy": "randaugment (num_ops 2, magnitude 9)"}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum.report import plots

EXAMPLES = "augment_examples.npz"


def examples_figure(npz: Path, path: Path) -> Path:
    data = np.load(npz, allow_pickle=False)
    images, title = data["images"], str(data["policy"])
    n, k = images.shape[:2]
    plt = plots.plt
    fig, axes = plt.subplots(n, k, figsize=(1.1 * k, 1.1 * n), squeeze=False)
    for r in range(n):
        for c in range(k):
            img = images[r, c]
            ax = axes[r][c]
            ax.imshow(img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0), cmap="gray", vmin=0, vmax=255)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(str(r), fontsize=7)
    axes[0][0].set_title("original", fontsize=8)
    for c in range(1, k):
        axes[0][c].set_title(f"draw {c}", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return plots.save(fig, path)


def save_examples(run, transform, x, policy, seed: int) -> None:
    """Record what ``transform`` does to the uint8 images ``x`` (n, C, H, W), then draw it."""
    from practicum import fileio
    from practicum.data.autoaugment import examples

    npz = run.artifact_path(EXAMPLES)
    fileio.save_npz(npz, images=examples(transform, x, seed=seed), policy=np.array(describe(policy)))
    examples_figure(npz, run.figure_path("augment_examples.png"))


def describe(p) -> str:
    """A policy section in one line: its name and the options that apply to it."""
    options = {"autoaugment": ("learned_on",), "randaugment": ("num_ops", "magnitude"),
               "augmix": ("severity", "width", "depth", "alpha", "jsd")}[p.name]
    extra = [f"{o} {getattr(p, o)}" for o in options] + ([f"cutout {p.cutout}"] if p.cutout else [])
    return f"{p.name} ({', '.join(extra)})"
