"""Figures of the stability practical (D2L 5.4), drawn from what its runs recorded:

    stability.npz     x, sigmoid, grad (the sigmoid and its autograd gradient);
                      matrix_unit, matrix_scaled (norm of the product after k factors)
    grad_norms.json   {"layers": [names, input side first], "norms": [[norm per layer] per step],
                       "label": "sigmoid, init default"}

``run_figures`` draws one run's; ``study_figures`` gives a study's report the per-layer gradient
norms of every grid point side by side (study-init-stability).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum import fileio
from practicum.report import plots
from practicum.report.render import Heading, Image

GRAD_NORMS = "grad_norms.json"


def sigmoid_figure(npz: Path, path: Path) -> Path:
    with np.load(npz) as z:
        x, y, g = z["x"], z["sigmoid"], z["grad"]
    fig, ax = plots.plt.subplots(figsize=(5.5, 3.4))
    ax.plot(x, y, label="sigmoid")
    ax.plot(x, g, "--", label="gradient")
    ax.set_xlabel("x")
    ax.set_title("the sigmoid's gradient vanishes in both tails (max 1/4 at 0)")
    ax.grid(alpha=0.3)
    ax.legend()
    return plots.save(fig, path)


def matrix_figure(npz: Path, path: Path) -> Path:
    with np.load(npz) as z:
        unit, scaled = z["matrix_unit"], z["matrix_scaled"]
    fig, ax = plots.plt.subplots(figsize=(5.5, 3.4))
    k = np.arange(1, len(unit) + 1)
    ax.semilogy(k, unit, label="entries N(0, 1)")
    ax.semilogy(k, scaled, label="entries N(0, 1/n)")
    ax.set_xlabel("matrices multiplied")
    ax.set_ylabel("Frobenius norm")
    ax.set_title("a product of random matrices")
    ax.grid(alpha=0.3, which="both")
    ax.legend()
    return plots.save(fig, path)


def _layer_lines(ax, data: dict, title: str) -> None:
    norms = np.asarray(data["norms"], float)  # (steps, layers)
    if norms.size == 0:
        return
    colors = plots.plt.get_cmap("viridis")(np.linspace(0, 0.9, norms.shape[1]))
    steps = np.arange(1, len(norms) + 1)
    for j, (name, color) in enumerate(zip(data["layers"], colors)):
        ax.semilogy(steps, np.maximum(norms[:, j], 1e-30), color=color, label=f"{j + 1}: {name}")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("step")
    ax.grid(alpha=0.3, which="both")


def grad_norm_figure(json_path: Path, path: Path) -> Path:
    """Left: every layer's gradient norm over the steps; right: the norm per layer (mean over steps)."""
    data = fileio.read_json(json_path)
    fig, (a, b) = plots.plt.subplots(1, 2, figsize=(11, 3.8))
    _layer_lines(a, data, f"{data['label']}: weight-gradient norm per layer")
    a.legend(fontsize=6, ncol=2)
    norms = np.asarray(data["norms"], float)
    if norms.size:
        b.semilogy(np.arange(1, norms.shape[1] + 1), np.exp(np.log(np.maximum(norms, 1e-30)).mean(0)), "-o")
    b.set_xlabel("layer (1 = input side)")
    b.set_title("geometric mean over the recorded steps", fontsize=9)
    b.grid(alpha=0.3, which="both")
    fig.tight_layout()
    return plots.save(fig, path)


def run_figures(run_dir: Path) -> list[Path]:
    run_dir, figures = Path(run_dir), Path(run_dir) / "figures"
    npz = run_dir / "stability.npz"
    return [sigmoid_figure(npz, figures / "sigmoid.png"), matrix_figure(npz, figures / "matrix_product.png"),
            grad_norm_figure(run_dir / GRAD_NORMS, figures / "grad_norms.png")]


def profile(run_dirs: list[Path]) -> tuple[np.ndarray, np.ndarray]:
    """Per layer: mean and std over runs of log10 of the gradient norm's geometric mean over steps."""
    per_run = []
    for d in run_dirs:
        norms = np.asarray(fileio.read_json(d / GRAD_NORMS)["norms"], float)
        per_run.append(np.log10(np.maximum(norms, 1e-30)).mean(0))
    a = np.array(per_run)
    return a.mean(0), (a.std(0, ddof=1) if len(a) > 1 else np.zeros(a.shape[1]))


def study_figures(groups, figures: Path) -> list:
    """Report blocks for a study whose runs recorded gradient norms: the per-layer profile of every
    grid point (mean ± std over seeds) and each point's curves over the steps (first seed); []
    for other studies."""
    entries = []
    for point, _, runs in groups:
        dirs = [Path(r.dir) for r in runs if (Path(r.dir) / GRAD_NORMS).exists()]
        if dirs:  # "activation=sigmoid, init=xavier": the last part of each key
            entries.append((", ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items()) or "base", dirs))
    if not entries:
        return []
    plt = plots.plt
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for name, dirs in entries:
        mean, std = profile(dirs)
        layers = np.arange(1, len(mean) + 1)
        (line,) = ax.plot(layers, mean, "-o", label=f"{name} (n={len(dirs)})")
        ax.fill_between(layers, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xlabel("layer (1 = input side)")
    ax.set_ylabel("log10 |weight gradient|")
    ax.set_title("gradient norm per layer, geometric mean over the first steps")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    blocks = [Heading("Gradient norms per layer"),
              Image(plots.save(fig, figures / "grad_profile.png"),
                    "log10 of each layer's weight-gradient norm (geometric mean over the recorded steps), "
                    "mean ± std over seeds")]
    cols = min(2, len(entries))
    rows = -(-len(entries) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.5 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax, (name, dirs) in zip(axes.ravel(), entries):
        _layer_lines(ax, fileio.read_json(dirs[0] / GRAD_NORMS), name)
    for ax in axes.ravel()[len(entries):]:
        ax.axis("off")
    axes[0][0].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    blocks.append(Image(plots.save(fig, figures / "grad_steps.png"),
                        "every layer's weight-gradient norm over the first steps (first seed of each point)"))
    return blocks
