"""``practicum compare RUN RUN ...``: what differs between runs, and what it did to them.

    config    the keys whose values differ (``all_keys``: every key), one column per run
    metrics   each final metric side by side, with its delta against the first run
    curves    every logged value of every run (one row each): the report overlays them
    diff      a unified diff of each run's resolved config.toml against the first's
    source    for your own model (``model.name = "file.py:Class"``): whether its source differs

The meta fields (description, expect, quick, reproduces, seed_report) say what an entry is for,
not what it computes, so they stay out of the config table; the diff shows them. Reads only the
run store (config.toml, identity.json, summary, metrics.jsonl).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from practicum import fileio
from practicum.config import flatten, read_toml
from practicum.store import RunRecord, read_metrics

META = ("description", "expect", "quick", "reproduces", "seed_report")


def settings(run_dir: Path) -> dict:
    """The run's config.toml as flat ``section.key`` values, without the meta fields."""
    raw = read_toml(Path(run_dir) / "config.toml")
    return {k: v for k, v in flatten(raw).items() if k.split(".")[0] not in META}


def differing(configs: list[dict]) -> list[str]:
    """The keys whose value is not the same in every config (a key one of them lacks differs)."""
    keys = dict.fromkeys(k for c in configs for k in c)
    missing = object()
    return [k for k in keys if len({repr(c.get(k, missing)) for c in configs}) > 1]


def model_source(run_dir: Path) -> str | None:
    """The sha256 of your own model's source, as the run's identity recorded it (identity.json)."""
    path = Path(run_dir) / "identity.json"
    if not path.is_file():
        return None
    resolved = fileio.read_json(path).get("model", {}).get("(resolved)", {})
    return resolved.get("source_sha256") if isinstance(resolved, dict) else None


def source_line(records: list[RunRecord], configs: list[dict]) -> str | None:
    """Whether the user model's source differs, or None when no run trains a model of yours."""
    names = [c.get("model.name") for c in configs]
    if not any(isinstance(n, str) and ":" in n for n in names):
        return None
    shas = [model_source(Path(r.dir)) for r in records]
    if any(s is None for s in shas):
        return "model source: not recorded for every run (runs made before identity.json)"
    if len(set(shas)) == 1:
        return f"model source: the same in every run (sha256 {shas[0][:12]})"
    return "model source: differs (" + ", ".join(f"{r.id}: {s[:12]}" for r, s in zip(records, shas)) + ")"


def unified_diff(first: RunRecord, other: RunRecord) -> str:
    a = (Path(first.dir) / "config.toml").read_text(encoding="utf-8").splitlines(keepends=True)
    b = (Path(other.dir) / "config.toml").read_text(encoding="utf-8").splitlines(keepends=True)
    return "".join(difflib.unified_diff(a, b, f"{first.id}/config.toml", f"{other.id}/config.toml"))


@dataclass
class Comparison:
    runs: list[RunRecord]
    config: pd.DataFrame  # index: key; one column per run id
    metrics: pd.DataFrame  # index: metric; per run its value, then "Δ <id>" for every run after the first
    curves: pd.DataFrame  # run, step, epoch, split, name, value
    diff: str  # unified diffs of config.toml, each run against the first
    source: str | None  # your own model: whether its source differs; None for presets

    def __repr__(self) -> str:
        return f"<comparison of {len(self.runs)} runs: {len(self.config)} config keys shown, {len(self.metrics)} metrics>"


def compare(records: list[RunRecord], all_keys: bool = False) -> Comparison:
    ids = [r.id for r in records]
    configs = [settings(Path(r.dir)) for r in records]
    keys = differing(configs)
    if all_keys:
        keys += [k for k in dict.fromkeys(k for c in configs for k in c) if k not in keys]
    config = pd.DataFrame([[c.get(k) for c in configs] for k in keys], index=pd.Index(keys, name="key"),
                          columns=ids, dtype=object)
    names = sorted({k for r in records for k, v in r.summary.items() if isinstance(v, (int, float))})
    columns = {rid: [r.summary.get(m) for m in names] for rid, r in zip(ids, records)}
    for rid in ids[1:]:
        columns[f"Δ {rid}"] = [delta(v, first) for v, first in zip(columns[rid], columns[ids[0]])]
    metrics = pd.DataFrame(columns, index=pd.Index(names, name="metric"))
    curves = pd.DataFrame([{"run": r.id, **row} for r in records for row in read_metrics(Path(r.dir))],
                          columns=["run", "step", "epoch", "split", "name", "value", "time"])
    diff = "".join(unified_diff(records[0], r) for r in records[1:])
    return Comparison(records, config, metrics, curves, diff, source_line(records, configs))


