"""``practicum site``: a static site over the run store, ``<runs>/site/index.html``.

    index.html           the runs: one row per run; sort, filter, search; pick two and compare
    compare.html#A,B     the comparison, built in the browser from the runs' data files
    studies.html         the studies; studies/<name>.html: metric against each hyperparameter
                         (mean ± std per point), parallel coordinates when three or more vary
    reproductions.html   each seed report's score: numbers reached, claims that hold, its report

It opens from file:// on a machine with no network: every script and datum is a file beside the
pages (``vendor/plotly.min.js`` is copied once from the plotly package; ``site.js`` is ours, plain
JavaScript, no build step). Data go in as ``<script>`` files, not fetched (a browser refuses
``fetch`` from file://): ``data/runs.js`` holds every run's row, ``data/run/<id>.js`` one run's
curves, config.toml and summary, loaded only by the comparison that shows it.

Why the comparison is built in the browser: n runs make n² pairs, too many pages to write, while
one data file per run is written once, when the run changes. So the build is incremental: a run's
row and data file are kept (``data/cache.json``) while its status.json, metrics.jsonl and report
are unchanged; only the index pages are rewritten. Reads only the run store.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import time
from importlib import resources
from pathlib import Path

from practicum import fileio
from practicum.store import Index, RunRecord, read_metrics

CACHE_VERSION = 1
HIDDEN = ("name", "task", "description", "expect", "quick", "reproduces", "seed_report")  # not config columns
CURVE_POINTS = 400  # per series in a run's data file: plenty for a plot, small for the page


def default_dir(index: Index | None = None) -> Path:
    return (index.root if index else Index().root) / "site"


# ---------------------------------------------------------------------------------------------
# Files


def write_if_changed(path: Path, text: str) -> bool:
    """Write atomically, and only when the text differs (an unchanged page keeps its mtime)."""
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # atomic; no fsync: the site is rebuilt from the store at will
    return True


def js_data(name: str, value) -> str:
    """``PRACTICUM_SITE.<name> = ...;`` safe inside a <script> (no ``</`` can close it)."""
    return f"window.PRACTICUM_SITE = window.PRACTICUM_SITE || {{}};\nPRACTICUM_SITE.{name} = " + \
        json.dumps(value, separators=(",", ":"), default=str).replace("</", "<\\/") + ";\n"


def run_data_js(run_id: str, data: dict) -> str:
    """A run's data file: it adds itself to ``PRACTICUM_SITE.run_data`` when a page loads it."""
    blob = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    return ("window.PRACTICUM_SITE = window.PRACTICUM_SITE || {};\n"
            f"(PRACTICUM_SITE.run_data = PRACTICUM_SITE.run_data || {{}})[{json.dumps(run_id)}] = {blob};\n")


def plotly_js() -> Path | None:
    """The plotly.min.js that the plotly package ships (what ``include_plotlyjs="directory"`` copies)."""
    import importlib.util

    spec = importlib.util.find_spec("plotly")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "package_data" / "plotly.min.js"
    return path if path.is_file() else None


def vendor(out: Path) -> None:
    """plotly.min.js once into vendor/ (again only when the package's differs in size), and our
    site.js and site.css."""
    source = plotly_js()
    target = out / "vendor" / "plotly.min.js"
    if source and (not target.is_file() or target.stat().st_size != source.stat().st_size):
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".plotly.min.js.{os.getpid()}.tmp")
        try:
            os.link(source, tmp)  # 4.8 MB: a hard link where the store and the package share a disk
        except OSError:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    static = resources.files("practicum") / "report" / "site_static"
    for name in ("site.js", "site.css"):
        write_if_changed(out / name, (static / name).read_text(encoding="utf-8"))


# ---------------------------------------------------------------------------------------------
# Runs


def stamp(run_dir: Path) -> str:
    """What a run's row depends on: status.json, metrics.jsonl and whether it has a report."""
    parts = []
    for name in ("status.json", "metrics.jsonl", "report.html"):
        try:
            st = os.stat(run_dir / name)
            parts.append(f"{st.st_mtime_ns}-{st.st_size}")
        except FileNotFoundError:
            parts.append("-")
    return "/".join(parts)


