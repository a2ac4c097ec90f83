"""Sweeps and studies: idempotent grids, kill -9 of one trial, parallel workers, the study report."""

import csv
import html.parser
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from practicum.config import load_experiment
from practicum.store import Index, Run

# half-moons trials of about a second each
GRID = ["--grid", "optim.lr=0.1,0.5", "--grid", "model.hidden=[4],[8]", "--seeds", "2",
        "-o", "train.epochs=300", "-o", "train.eval_every=50"]


def runs_json(cli):
    return json.loads(cli("runs", "--json")[1])


def test_grid_runs_every_trial_once_then_nothing(cli, home):
    code, out, err = cli("sweep", "numpy-halfmoon", *GRID)
    assert code == 0, err
    assert "8 trials: 0 already finished, 8 ran, 0 failed" in out
    runs = runs_json(cli)
    assert len(runs) == 8 and {r["status"] for r in runs} == {"finished"}
    assert len({r["config_hash"] for r in runs}) == 8
    code, out, _ = cli("sweep", "numpy-halfmoon", *GRID)
    assert code == 0 and "8 trials: 8 already finished, 0 ran, 0 failed" in out
    assert len(runs_json(cli)) == 8
    # the results table: 4 points, n = 2 each
    rows = list(csv.reader(open(home / "studies" / "sweep-numpy-halfmoon" / "results.csv")))
    assert rows[0][:3] == ["optim.lr", "model.hidden", "n"]
    assert [r[2] for r in rows[1:]] == ["2"] * 4
    assert all("±" in r[3] for r in rows[1:])


def test_two_workers_lose_and_duplicate_nothing(cli, home):
    code, out, err = cli("sweep", "numpy-halfmoon", *GRID, "--workers", "2")
    assert code == 0, err
    runs = runs_json(cli)
    assert len(runs) == 8 and {r["status"] for r in runs} == {"finished"}
    assert len({r["config_hash"] for r in runs}) == 8
    assert len({r["dir"] for r in runs}) == 8


