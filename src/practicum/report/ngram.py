"""Figures of the n-gram practical, drawn from its ``zipf.json``:

    {"corpus": str, "token": "word" | "char", "freqs": {"1": [counts, high to low], "2": ..., "3": ...},
     "fits": {"1": {"a": exponent, "from": rank, "to": rank}, ...}}
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from practicum import fileio
from practicum.report import plots


def zipf_figure(json_path: Path, path: Path) -> Path:
    """D2L 9.3's log-log plot: frequency against rank for uni-, bi- and trigrams, each with its
    fitted line f = e^c r^-a drawn over the ranks it was fitted on."""
    d = fileio.read_json(json_path)
    fig, ax = plots.plt.subplots(figsize=(6.5, 4.2))
    for n, name in (("1", "unigram"), ("2", "bigram"), ("3", "trigram")):
        f = np.asarray(d["freqs"][n], float)
        r = np.arange(1, len(f) + 1)
        (line,) = ax.loglog(r, f, label=name)
        fit = d["fits"][n]
        if math.isfinite(fit["a"]):
            lo, hi = fit["from"], fit["to"]
            c = np.mean(np.log(f[lo - 1: hi]) + fit["a"] * np.log(np.arange(lo, hi + 1)))  # the LS intercept
            rr = np.array([lo, hi], float)
            ax.loglog(rr, np.exp(c) * rr ** -fit["a"], "--", color=line.get_color(), linewidth=1,
                      label=f"{name} fit: a = {fit['a']:.2f} (ranks {lo}-{hi})")
    ax.set_xlabel(f"rank ({d['token']} n-grams of {d['corpus']})")
    ax.set_ylabel("frequency")
    ax.set_title("Zipf's law: frequency ~ rank^-a")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    return plots.save(fig, path)