def flat_config(raw: dict) -> dict:
    from practicum.config import flatten

    return {k: v for k, v in flatten(raw).items() if k.split(".")[0] not in HIDDEN}


def curves(run_dir: Path) -> dict:
    """metric name -> split -> [x, y], x the epoch where recorded (else the step), thinned to
    CURVE_POINTS per series."""
    out: dict = {}
    for r in read_metrics(run_dir):
        xs, ys = out.setdefault(r["name"], {}).setdefault(r["split"], ([], []))
        xs.append(r["epoch"] if r.get("epoch") is not None else r["step"])
        ys.append(r["value"] if math.isfinite(r["value"]) else None)
    for splits in out.values():
        for split, (xs, ys) in splits.items():
            if len(xs) > CURVE_POINTS:
                keep = sorted({round(i * (len(xs) - 1) / (CURVE_POINTS - 1)) for i in range(CURVE_POINTS)})
                splits[split] = ([xs[i] for i in keep], [ys[i] for i in keep])
    return out


def link(target: Path, out: Path) -> str:
    return Path(os.path.relpath(target, out)).as_posix()


def run_row(record: RunRecord, out: Path) -> tuple[dict, dict]:
    """(the row of the runs table, the run's data file's content)."""
    from practicum.config import read_toml
    from practicum.report.compare import model_source

    run_dir = Path(record.dir)
    try:
        toml_text = (run_dir / "config.toml").read_text(encoding="utf-8")
        raw = read_toml(run_dir / "config.toml")
    except Exception:  # noqa: BLE001 - a run being created: no config yet
        toml_text, raw = "", {}
    metric = (raw.get("expect") or {}).get("metric", "test/accuracy")
    value = record.summary.get(metric)
    report = run_dir / "report.html"
    row = {
        "id": record.id, "experiment": record.experiment, "status": record.status, "started": record.started,
        "duration": record.duration, "metric": metric, "value": value if isinstance(value, (int, float)) else None,
        "headline": record.headline or record.error or "", "host": record.host or "",
        "seed_report": raw.get("seed_report") or "", "hash": record.config_hash,
        "quick": "--quick" in (record.command or ""),
        "report": link(report, out) if report.is_file() else None, "config": flat_config(raw),
    }
    data = {**row, "summary": record.summary, "toml": toml_text, "command": record.command or "",
            "source": model_source(run_dir), "curves": curves(run_dir)}
    return row, data


def run_rows(records: list[RunRecord], out: Path) -> list[dict]:
    """Every run's row; rows (and data files) of unchanged runs come from the cache."""
    cache_path = out / "data" / "cache.json"
    try:
        cache = json.loads(cache_path.read_text(encoding="utf-8"))
        if cache.get("version") != CACHE_VERSION or cache.get("out") != str(out):
            cache = {}
    except (FileNotFoundError, json.JSONDecodeError):
        cache = {}
    known = cache.get("runs", {})
    rows, fresh = [], {}
    for record in records:
        s = stamp(Path(record.dir)) + f"/{record.status}"  # 'running' turns 'interrupted' without a write
        hit = known.get(record.id)
        data_file = out / "data" / "run" / f"{record.id}.js"
        if hit and hit["stamp"] == s and data_file.is_file():
            row = hit["row"]
        else:
            row, data = run_row(record, out)
            write_if_changed(data_file, run_data_js(record.id, data))
        fresh[record.id] = {"stamp": s, "row": row}
        rows.append(row)
    for gone in set(known) - set(fresh):  # a deleted run: its data file goes too
        (out / "data" / "run" / f"{gone}.js").unlink(missing_ok=True)
    write_if_changed(cache_path, json.dumps({"version": CACHE_VERSION, "out": str(out), "runs": fresh}))
    return rows


# ---------------------------------------------------------------------------------------------
# Studies


def study_records(root: Path) -> list[dict]:
    folder = root / "studies"
    out = []
    for path in sorted(folder.glob("*/study.json")) if folder.is_dir() else []:
        try:
            out.append(fileio.read_json(path))
        except (OSError, json.JSONDecodeError):
            continue
    return out