def test_trial_killed_with_sigkill_is_the_only_one_rerun(home):
    args = [sys.executable, "-m", "practicum", "sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1,0.2,0.3",
            "-o", "train.epochs=4000", "-o", "train.checkpoint_every=200", "--workers", "2"]
    sweep = subprocess.Popen(args, env=os.environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = None
    deadline = time.time() + 60
    while victim is None and time.time() < deadline:
        for status in home.glob("numpy-halfmoon/*/status.json"):
            try:
                row = json.loads(status.read_text())
            except (OSError, ValueError):
                continue
            if row["status"] == "running" and list(status.parent.glob("checkpoints/last.npz")):
                victim = row
                break
        time.sleep(0.05)
    assert victim, "no trial reached its first checkpoint"
    os.kill(victim["pid"], signal.SIGKILL)
    out, err = sweep.communicate(timeout=120)
    assert sweep.returncode == 1 and "3 trials: 0 already finished, 2 ran, 1 failed" in out, err
    statuses = {r.id: r.status for r in Index(home).list()}
    assert statuses[victim["id"]] == "interrupted"
    assert sorted(statuses.values()) == ["finished", "finished", "interrupted"]

    again = subprocess.run(args, env=os.environ, capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "3 trials: 2 already finished, 1 ran, 0 failed" in again.stdout
    statuses = {r.id: r.status for r in Index(home).list()}
    assert len(statuses) == 3 and set(statuses.values()) == {"finished"}  # resumed, not a new run


# --- the report, against hand-computed numbers -----------------------------------------------------


class Page(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.rows, self.tags = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        if tag == "tr":
            self.rows += 1


def fake_trial(index, cfg, summary, curve):
    claim = index.claim(cfg)
    run = Run(index, claim.record, cfg, claim.hold, resumed=False)
    for epoch, (loss, acc) in enumerate(curve, 1):
        run.log({"loss": loss, "accuracy": acc}, split="test", step=epoch, epoch=epoch)
    run.finish(summary)
    return run


def test_table_cells_show_no_spread_they_do_not_have():
    from practicum.report.study import fmt_mean_std

    assert fmt_mean_std([0.873]) == "0.8730"  # one seed: no "± 0.0000" pretending a spread
    assert fmt_mean_std([62158.0, 62158.0]) == "62,158"  # a parameter count is a count
    assert fmt_mean_std([0.5, float("nan"), 0.7]) == "0.6000 ± 0.1414"  # NaN ignored, n = 2
    assert fmt_mean_std([float("nan")]) == "—"


def test_study_report_has_right_mean_std_and_escapes_html(home):
    from practicum.report.study import write_study_report
    from practicum.sweeps import plan, save_study_record

    evil = "<script>alert(1)</script>"
    p = plan("numpy-halfmoon", {"model.activation": ["relu", evil]}, seeds=3, quick=True, name="hand")
    index = Index(home)
    values = {"relu": [0.90, 0.80, 0.85], evil: [0.50, 0.70, 0.60]}
    seen = {"relu": 0, evil: 0}
    for t in p.trials:
        act = t.point["model.activation"]
        acc = values[act][seen[act]]
        seen[act] += 1
        cfg = load_experiment("numpy-halfmoon", t.overrides, seed=t.seed, quick=True)
        fake_trial(index, cfg, {"test/accuracy": acc}, [(1.0, acc - 0.1), (0.5, acc)])
    study_dir = save_study_record(p).parent
    md, page, results = write_study_report(study_dir, index)
    rows = list(csv.reader(open(results)))
    assert rows[0][:3] == ["model.activation", "n", "test/accuracy (mean ± std)"]
    assert rows[1][:3] == ["relu", "3", "0.8500 ± 0.0500"]  # stdev([.9,.8,.85]) = 0.05
    assert rows[2][:3] == [evil, "3", "0.6000 ± 0.1000"]
    text = page.read_text()
    assert evil not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "http://" not in text and "https://" not in text and "<link" not in text
    parsed = Page()
    parsed.feed(text)
    assert "script" not in parsed.tags
    assert parsed.imgs and all(src.startswith("data:image/png;base64,") for src in parsed.imgs)
    assert parsed.rows == 1 + 2  # header + one row per point
    assert "compare_accuracy" in md.read_text()


def test_spread_bands_stay_inside_what_the_metric_can_be(home, monkeypatch):
    import matplotlib.axes

    from practicum.report.study import write_study_report
    from practicum.sweeps import plan, save_study_record

    bands = []
    real = matplotlib.axes.Axes.fill_between
    monkeypatch.setattr(matplotlib.axes.Axes, "fill_between",
                        lambda ax, x, lo, hi, **kw: bands.append((lo, hi)) or real(ax, x, lo, hi, **kw))
    p = plan("numpy-halfmoon", {"model.activation": ["relu"]}, seeds=3, quick=True, name="bands")
    index = Index(home)
    for t, acc in zip(p.trials, (0.99, 0.2, 0.99)):  # mean 0.727 ± 0.456: wider than the room to 1
        cfg = load_experiment("numpy-halfmoon", t.overrides, seed=t.seed, quick=True)
        fake_trial(index, cfg, {"test/accuracy": acc}, [(1 - acc, acc), (1 - acc, acc)])  # loss 0.273 ± 0.456
    write_study_report(save_study_record(p).parent, index)
    assert len(bands) >= 2  # the accuracy and the loss panel
    assert all(min(lo) >= 0.0 and max(hi) <= 1.0 for lo, hi in bands)  # unclipped: 1.18 and -0.18
    assert any(max(hi) == 1.0 for lo, hi in bands) and any(min(lo) == 0.0 for lo, hi in bands)


def test_sweep_trials_reach_tensorboard_hparams(cli, home):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert cli("sweep", "numpy-halfmoon", "--grid", "optim.lr=0.1,0.5", "-o", "train.epochs=100",
               "-o", "train.eval_every=50")[0] == 0
    runs = {r["id"]: r for r in runs_json(cli)}
    tb = home / "studies" / "sweep-numpy-halfmoon" / "tb"
    assert sorted(p.name for p in tb.iterdir()) == sorted(runs)
    for run_id, rec in runs.items():
        acc = EventAccumulator(str(tb / run_id))
        acc.Reload()
        assert "accuracy/test" in acc.Tags()["scalars"]
        content = acc.PluginTagToContent("hparams")
        data = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
        assert data.session_start_info.hparams["optim.lr"].number_value in (0.1, 0.5)
        metric = [e for e in acc.Scalars("hparam/test/accuracy")]
        assert metric and metric[-1].value == pytest.approx(rec["summary"]["test/accuracy"])


def test_compare_overlays_runs(cli, home):
    cli("run", "quickstart", "--quick", "--no-report")
    cli("run", "quickstart", "--quick", "--no-report", "-o", "optim.lr=0.3")
    ids = [r["id"] for r in runs_json(cli)]
    code, out, _ = cli("compare", *ids)
    assert code == 0 and all(i in out for i in ids) and "test/accuracy" in out
    report = Path(out.strip().splitlines()[-1].split("report: ")[1])
    assert report.is_file() and "compare_accuracy.png" in report.read_text()


def test_study_report_with_a_paired_axis_names_each_pair(home):
    """An optimizer with its own learning rate is one axis "a+b"; the report lists the pairs."""
    from practicum.report.study import write_study_report
    from practicum.sweeps import plan, save_study_record

    p = plan("numpy-halfmoon", {"optim.lr+model.activation": [[0.1, "relu"], [0.5, "tanh"]]},
             seeds=1, quick=True, name="paired")
    index = Index(home)
    for t, acc in zip(p.trials, (0.8, 0.9)):
        cfg = load_experiment("numpy-halfmoon", t.overrides, seed=t.seed, quick=True)
        fake_trial(index, cfg, {"test/accuracy": acc}, [(1.0, acc)])
    md, page, results = write_study_report(save_study_record(p).parent, index)
    rows = list(csv.reader(open(results)))
    assert rows[0][:3] == ["optim.lr", "model.activation", "n"]
    assert [r[:2] for r in rows[1:]] == [["0.1", "relu"], ["0.5", "tanh"]]
    assert "optim.lr+model.activation ∈ [[0.1, 'relu'], [0.5, 'tanh']]" in md.read_text()