def delta(value, first):
    ok = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in (value, first))
    return value - first if ok else None


def text(c: Comparison, all_keys: bool = False) -> str:
    """The comparison as the CLI prints it: the tables, the source line, the diff."""
    lines = ["config: every key" if all_keys else "config: the keys that differ (--all-keys: every key)"]
    lines += columns_text(["key", *c.config.columns], [[k, *(show(v) for v in row)] for k, row in c.config.iterrows()])
    if c.config.empty:
        lines.append("  (no key differs)")
    first = c.runs[0].id
    lines += ["", f"final metrics (Δ against {first})"]
    rows = []
    for metric, row in c.metrics.iterrows():
        cells = [show(row[first])]
        for r in c.runs[1:]:
            d = row[f"Δ {r.id}"]
            cells.append(show(row[r.id]) + (f" ({d:+.4f})" if d is not None and pd.notna(d) else ""))
        rows.append([metric, *cells])
    lines += columns_text(["metric", *(r.id for r in c.runs)], rows)
    if c.source:
        lines += ["", c.source]
    lines += ["", c.diff.rstrip("\n") if c.diff else "config.toml: identical"]
    return "\n".join(lines)


def columns_text(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(str(x)) for x in col) for col in zip(header, *rows)]
    return ["  ".join(str(x).ljust(w) for x, w in zip(row, widths)).rstrip() for row in [header, *rows]]


def show(value) -> str:
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return ""
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) >= 1e-3 or value == 0 else f"{value:.3g}"
    return str(value)


def compare_document(c: Comparison, out_dir: Path):
    """The report: the two tables, the curves overlaid (one panel per metric), the source line, the diff."""
    from practicum.report import CURVE_METRICS
    from practicum.report.render import Code, Document, Heading, Image, Paragraph, Table
    from practicum.report.study import spread_figure

    doc = Document("Comparison: " + ", ".join(r.id for r in c.runs))
    doc.add(Heading("Config: the keys that differ"),
            Table(["key", *c.config.columns], [[k, *(show(v) for v in row)] for k, row in c.config.iterrows()])
            if not c.config.empty else Paragraph("No key differs."))
    first = c.runs[0].id
    rows = [[m, *(show(row[r.id]) for r in c.runs), *(show(row[f"Δ {r.id}"]) for r in c.runs[1:])]
            for m, row in c.metrics.iterrows()]
    doc.add(Heading("Final metrics"),
            Table(["metric", *(r.id for r in c.runs), *(f"Δ {r.id} − {first}" for r in c.runs[1:])], rows))
    groups = [({"run": f"{r.experiment} {r.id}"}, [], [r]) for r in c.runs]
    for name in CURVE_METRICS:
        fig = spread_figure(groups, name, out_dir / "figures" / f"compare_{name}.png", f"comparison: {name}")
        if fig:
            doc.add(Heading(f"Curves: {name}", 3), Image(fig, name))
    if c.source:
        doc.add(Heading("Your model's source"), Paragraph(c.source))
    doc.add(Heading("config.toml, unified diff"), Code(c.diff or "identical", "diff"))
    doc.add(Heading("Reproduce"), Code("\n".join(r.command or "" for r in c.runs), "bash"))
    return doc


def write_compare_report(c: Comparison, out_dir: Path) -> tuple[Path, Path]:
    from practicum.report.render import to_html, to_markdown

    doc = compare_document(c, out_dir)
    md, page = out_dir / "report.md", out_dir / "report.html"
    fileio.write_text(md, to_markdown(doc, out_dir))
    fileio.write_text(page, to_html(doc))
    return md, page