def study_data(record: dict, by_hash: dict[str, RunRecord], root: Path, out: Path) -> dict:
    """What a study's page plots: one item per trial, its grid values, seed and finished run."""
    trials = []
    for t in record["trials"]:
        r = by_hash.get(t["config_hash"])
        trials.append({"point": t["point"], "seed": t["seed"], "fold": t.get("fold"),
                       "run": r.id if r else None, "summary": r.summary if r else {}})
    report = root / "studies" / record["name"] / "report.html"
    return {"name": record["name"], "experiment": record["experiment"], "description": record.get("description", ""),
            "axes": record.get("axes") or list(record.get("grid", {})), "metrics": record.get("metrics", []),
            "folds": record.get("folds", 0), "trials": trials,
            "report": link(report, out / "studies") if report.is_file() else None}


def study_row(data: dict) -> dict:
    done = [t for t in data["trials"] if t["run"]]
    values = {a: {json.dumps(t["point"].get(a)) for t in data["trials"]} for a in data["axes"]}
    return {"name": data["name"], "experiment": data["experiment"], "trials": len(data["trials"]),
            "finished": len(done), "varied": [a for a in data["axes"] if len(values[a]) > 1],
            "page": f"studies/{slug(data['name'])}.html",
            "report": ("studies/" + data["report"]) if data["report"] else None}


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


# ---------------------------------------------------------------------------------------------
# Reproductions: their scores, read back from the Results and Claims tables of report.md

# "within noise" is the verdict of reports written before the 95 % interval (issue 25)
REACHED = ("above", "within", "within the reported range", "above the reported range", "within noise")


def md_table(text: str, heading: str) -> tuple[list[str], list[list[str]]] | None:
    """The Markdown table right under ``## heading``: (columns, rows of cell texts)."""
    m = re.search(rf"^## {re.escape(heading)}\n", text, re.M)
    if not m:
        return None
    lines = []
    for line in text[m.end():].lstrip("\n").splitlines():
        if not line.startswith("|"):
            break
        lines.append(line)
    if len(lines) < 2:
        return None

    def cells(line: str) -> list[str]:
        parts = re.split(r"(?<!\\)\|", line.strip()[1:-1])
        return [p.strip().replace("\\|", "|") for p in parts]

    return cells(lines[0]), [cells(line) for line in lines[2:]]


def reproduction_score(folder: Path) -> dict | None:
    """numbers reached k of n, claims that hold / do not hold / cannot tell, of one reproduction."""
    from practicum.claims import FAILS, HOLDS, UNSURE

    md = folder / "report.md"
    if not md.is_file():
        return None
    text = md.read_text(encoding="utf-8")
    title = text.splitlines()[0].lstrip("# ").strip() if text else folder.name
    score = {"name": folder.name, "title": title, "numbers": 0, "reached": 0, "not_run": 0,
             "holds": 0, "fails": 0, "unsure": 0, "built": md.stat().st_mtime}
    results = md_table(text, "Results")
    if results and "verdict" in results[0]:
        i = results[0].index("verdict")
        verdicts = [row[i] for row in results[1] if len(row) > i]
        score["numbers"] = len(verdicts)
        score["reached"] = sum(v.split(" (")[0] in REACHED for v in verdicts)
        score["not_run"] = sum(v == "not run" for v in verdicts)
    claims = md_table(text, "Claims")
    if claims and "verdict" in claims[0]:
        i = claims[0].index("verdict")
        verdicts = [row[i] for row in claims[1] if len(row) > i]
        score.update(holds=verdicts.count(HOLDS), fails=verdicts.count(FAILS), unsure=verdicts.count(UNSURE))
    return score


def reproduction_scores(root: Path, out: Path) -> list[dict]:
    folder = root / "reproductions"
    scores = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
        score = reproduction_score(sub)
        if score:
            page = sub / "report.html"
            score["report"] = link(page, out) if page.is_file() else None
            scores.append(score)
    return scores


