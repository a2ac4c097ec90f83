"""Figures of translation runs, drawn from their ``attention.json``: for each model that attends,
d2l's sentences with the attention behind each emitted token.

    {"bahdanau": [{"source": [...], "translation": [...], "weights": (t, S) nested lists}, ...], ...}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum import fileio
from practicum.report import plots

ATTENTION = "attention.json"


def attention_figure(entries: list[dict], path: Path, title: str) -> Path:
    """One heat-map per sentence: rows = emitted target tokens (+ <eos>), columns = source tokens (+ <eos>)."""
    plt = plots.plt
    fig, axes = plt.subplots(1, len(entries), figsize=(3.2 * len(entries), 3.2), squeeze=False)
    for ax, e in zip(axes[0], entries):
        a = np.asarray(e["weights"], dtype=float)  # (t, S): a row per emitted token
        cols = e["source"] + ["<eos>"]
        rows = (e["translation"] + ["<eos>"])[: a.shape[0]]
        ax.imshow(a[:, : len(cols)], cmap="Reds", vmin=0, vmax=1)
        ax.set_xticks(range(len(cols)), cols, rotation=60, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return plots.save(fig, path)


def attention_figures(run_dir: Path) -> list[Path]:
    """``figures/attention_<model>.png`` for every model in the run's ``attention.json``."""
    data = fileio.read_json(Path(run_dir) / ATTENTION)
    (Path(run_dir) / "figures").mkdir(exist_ok=True)
    return [attention_figure(entries, Path(run_dir) / "figures" / f"attention_{name}.png",
                             f"{name}: attention over the source while emitting each token")
            for name, entries in data.items()]
