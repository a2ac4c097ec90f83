"""A report as a list of blocks, rendered to Markdown (images beside it) and to one self-contained
HTML page (images embedded as data URIs, every text escaped, nothing fetched from anywhere)."""

from __future__ import annotations

import base64
import html
import mimetypes
import os
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Heading:
    text: str
    level: int = 2


@dataclass
class Paragraph:
    text: str


@dataclass
class Code:
    text: str
    language: str = ""


@dataclass
class Table:
    columns: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Image:
    path: Path
    caption: str = ""


@dataclass
class Document:
    title: str
    blocks: list = field(default_factory=list)

    def add(self, *blocks) -> "Document":
        self.blocks.extend(blocks)
        return self


def _cell(value) -> str:
    """Numbers as a reader wants them: a count as a count (97,590, not 9.759e+04), else 4 digits."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value == int(value) and abs(value) >= 1000:
            return f"{int(value):,}"
        if isinstance(value, int):
            return str(value)
        return f"{value:.4g}"
    return "" if value is None else str(value)


def _numeric(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _md_cell(value) -> str:
    return _cell(value).replace("|", "\\|").replace("\n", " ")


def to_markdown(doc: Document, base: Path) -> str:
    """Markdown with images linked relative to ``base`` (the report's directory)."""
    out = [f"# {doc.title}", ""]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Paragraph):
            out += [b.text, ""]
        elif isinstance(b, Code):
            out += [f"```{b.language}", b.text.rstrip("\n"), "```", ""]
        elif isinstance(b, Table):
            if b.caption:
                out += [f"*{b.caption}*", ""]
            out.append("| " + " | ".join(_md_cell(c) for c in b.columns) + " |")
            out.append("|" + "|".join("---" for _ in b.columns) + "|")
            out += ["| " + " | ".join(_md_cell(v) for v in row) + " |" for row in b.rows]
            out.append("")
        elif isinstance(b, Image):
            rel = os.path.relpath(b.path, base)
            out += [f"![{b.caption}]({rel})", ""]
            if b.caption:
                out += [f"*{b.caption}*", ""]
    return "\n".join(out)


STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em;
       color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #ddd; padding-bottom: .3em; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.92em; }
.table-wrap { overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 4px 10px; text-align: right; }
td { text-align: left; max-width: 40em; }
td.num { white-space: nowrap; font-variant-numeric: tabular-nums; text-align: right; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3em; }
pre { background: #f6f8fa; padding: .8em; overflow-x: auto; font-size: 0.85em; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-style: italic; color: #555; }
"""


def _data_uri(path: Path) -> str:
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return f"data:{mime};base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def to_html(doc: Document) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>{e(doc.title)}</title><style>{STYLE}</style></head><body>",
           f"<h1>{e(doc.title)}</h1>"]
    for b in doc.blocks:
        if isinstance(b, Heading):
            out.append(f"<h{b.level}>{e(b.text)}</h{b.level}>")
        elif isinstance(b, Paragraph):
            out.append(f"<p>{e(b.text)}</p>")
        elif isinstance(b, Code):
            out.append(f"<pre><code>{e(b.text)}</code></pre>")
        elif isinstance(b, Table):
            out.append('<div class="table-wrap"><table>')
            if b.caption:
                out.append(f"<caption>{e(b.caption)}</caption>")
            out.append("<tr>" + "".join(f"<th>{e(_cell(c))}</th>" for c in b.columns) + "</tr>")
            for row in b.rows:
                out.append("<tr>" + "".join(f'<td class="num">{e(_cell(v))}</td>' if _numeric(v)
                                            else f"<td>{e(_cell(v))}</td>" for v in row) + "</tr>")
            out.append("</table></div>")
        elif isinstance(b, Image):
            out.append(f'<figure><img src="{_data_uri(b.path)}" alt="{e(b.caption)}">'
                       f"<figcaption>{e(b.caption)}</figcaption></figure>")
    out.append("</body></html>")
    return "\n".join(out)
