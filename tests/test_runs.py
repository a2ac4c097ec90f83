"""The run store against real run directories, real claim files, a real SQLite cache and real processes."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from practicum import fileio
from practicum.config import load_experiment
from practicum.store import Index, Run, read_metrics


@pytest.fixture
def cfg():
    return load_experiment("numpy-halfmoon", quick=True)


def test_index_is_a_wal_sqlite_file_on_a_local_root(home):
    Index(home)  # tmp_path is a local disk: the cache sits in the run root, as on one machine
    db = sqlite3.connect(home / "index.sqlite")
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert db.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_claim_new_then_finished_then_force(home, cfg):
    index = Index(home)
    claim = index.claim(cfg)
    assert claim.action == "new" and claim.record.status == "running"
    run = Run(index, claim.record, cfg, claim.hold, resumed=False)
    assert (run.dir / "config.toml").exists()
    assert run.dir.parent.name == cfg.name
    run.log({"loss": 1.5, "accuracy": 0.5}, split="train", step=10, epoch=1)
    run.finish({"test/accuracy": 0.9}, headline="test/accuracy=0.9000")
    rec = index.get(run.id)
    assert rec.status == "finished" and rec.summary == {"test/accuracy": 0.9}
    assert json.loads((run.dir / "summary.json").read_text()) == {"test/accuracy": 0.9}
    assert [r["name"] for r in read_metrics(run.dir)] == ["loss", "accuracy"]
    assert index.claim(cfg).action == "finished"
    forced = index.claim(cfg, force=True)
    assert forced.action == "new" and forced.record.id != run.id


def test_a_changed_model_preset_is_a_new_experiment(home, monkeypatch):
    """The file names a preset; the table behind the name is part of the identity, so a finished
    run made with the old definition is not reported as the result of the new one."""
    from practicum.models import MODELS

    lenet = load_experiment("mnist-lenet", quick=True)
    assert lenet.identity()["model"]["(resolved)"]["class"] == "practicum.models.lenet.LeNet"
    index = Index(home)
    claim = index.claim(lenet)
    Run(index, claim.record, lenet, claim.hold, resumed=False).finish({"test/accuracy": 0.9})
    assert index.claim(lenet).action == "finished"
    before = lenet.config_hash()
    preset = MODELS[lenet.model.name]
    monkeypatch.setattr(preset, "defaults", {**preset.defaults, "activation": "tanh"})
    assert lenet.config_hash() != before
    assert index.claim(lenet).action == "new"
    assert "(resolved)" not in load_experiment("numpy-halfmoon").identity()["model"]  # nothing behind its names


def test_dead_process_is_interrupted_and_resumed(home, cfg):
    """A child claims a run and dies by SIGKILL: its row turns 'interrupted' and the next claim resumes it."""
    code = (
        "import os, signal\n"
        "from practicum.config import load_experiment\n"
        "from practicum.store import Index\n"
        "c = Index().claim(load_experiment('numpy-halfmoon', quick=True))\n"
        "print(c.record.id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=os.environ)
    assert out.returncode == -9
    run_id = out.stdout.strip()
    index = Index(home)
    (run_dir,) = home.glob(f"numpy-halfmoon/{run_id}")
    assert json.loads((run_dir / "status.json").read_text())["status"] == "running"  # what the process wrote
    assert index.get(run_id).status == "interrupted"  # its claim's process is gone: known at once
    assert [r.status for r in index.list()] == ["interrupted"]
    # the dead sitting closed nothing: its time, status.json (its start) to its last metric line, still counts
    started = (run_dir / "status.json").stat().st_mtime
    (run_dir / "metrics.jsonl").touch()
    os.utime(run_dir / "metrics.jsonl", (started + 100, started + 100))
    claim = index.claim(cfg)
    assert claim.action == "resume" and claim.record.id == run_id
    assert claim.record.duration == pytest.approx(100, abs=1)


def test_live_run_is_busy_not_stolen(home, cfg):
    code = (
        "import sys, time\n"
        "from practicum.config import load_experiment\n"
        "from practicum.store import Index\n"
        "c = Index().claim(load_experiment('numpy-halfmoon', quick=True))\n"
        "print(c.record.id, flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stdin=subprocess.PIPE,
                             text=True, env=os.environ)
    try:
        run_id = child.stdout.readline().strip()
        index = Index(home)
        assert [r.status for r in index.list()] == ["running"]
        claim = index.claim(cfg)
        assert claim.action == "busy" and claim.record.id == run_id
    finally:
        child.stdin.close()
        child.wait()
    assert Index(home).claim(cfg).action == "resume"


def test_rewind_metrics_drops_lines_after_checkpoint(home, cfg):
    index = Index(home)
    claim = index.claim(cfg)
    run = Run(index, claim.record, cfg, claim.hold, resumed=False)
    run.log({"loss": 1.0}, split="train", step=1)
    pos = run.metrics_position()
    run.log({"loss": 0.5}, split="train", step=2)
    run.rewind_metrics(pos)
    run.log({"loss": 0.25}, split="train", step=2)
    run.interrupt()
    assert [r["value"] for r in read_metrics(run.dir)] == [1.0, 0.25]
    assert index.get(run.id).status == "interrupted"


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "x.json"
    fileio.write_json(target, {"a": 1})
    with pytest.raises(RuntimeError):
        with fileio.atomic_open(target, "w") as f:
            f.write('{"a": 2, "trunc')
            raise RuntimeError("crash mid-write")
    assert json.loads(target.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temp file left behind


def test_find_by_prefix_and_directory(home, cfg):
    index = Index(home)
    claim = index.claim(cfg)
    rec = claim.record
    assert index.find(rec.id[:18]).id == rec.id
    assert index.find(rec.dir).id == rec.id
    from practicum.errors import UsageError
    with pytest.raises(UsageError, match="no run 'nope'"):
        index.find("nope")
