"""Figures of the conv_scratch practical, drawn from its ``kernel.json``:

    {"X": (h, w), "Y": (h', w'), "K": true kernel, "shape": [kh, kw], "lr": float,
     "kernels": {impl: [[k entries] per step, the start first]}, "losses": {impl: [loss per step]}}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum import fileio
from practicum.report import plots


def _heat(ax, a: np.ndarray, title: str, vmin: float, vmax: float) -> None:
    ax.imshow(a, cmap="coolwarm_r" if vmin < 0 else "gray", vmin=vmin, vmax=vmax)
    if a.size <= 16:  # a kernel: its values written in
        for (i, j), v in np.ndenumerate(a):
            ax.text(j, i, f"{v:.3f}", ha="center", va="center", fontsize=9)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def kernel_figures(json_path: Path, figures: Path) -> list[Path]:
    """``edges.png``: the image, its edges and the kernels (true and learned); ``kernel.png``:
    every kernel entry and the loss over the steps."""
    plt = plots.plt
    d = fileio.read_json(json_path)
    shape = tuple(d["shape"])
    impls = list(d["kernels"])
    K = np.asarray(d["K"], float)
    fig, axes = plt.subplots(1, 3 + len(impls), figsize=(3.0 * (3 + len(impls)), 2.6))
    _heat(axes[0], np.asarray(d["X"]), "X (a band of zeros)", 0, 1)
    _heat(axes[1], np.asarray(d["Y"]), "Y = corr2d(X, K): the edges", -1, 1)
    _heat(axes[2], K, "true K", -1, 1)
    for ax, impl in zip(axes[3:], impls):
        _heat(ax, np.asarray(d["kernels"][impl][-1]).reshape(shape), f"learned ({impl})", -1, 1)
    fig.tight_layout()
    paths = [plots.save(fig, figures / "edges.png")]

    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [f"k[{i},{j}]" for i in range(shape[0]) for j in range(shape[1])]
    for impl, style in zip(impls, ("-o", "--s")):
        ks = np.asarray(d["kernels"][impl])  # (steps + 1, kh * kw)
        for k, name in enumerate(names):
            a.plot(ks[:, k], style, markersize=3, label=f"{impl} {name}")
        b.semilogy(d["losses"][impl], style, markersize=3, label=impl)
    for k, v in enumerate(K.flatten()):
        a.axhline(v, color="k", linewidth=0.6, linestyle=":")
    a.set_xlabel("step")
    a.set_title("kernel entries (dotted: the true K)")
    a.legend(fontsize=7)
    b.set_xlabel("step")
    b.set_title(f"loss sum((conv(X) - Y)^2), lr {d['lr']}")
    b.legend(fontsize=7)
    for ax in (a, b):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    paths.append(plots.save(fig, figures / "kernel.png"))
    return paths