# ---------------------------------------------------------------------------------------------
# Pages


NAV = (("index.html", "Runs"), ("studies.html", "Studies"), ("reproductions.html", "Reproductions"))


def page(title: str, view: str, out: Path, where: Path, scripts: list[str], inline: str = "",
         plots: bool = False) -> str:
    """A page: nav, a <main> that site.js fills with ``view``, its scripts (paths from ``out``)."""
    up = link(out, where) + "/" if where != out else ""
    e = html.escape
    nav = " ".join(f'<a href="{up}{href}"{" class=here" if text == title.split(":")[0] else ""}>{text}</a>'
                   for href, text in NAV)
    srcs = ([f"{up}vendor/plotly.min.js"] if plots else []) + [f"{up}{s}" for s in scripts] + [f"{up}site.js"]
    tags = "\n".join(f'<script src="{e(s)}"></script>' for s in srcs)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>{e(title)} — practicum</title><link rel="stylesheet" href="{up}site.css">
<link rel="icon" href="data:,"></head>
<body><header><b>practicum</b> {nav}<span class="built" id="built"></span></header>
<main id="main" data-view="{e(view)}" data-root="{e(up)}"><noscript>This page needs JavaScript.</noscript></main>
{f"<script>{inline}</script>" if inline else ""}
{tags}
<script>PracticumSite.start();</script>
</body></html>
"""


def build(out: Path | None = None, index: Index | None = None) -> Path:
    """Write (or bring up to date) the site; returns its index.html."""
    index = index or Index()
    root = index.root
    out = Path(out).resolve() if out else root / "site"
    out.mkdir(parents=True, exist_ok=True)
    vendor(out)
    records = index.list()
    rows = run_rows(records, out)
    by_hash: dict[str, RunRecord] = {}
    for r in records:  # sorted by start: the latest finished run of an identity wins
        if r.status == "finished":
            by_hash[r.config_hash] = r
    studies = [study_data(s, by_hash, root, out) for s in study_records(root)]
    member = {}
    for s in studies:
        for t in s["trials"]:
            if t["run"]:
                member.setdefault(t["run"], []).append(s["name"])
    for row in rows:
        row["tags"] = (["quick"] if row.get("quick") else []) + member.get(row["id"], [])
    meta = {"root": str(root), "built": time.time(), "runs": len(rows)}
    write_if_changed(out / "data" / "runs.js", js_data("runs", rows) + js_data("meta", meta))
    write_if_changed(out / "index.html", page("Runs", "runs", out, out, ["data/runs.js"]))
    write_if_changed(out / "compare.html", page("Runs: compare", "compare", out, out, ["data/runs.js"], plots=True))
    write_if_changed(out / "data" / "studies.js", js_data("studies", [study_row(s) for s in studies]))
    write_if_changed(out / "studies.html", page("Studies", "studies", out, out, ["data/studies.js", "data/runs.js"]))
    wanted = set()
    for s in studies:
        path = out / "studies" / f"{slug(s['name'])}.html"
        wanted.add(path.name)
        write_if_changed(path, page(f"Studies: {s['name']}", "study", out, out / "studies", ["data/runs.js"],
                                    inline=js_data("study", s), plots=True))
    for old in (out / "studies").glob("*.html") if (out / "studies").is_dir() else []:
        if old.name not in wanted:
            old.unlink()
    write_if_changed(out / "data" / "reproductions.js", js_data("reproductions", reproduction_scores(root, out)))
    write_if_changed(out / "reproductions.html", page("Reproductions", "reproductions", out, out,
                                                      ["data/reproductions.js", "data/runs.js"]))
    return out / "index.html"


def refresh(say=None) -> Path | None:
    """``build()`` after a run, sweep or reproduction: never fails the command that made the runs
    (a problem is one line on stderr)."""
    import sys

    try:
        return build()
    except Exception as e:  # noqa: BLE001 - the site is a view; the runs are recorded already
        (say or (lambda m: print(m, file=sys.stderr)))(f"practicum: warning: site not refreshed: {type(e).__name__}: {e}")
        return None
