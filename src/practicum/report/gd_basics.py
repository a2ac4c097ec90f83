"""Figures of the gd_basics practical (practicals/gd_basics.py), drawn from ``gd_basics.npz``:

    rates.<label>                 (T + 1,) gradient descent on x^2 at that rate (too_small, right, too_large)
    rates.f.<label>               (T + 1,) f along it
    rates.line.<label>            (2, G) x and f under it; rates.title.<label> its title
    nonconvex.<key>               (T + 1,) a walk on x cos(cx) (key: gd_lr2, newton_lr0.5, ...)
    nonconvex.f.<key>             (T + 1,) f along it
    nonconvex.line                (2, G) x and f; nonconvex.formula, nonconvex.label.<key>
    schedule.<name>.lr            (T,) eta_t
    schedule.<name>.exact         (T + 1, 2) the walk with the exact gradient
    schedule.<name>.noisy         (R, T + 1, 2) the noisy walks (absent with noise = 0 or on overflow)
    schedule.<name>.noisy_dist    (R, T + 1) their distances to the optimum
    schedule.grid                 (G, G) f over schedule.box; schedule.formula, schedule.noise, schedule.<name>.text
"""

from __future__ import annotations

import math

import numpy as np

ORANGE, BLUE = "#ff7f0e", "#1f77b4"


def _trace(ax, line: np.ndarray, xs: np.ndarray, fx: np.ndarray, title: str) -> None:
    """D2L's ``show_trace``: the curve, and the iterates on it joined in order (the start a square)."""
    ax.plot(line[0], line[1], color=BLUE, linewidth=1)
    ax.plot(xs, fx, "-o", color=ORANGE, markersize=3, linewidth=0.8)
    ax.plot(xs[0], fx[0], "ks", markersize=4)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x")
    ax.set_ylabel("f(x)")
    ax.grid(alpha=0.3)


def rates_figure(npz, labels: list[str], path) -> None:
    """One panel per learning rate: the walk on f(x) = x^2 (D2L 12.3.1's three figures)."""
    from practicum.report.plots import plt, save

    fig, axes = plt.subplots(1, len(labels), figsize=(4.2 * len(labels), 3.4), squeeze=False)
    with np.load(npz) as z:
        for ax, label in zip(axes[0], labels):
            xs = z[f"rates.{label}"]
            _trace(ax, z[f"rates.line.{label}"], xs, z[f"rates.f.{label}"],
                   f"{z[f'rates.title.{label}']}\nx_{len(xs) - 1} = {xs[-1]:.4g}")
    fig.suptitle("gradient descent on f(x) = x², x ← x − η · 2x")
    fig.tight_layout()
    save(fig, path)


def nonconvex_figure(npz, keys: list[str], path) -> None:
    """Every walk on x cos(cx) over the same stretch of the curve: gradient descent and Newton's method."""
    from practicum.report.plots import plt, save

    cols = min(3, len(keys))
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 3.3 * rows), squeeze=False)
    with np.load(npz) as z:
        for ax, key in zip(axes.ravel(), keys):
            xs = z[f"nonconvex.{key}"]
            _trace(ax, z["nonconvex.line"], xs, z[f"nonconvex.f.{key}"],
                   f"{z[f'nonconvex.label.{key}']}\nends at x = {xs[-1]:.4g}")
        fig.suptitle(f"f(x) = {z['nonconvex.formula']} from x0 = {z[f'nonconvex.{keys[0]}'][0]:g}")
    for ax in axes.ravel()[len(keys):]:
        ax.axis("off")
    fig.tight_layout()
    save(fig, path)


def _contours(ax, z) -> None:
    lo1, hi1, lo2, hi2 = z["schedule.box"]
    fz = z["schedule.grid"]
    g1, g2 = np.meshgrid(np.linspace(lo1, hi1, fz.shape[1]), np.linspace(lo2, hi2, fz.shape[0]))
    ax.contour(g1, g2, fz, levels=15, colors=BLUE, linewidths=0.6)
    ax.set_xlim(lo1, hi1)
    ax.set_ylim(lo2, hi2)
    ax.set_xlabel("$x_1$")
    ax.set_ylabel("$x_2$")


def schedule_figure(npz, name: str, path) -> None:
    """One schedule: eta_t; the exact-gradient walk (D2L's show_trace_2d); the noisy walk (D2L 12.4),
    the other repeats' end points grey."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        noisy = z[f"schedule.{name}.noisy"] if f"schedule.{name}.noisy" in z.files else None
        fig, axes = plt.subplots(1, 3 if noisy is not None else 2, figsize=(13 if noisy is not None else 9, 3.6))
        lrs = z[f"schedule.{name}.lr"]
        axes[0].plot(lrs, color=ORANGE)
        axes[0].set_xlabel("step t")
        axes[0].set_ylabel("η_t")
        axes[0].set_ylim(bottom=0)
        axes[0].grid(alpha=0.3)
        axes[0].set_title(f"η_t = {z[f'schedule.{name}.text']}", fontsize=8)
        for ax, walk, what in ((axes[1], z[f"schedule.{name}.exact"], "exact gradient"),
                               *(((axes[2], noisy[0], f"gradient + N(0, {float(z['schedule.noise']):g}²)"),)
                                 if noisy is not None else ())):
            _contours(ax, z)
            ax.plot(walk[:, 0], walk[:, 1], "-o", color=ORANGE, markersize=2, linewidth=0.8)
            ax.plot(*walk[0], "ks", markersize=4)
            ax.set_title(f"{what}: {len(walk) - 1} steps, ‖x‖ = {np.linalg.norm(walk[-1]):.3g}", fontsize=9)
        if noisy is not None and len(noisy) > 1:
            axes[2].plot(noisy[1:, -1, 0], noisy[1:, -1, 1], ".", color="0.4", markersize=4,
                         label=f"the other {len(noisy) - 1} walks' ends")
            axes[2].legend(fontsize=7, loc="upper right")
        fig.suptitle(f"{name} schedule on f = {z['schedule.formula']}")
    fig.tight_layout()
    save(fig, path)


def schedules_figure(npz, names: list[str], path) -> None:
    """All schedules: eta_t, and the distance to the optimum along the walks (log scale; dashed: the
    mean over the noisy walks)."""
    from practicum.report.plots import plt, save

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 3.8))
    with np.load(npz) as z:
        for i, name in enumerate(names):
            color = f"C{i}"
            a.plot(z[f"schedule.{name}.lr"], color=color, label=name)
            b.semilogy(np.linalg.norm(z[f"schedule.{name}.exact"], axis=1), color=color, label=f"{name}, exact")
            if f"schedule.{name}.noisy_dist" in z.files:
                b.semilogy(z[f"schedule.{name}.noisy_dist"].mean(0), "--", color=color, label=f"{name}, noisy (mean)")
    a.set_xlabel("step t")
    a.set_ylabel("η_t")
    a.set_title("learning rate")
    b.set_xlabel("step t")
    b.set_ylabel("‖x_t − x*‖")
    b.set_title("distance to the optimum")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save(fig, path)
