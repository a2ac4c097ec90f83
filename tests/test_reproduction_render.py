"""Every reproduction writes its report (issue 23), end to end and without training: the test writes a
finished run, through the store, for every entry seed and study trial the reproduction's plan needs,
then runs ``practicum reproduce SEED``, which finds them all by identity, writes the study records
and reports (sweeps.py, report/study.py) and the reproduction's report.md and report.html. Every
row, figure and claim the reproduction file and its entries name must be there, in its section.

What is faked is only what a task writes: summary values for every metric the rows, claims and
traits read, a few epochs of the curves, the figures a task draws itself (a decision boundary, GIFs)
and a multilabel run's test scores. The rest is drawn by the project from them as after a real
reproduction: the runs' curves.png (run report), the studies' compare_*.png and PR figures (study
report), the report itself."""

from __future__ import annotations

import itertools
import re
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import finished_run

from practicum import fileio, reproduce, sweeps
from practicum.claims import FAILS, HOLDS, UNSURE, Sample
from practicum.config import load_experiment
from practicum.reproduce import SEEDS, load_reproduction
from practicum.report import CURVE_METRICS
from practicum.report.multilabel import PREDICTIONS
from practicum.store import Index

TRAITS = ("model/parameters", "train/seconds_per_epoch", "test/accuracy")  # what traits_rows reads
CURVES = [f"{split}/{name}" for split in ("train", "test") for name in CURVE_METRICS[:2]]  # loss, accuracy
CURVE_KINDS = ("faster", "lr_extremes")  # claims that read a metric's curve, not only its final value
EPOCHS = 4


def md(text: str) -> str:
    return text.replace("|", "\\|")  # as render.to_markdown writes a cell


def study_claims(study: str):
    return sweeps.load_study(study).claims


def read_keys(rep, seed: str) -> tuple[set[str], set[str]]:
    """(the summary keys, the curves) the reproduction's rows, claims, traits and studies read."""
    keys, curves = set(TRAITS), set(CURVES)
    for section in rep.sections:
        for entry in section.entries:
            keys |= {r.metric for r in load_experiment(entry).reproduces if r.seed == seed}
        claims = list(section.claims)
        for study in section.studies:
            claims += study_claims(study)
            keys |= set(sweeps.load_study(study).metrics)
        for c in claims:
            keys |= {s.get("key", c.metric) for s in c.a + c.b + c.items} | {c.metric}
            if c.kind == "plateau":
                keys.add(c.time_metric)
            if c.kind in CURVE_KINDS:
                curves.add(c.metric)
    return keys, curves


def draw(identity: str, key: str) -> float:
    """A fixed draw in [0, 1) per run and key: seeds and grid points differ, reruns do not."""
    return zlib.crc32(f"{identity} {key}".encode()) / 2 ** 32


def plausible(key: str, identity: str, reference: float | None = None) -> float:
    u = draw(identity, key)
    if reference is not None:  # the seed's own number, give or take 0.2 %
        return reference * (1 + 0.004 * (u - 0.5))
    if "parameters" in key:
        return float(50_000 + int(10_000 * u))
    if "seconds" in key:
        return 1.0 + u
    if "perplexity" in key:
        return 1.5 + u
    if "error" in key:
        return 0.001 * (1 + u)
    if "loss" in key:
        return 0.2 + 0.1 * u
    return 0.85 + 0.1 * u  # accuracy, F1, precision, ...


def curve(key: str, final: float) -> list[float]:
    """EPOCHS values that end at ``final``: a loss falls to it, a rate rises to it."""
    start = 2.3 if any(w in key for w in ("loss", "perplexity", "error")) else 0.1
    return [final + (start - final) * (1 - k / EPOCHS) ** 2 for k in range(1, EPOCHS + 1)]


def entry_figures(rep, entry: str) -> tuple[str, ...]:
    """The files a section's figure refs name in the entry's run, as its task would draw them;
    curves.png is the run report's, drawn from metrics.jsonl (as for a trial run without one)."""
    names = []
    for section in rep.sections:
        for ref in section.figures:
            if ref.entry == entry and ref.name != "curves":
                stems = ("relu", "sort") if "*" in ref.name else ("",)  # a glob: two files it matches
                names += [ref.name.replace("*", s) if s else f"{ref.name}.png" for s in stems]
    return tuple(names)


def write_runs(plan, rep, seed: str, index: Index) -> int:
    keys, curves = read_keys(rep, seed)
    references = {e: {r.metric: (sum(r.range) / 2 if r.range else r.value) for r in load_experiment(e).reproduces
                      if r.seed == seed} for e in plan.entries}
    written = set()
    for job in plan.jobs:
        if job.config_hash in written:  # a study trial that is an entry's seed: one run serves both
            continue
        written.add(job.config_hash)
        cfg = load_experiment(job.experiment, job.overrides, seed=job.seed)
        assert cfg.config_hash() == job.config_hash, f"{job.owner}: the plan's identity is not the config's"
        identity = job.config_hash
        summary = {k: plausible(k, identity, references.get(job.owner, {}).get(k)) for k in sorted(keys)}
        metrics = {c: curve(c, summary.get(c) or plausible(c, identity)) for c in sorted(curves)}
        record = finished_run(index, cfg, summary, metrics, entry_figures(rep, job.owner))
        if cfg.task == "multilabel":
            write_predictions(Path(record.dir), job.seed)
    return len(plan.jobs)  # as reproduce counts them (a shared run counts for each)


