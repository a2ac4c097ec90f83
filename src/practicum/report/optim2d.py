"""Figures of the 2-D optimizer walks (practicals/optim2d.py), drawn from ``trajectories.npz``:

    <function>.<optimizer>          (T + 1, 2) the walk, float64
    values.<function>.<optimizer>   (T + 1,) f along it
    grid.<function>                 (G, G) f on a G x G grid over box.<function> (x1 min, max, x2 min, max)
    formula.<function>, minimum.<function> (NaN: unbounded below), hyper.<optimizer> (its settings as text)
"""

from __future__ import annotations

import math

import numpy as np


def trajectory_figure(npz, fname: str, optimizers: list[str], path) -> None:
    """D2L's ``show_trace_2d`` for every optimizer: contours of f and the walk on top."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        paths = {o: z[f"{fname}.{o}"] for o in optimizers}
        values = {o: z[f"values.{fname}.{o}"] for o in optimizers}
        hyper = {o: str(z[f"hyper.{o}"]) for o in optimizers}
        fz, (lo1, hi1, lo2, hi2), formula = z[f"grid.{fname}"], z[f"box.{fname}"], str(z[f"formula.{fname}"])
    g1, g2 = np.meshgrid(np.linspace(lo1, hi1, fz.shape[1]), np.linspace(lo2, hi2, fz.shape[0]))
    cols = min(3, len(optimizers))
    rows = math.ceil(len(optimizers) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.2 * rows), squeeze=False)
    for ax, o in zip(axes.ravel(), optimizers):
        ax.contour(g1, g2, fz, levels=15, colors="#1f77b4", linewidths=0.7)
        p = paths[o]
        ax.plot(p[:, 0], p[:, 1], "-o", color="#ff7f0e", markersize=3, linewidth=1)
        ax.plot(*p[0], "ks", markersize=4)
        ax.set_xlim(lo1, hi1)
        ax.set_ylim(lo2, hi2)
        ax.set_title(f"{o} ({hyper[o]})\n{len(p) - 1} steps, f = {float(values[o][-1]):.3g}", fontsize=8)
        ax.set_xlabel("$x_1$")
        ax.set_ylabel("$x_2$")
    for ax in axes.ravel()[len(optimizers):]:
        ax.axis("off")
    fig.suptitle(f"{fname}: f = {formula}")
    fig.tight_layout()
    save(fig, path)


def convergence_figure(npz, fname: str, optimizers: list[str], path) -> None:
    """f(x_t) - f* against t (log scale) for every optimizer; plain f for the saddle."""
    from practicum.report.plots import plt, save

    fig, ax = plt.subplots(figsize=(6, 4))
    with np.load(npz) as z:
        minimum, formula = float(z[f"minimum.{fname}"]), str(z[f"formula.{fname}"])
        for o in optimizers:
            values = z[f"values.{fname}.{o}"]
            if math.isfinite(minimum):
                ax.semilogy(np.maximum(values - minimum, 1e-16), marker=".", label=o)
            else:
                ax.plot(values, marker=".", label=o)
    ax.set_xlabel("step")
    ax.set_ylabel("f(x) - f*" if math.isfinite(minimum) else "f(x)")
    ax.set_title(f"{fname}: f = {formula}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, path)
