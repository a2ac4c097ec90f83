"""Figure of GloVe runs, drawn from their ``cooccurrence.json``: how many entries of X have each
value (log-spaced bins), and GloVe's weight h(x) = min(1, (x / x_max)^alpha) over the same axis,
so one sees which share of the pairs the weighting discounts and which it caps.

    {"edges": (41,) bin edges, "counts": (40,), "x_max": 100.0, "alpha": 0.75, "nonzeros": M, "capped": c}
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from practicum.report import plots

COOCCURRENCE = "cooccurrence.json"


def weighting_figure(stats: dict, path: Path) -> Path | None:
    if not stats.get("counts"):
        return None
    plt = plots.plt
    edges, counts = np.asarray(stats["edges"]), np.asarray(stats["counts"])
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(edges[:-1], counts, width=np.diff(edges), align="edge", color="#9ab", edgecolor="white")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("co-occurrence x_ij (sum of 1/d)")
    ax.set_ylabel("nonzero entries")
    h = ax.twinx()
    xs = np.geomspace(edges[0], edges[-1], 200)
    h.plot(xs, np.minimum(1.0, (xs / stats["x_max"]) ** stats["alpha"]), color="#c33")
    h.set_ylabel("h(x)", color="#c33")
    h.set_ylim(0, 1.05)
    ax.set_title(f"X: {stats['nonzeros']:,} nonzero entries, {stats['capped']:,} at h = 1 "
                 f"(x >= {stats['x_max']:g}); alpha = {stats['alpha']:g}", fontsize=9)
    fig.tight_layout()
    return plots.save(fig, path)