def write_predictions(run_dir: Path, seed: int) -> None:
    """The test scores a multilabel run saves (practicals/multilabel.py): the study's PR figures."""
    y = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 1]], np.int64)  # (N, K)
    scores = np.clip(0.7 * y + 0.4 * np.random.default_rng(seed).random(y.shape), 0, 1).astype(np.float32)
    fileio.save_npz(run_dir / PREDICTIONS, y_true=y, scores=scores, classes=np.array(["apple", "banana", "orange"]),
                    names=np.array([f"{i}.jpg" for i in range(len(y))]))


def section_text(text: str, section) -> str:
    """The part of report.md under the section's heading, up to the next section's."""
    start = text.index(f"\n## §{section.id} {section.title}\n")
    end = text.find("\n## ", start + 1)
    return text[start:end if end > 0 else None]


@pytest.fixture
def store(tmp_path, monkeypatch):
    home = tmp_path / "runs"
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    monkeypatch.delenv("PRACTICUM_INDEX", raising=False)
    monkeypatch.setenv("PRACTICUM_OFFLINE", "1")
    trained = []

    def no_training(cfg, **_):
        trained.append(cfg.name)
        raise AssertionError(f"the test would train {cfg.name}: its run was not found by identity")

    monkeypatch.setattr("practicum.execute.run_experiment", no_training)
    yield home
    assert not trained, trained


@pytest.mark.parametrize("seed", SEEDS)
def test_a_reproduction_renders_every_row_figure_and_claim(seed, store, capsys):
    from practicum.cli import main

    rep = load_reproduction(seed)
    index = Index()
    n = write_runs(reproduce.plan(seed, index=index), rep, seed, index)
    index.close()

    code = main(["reproduce", seed])
    out = capsys.readouterr()
    assert code == 0, out.err[-3000:]
    assert f"reproduction {seed}: {n} runs, {n} already finished, 0 ran, 0 failed" in out.out, out
    folder = store / "reproductions" / seed
    text, page = (folder / "report.md").read_text(), (folder / "report.html").read_text()

    assert "not run" not in text and "no finished run" not in text  # every row and claim found its runs
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", text)
    assert images and all((folder / p).is_file() for p in images), [p for p in images if not (folder / p).is_file()]
    assert page.count("<img src=\"data:image/") == len(images)

    plan = reproduce.plan(seed, index=Index())
    verdicts = "|".join(re.escape(v) for v in (HOLDS, FAILS, UNSURE))
    for section in rep.sections:
        part = section_text(text, section)
        for entry in section.entries:  # every number the entry reproduces, with all its seeds
            for r in (r for r in load_experiment(entry).reproduces if r.seed == seed):
                row = f"| §{section.id} | {md(r.what)} | {r.metric} | "
                lines = [line for line in part.splitlines() if line.startswith(row)]
                assert lines, f"§{section.id}: no row '{r.what}' ({entry})"
                assert f"(n={len(plan.entries[entry])}) |" in lines[0], lines[0]
        for ref in section.figures:
            owner = ref.entry or ref.study
            assert f"![{ref.caption} ({owner})](" in part, f"§{section.id}: no figure {ref.name} of {owner}"
        for c in [*section.claims, *(c for s in section.studies for c in study_claims(s))]:
            assert f"\n### Claim: {c.text}\n" in part, f"§{section.id}: no claim '{c.text}'"
            assert re.search(rf"^\| §{section.id} \| {re.escape(md(c.text))} \| ({verdicts}) \|", text, re.M), c.text
            checked = re.search(r"Checked on [^\n]*, by ([^\n]*)\.\n", part.split(f"### Claim: {c.text}\n")[1])[1]
            assert all(s.get("key", c.metric) in checked for s in c.a + c.b + c.items), (c.text, checked)
        if section.traits or section.traits_study:
            assert "\n### The models' traits\n" in part, f"§{section.id}: no traits table"
            after = part.split("\n### The models' traits\n")[1].lstrip("\n").splitlines()
            table = list(itertools.takewhile(lambda line: line.startswith("|"), after))[2:]  # the rows
            cells = [[c.strip() for c in line.strip("|").split(" | ")] for line in table]
            for entry in section.traits:
                row = next((c for c in cells if c[0] == entry), None)
                assert row and all(row), f"§{section.id}: traits of {entry}: {row}"
            if section.traits_study:
                points = len({repr(sorted(t.point.items())) for t in plan.studies[section.traits_study].trials})
                assert len(cells) == len(section.traits) + points and all(all(c) for c in cells), cells


def test_a_spread_keeps_the_decimals_of_its_mean():
    assert Sample("vit", [0.9202587, 0.8798264]).show() == "vit: 0.9000 ± 0.0286 (n=2)"  # not 0.9 ± 0.0
    assert Sample("gru", [6.52, 6.56]).show() == "gru: 6.540 ± 0.028 (n=2)"
