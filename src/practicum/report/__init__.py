"""Reports read only the run store: config, env, metrics, summary, tables and figures on disk."""

from __future__ import annotations

import json
from pathlib import Path

from practicum import fileio
from practicum.report import plots
from practicum.report.render import Code, Document, Heading, Image, Paragraph, Table, to_html, to_markdown
from practicum.store import RunRecord, read_metrics

# metrics.jsonl names that get a curve panel, in this order, when present
CURVE_METRICS = ("loss", "accuracy", "perplexity", "f1", "lr")


def read_tables(run_dir: Path) -> list[Table]:
    """Tables a task recorded as ``tables/<name>.json`` = {columns, rows, caption?}."""
    tables = []
    for path in sorted((run_dir / "tables").glob("*.json")):
        data = fileio.read_json(path)
        tables.append(Table(data["columns"], data["rows"], data.get("caption", path.stem)))
    return tables


def run_document(record: RunRecord) -> Document:
    run_dir = Path(record.dir)
    rows = read_metrics(run_dir)
    doc = Document(f"{record.experiment} — run {record.id}")
    summary = record.summary or (fileio.read_json(run_dir / "summary.json")
                                 if (run_dir / "summary.json").exists() else {})
    duration = f"{record.duration:.1f} s" if record.duration is not None else "?"
    doc.add(Paragraph(f"Status: {record.status}. Duration: {duration}. Config hash: {record.config_hash}."),
            Heading("Reproduce"), Code(record.command or f"practicum run {run_dir / 'config.toml'}", "bash"))
    references = reference_lines(run_dir, summary)
    if references:
        doc.add(Heading("Against the seed report"), *[Paragraph(line) for line in references])
    if summary:
        doc.add(Heading("Final metrics"),
                Table(["metric", "value"], [[k, v] for k, v in sorted(summary.items())]))
    for table in read_tables(run_dir):  # the caption is the table's one heading
        doc.add(Heading(table.caption or "Table"), Table(table.columns, table.rows))
    figures = run_dir / "figures"
    curve = plots.curves(rows, figures / "curves.png",
                         names=[n for n in CURVE_METRICS if any(r["name"] == n for r in rows)],
                         title=record.experiment)
    if curve:
        doc.add(Heading("Curves"), Image(curve, "loss and accuracy per split"))
    from practicum.report.classification import FIGURES, classification_figures

    drawn = classification_figures(run_dir, figures, record.experiment)
    extra = [p for p in sorted(figures.glob("*"))
             if p.suffix in (".png", ".gif") and p.name not in ("curves.png", *FIGURES)]
    if drawn or extra:
        doc.add(Heading("Figures"))
        doc.add(*drawn, *[Image(p, p.stem.replace("_", " ")) for p in extra])
    doc.add(Heading("Config"), Code((run_dir / "config.toml").read_text(encoding="utf-8"), "toml"))
    env_path = run_dir / "env.json"
    if env_path.exists():
        doc.add(Heading("Environment"), Code(json.dumps(fileio.read_json(env_path), indent=2), "json"))
    return doc


def reference_lines(run_dir: Path, summary: dict) -> list[str]:
    """'seed 000 §3 reports 99.17 % (LeNet-5, 10 epochs); this run: 99.20 % ✓' for every number the
    run's experiment declares it reproduces (its config.toml keeps the declarations)."""
    from practicum.config import read_toml

    path = run_dir / "config.toml"
    lines = []
    for r in (read_toml(path).get("reproduces", []) if path.exists() else []):
        ours = summary.get(r["metric"])
        if not isinstance(ours, (int, float)):
            lines.append(f"{r['source']} reports {show(r['value'], r['metric'])} ({r['what']}); this run has no "
                         f"{r['metric']}.")
            continue
        better = ours >= r["value"] if r.get("higher_is_better", True) else ours <= r["value"]
        low, high = r.get("range") or (None, None)
        inside = low is not None and low <= ours <= high
        mark = "✓" if better or inside else "✗"
        shown = show(r["value"], r["metric"]) if low is None else f"{show(low, r['metric'])}–{show(high, r['metric'])}"
        lines.append(f"{r['source']} reports {shown} ({r['what']}); this run: {show(ours, r['metric'])} {mark}")
    return lines


def show(value: float, metric: str) -> str:
    """Accuracies as percentages, as the seed reports print them; anything else with 4 digits."""
    if "accuracy" in metric and 0 <= value <= 1:
        return f"{100 * value:.2f} %"
    return f"{value:.4g}"


def write_run_report(record: RunRecord) -> tuple[Path, Path]:
    """Write report.md and report.html into the run directory; returns their paths."""
    run_dir = Path(record.dir)
    doc = run_document(record)
    md, page = run_dir / "report.md", run_dir / "report.html"
    fileio.write_text(md, to_markdown(doc, run_dir))
    fileio.write_text(page, to_html(doc))
    return md, page
