"""Figures drawn from recorded data only (metrics.jsonl rows), with matplotlib's Agg backend."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from practicum import fileio  # noqa: E402


def save(fig, path: Path) -> Path:
    """Save a figure atomically as PNG (``path``, what the reports embed) and as SVG beside it
    (same name, ``.svg``: scales in a lab report), and close it. Returns the PNG's path."""
    import io

    path = Path(path)
    for fmt, target in (("png", path), ("svg", path.with_suffix(".svg"))):
        buf = io.BytesIO()
        fig.savefig(buf, format=fmt, dpi=110, bbox_inches="tight", metadata={"Date": None} if fmt == "svg" else None)
        fileio.write_bytes(target, buf.getvalue())
    plt.close(fig)
    return path


def series(rows: list[dict]) -> dict[str, dict[str, tuple[list, list]]]:
    """metric name -> split -> (x, y); x is the epoch when recorded, else the step."""
    out: dict[str, dict[str, tuple[list, list]]] = defaultdict(dict)
    for r in rows:
        xs, ys = out[r["name"]].setdefault(r["split"], ([], []))
        xs.append(r["epoch"] if r.get("epoch") is not None else r["step"])
        ys.append(r["value"])
    return out


def curves(rows: list[dict], path: Path, names: list[str] | None = None, title: str = "") -> Path | None:
    """One panel per metric (loss, accuracy, ...) with a line per split (train, test, ...)."""
    data = series(rows)
    names = [n for n in (names or sorted(data)) if n in data]
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 3.8), squeeze=False)
    for ax, name in zip(axes[0], names):
        lines = sorted(data[name].items())
        colors = plt.get_cmap("tab20" if len(lines) > 10 else "tab10").colors
        for color, (split, (xs, ys)) in zip(colors, lines):
            ax.plot(xs, ys, label=split, color=color, marker="." if len(xs) < 30 else None)
        ax.set_title(name)
        ax.set_xlabel("epoch" if any(r.get("epoch") is not None for r in rows) else "step")
        ax.grid(alpha=0.3)
        ax.legend()
        if name == "loss" and all(v > 0 for _, ys in data[name].values() for v in ys):
            ys_all = [v for _, ys in data[name].values() for v in ys]
            if max(ys_all) / max(min(ys_all), 1e-12) > 50:
                ax.set_yscale("log")
    if title:
        fig.suptitle(title)
    return save(fig, path)
