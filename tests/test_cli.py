"""The CLI contract, end to end: catalog, runs, reports, data, exit codes, kill -9 and exact resume."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from helpers import practicum


def test_list_shows_the_catalog(cli):
    code, out, _ = cli("list")
    assert code == 0
    lines = {line.split()[0]: line for line in out.splitlines()}
    assert "numpy-halfmoon" in lines and "numpy-mnist" in lines and "quickstart" in lines
    assert "[seed 000]" in lines["numpy-mnist"]


def test_quickstart_runs_records_and_reports(cli, home):
    code, out, err = cli("run", "quickstart", "--quick")
    assert code == 0, err
    assert "test/accuracy=" in out
    code, out, _ = cli("runs", "--json")
    (rec,) = json.loads(out)
    assert {"id", "experiment", "status", "dir", "config_hash", "summary"} <= set(rec)
    assert rec["status"] == "finished" and rec["experiment"] == "numpy-halfmoon"
    assert rec["summary"]["test/accuracy"] > 0.85
    run_dir = Path(rec["dir"])
    for name in ("config.toml", "env.json", "metrics.jsonl", "summary.json", "report.md", "report.html",
                 "figures/decision_boundary.png", "weights.npz"):
        assert (run_dir / name).is_file(), name
    env = json.loads((run_dir / "env.json").read_text())
    assert env["packages"]["numpy"] and env["threads"]["cpu_count"] and "practicum" in env["command"]
    first = json.loads((run_dir / "metrics.jsonl").read_text().splitlines()[0])
    assert set(first) == {"step", "epoch", "split", "name", "value", "time"}
    html = (run_dir / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 2  # curves + decision boundary, embedded
    assert "http://" not in html and "https://" not in html

    # the same config again: nothing is run, the existing run is reported
    code, out, _ = cli("run", "quickstart", "--quick")
    assert code == 0 and "already finished" in out and rec["id"] in out
    _, out, _ = cli("runs", "--json")
    assert len(json.loads(out)) == 1
    # --force makes a new run; a table and a CSV list both
    assert cli("run", "quickstart", "--quick", "--force", "--no-report")[0] == 0
    code, out, _ = cli("runs", "--experiment", "numpy-halfmoon")
    assert code == 0 and len(out.splitlines()) == 3 and out.startswith("id")
    code, out, _ = cli("runs", "--csv")
    assert out.splitlines()[0].startswith("id,experiment,status") and "test/accuracy" in out


def test_report_command_rewrites_report_from_the_store(cli, home):
    cli("run", "quickstart", "--quick", "--no-report")
    _, out, _ = cli("runs", "--json")
    run_dir = Path(json.loads(out)[0]["dir"])
    assert not (run_dir / "report.md").exists()
    code, out, _ = cli("report", json.loads(cli("runs", "--json")[1])[0]["id"])
    assert code == 0 and (run_dir / "report.md").is_file()
    md = (run_dir / "report.md").read_text()
    assert "## Final metrics" in md and "test/accuracy" in md and "## Config" in md


def test_errors_are_one_line_with_the_right_exit_status(cli, tmp_path):
    code, out, err = cli("run", "numpy-mnsit")
    assert code == 2 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert "did you mean 'numpy-mnist'" in err
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "x"\ntask = "numpy_classify"\n[optim]\nlrr = 1\n')
    code, _, err = cli("run", str(bad))
    assert code == 2 and str(bad) in err and "'optim.lrr'" in err and "did you mean 'lr'" in err
    code, _, err = cli("run", "quickstart", "-o", "optim.lr")
    assert code == 2 and "KEY=VALUE" in err
    code, _, err = cli("frobnicate")
    assert code == 2 and err.startswith("error: ")


def test_missing_dataset_offline_is_a_runtime_error(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(tmp_path / "empty"))
    monkeypatch.setenv("PRACTICUM_DATA_CACHE", str(tmp_path / "cache"))
    code, _, err = cli("run", "numpy-mnist", "--quick")
    assert code == 1 and "mnist" in err and "train-images-idx3-ubyte.gz" in err
    _, out, _ = cli("runs", "--json")
    assert json.loads(out)[0]["status"] == "failed"


def test_data_list_fetch_verify(cli):
    code, out, _ = cli("data", "list")
    assert code == 0 and "mnist:" in out and "train-images-idx3-ubyte.gz" in out and "sha256:" in out
    code, out, _ = cli("data", "fetch", "timemachine")
    assert code == 0 and "timemachine" in out
    code, out, _ = cli("data", "verify", "timemachine")
    assert code == 0 and out.startswith("ok")
    code, _, err = cli("data", "fetch", "mnsit")
    assert code == 2 and "did you mean 'mnist'" in err


# --- kill -9 and exact resume ------------------------------------------------------------------

RESUME_ARGS = ["run", "numpy-mnist", "--quick", "-o", "train.epochs=40", "-o", "train.checkpoint_every=1",
               "-o", "train.eval_every=1", "--no-report"]


def checkpoint_epoch(home: Path) -> int:
    ckpts = list(home.glob("numpy-mnist/*/checkpoints/last.npz"))
    if not ckpts:
        return -1
    try:
        with np.load(ckpts[0], allow_pickle=False) as z:
            return json.loads(str(z["meta"]))["epoch"]
    except (OSError, ValueError, KeyError):
        return -1


def test_numpy_run_killed_with_sigkill_resumes_bit_identical(home, tmp_path):
    env = dict(os.environ)
    # 1. the reference: one uninterrupted run in another home
    ref_env = {**env, "PRACTICUM_HOME": str(tmp_path / "ref")}
    assert practicum(*RESUME_ARGS, env=ref_env).returncode == 0
    (ref_dir,) = (tmp_path / "ref").glob("numpy-mnist/*/")

    # 2. the same config, killed with SIGKILL mid-run
    child = subprocess.Popen([sys.executable, "-m", "practicum", *RESUME_ARGS], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while checkpoint_epoch(home) < 10 and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert 10 <= checkpoint_epoch(home) < 39, "the kill must land mid-run"
    runs = json.loads(practicum("runs", "--json", env=env).stdout)
    assert [r["status"] for r in runs] == ["interrupted"]

    # 3. the same command again resumes that run and ends bit-identical to the reference
    out = practicum(*RESUME_ARGS, env=env)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    runs = json.loads(practicum("runs", "--json", env=env).stdout)
    assert [r["status"] for r in runs] == ["finished"] and len(runs) == 1
    run_dir = Path(runs[0]["dir"])
    with np.load(ref_dir / "weights.npz") as a, np.load(run_dir / "weights.npz") as b:
        assert a.files == b.files
        for k in a.files:
            assert np.array_equal(a[k], b[k]), k
    strip = lambda p: [(r["step"], r["split"], r["name"], r["value"])  # noqa: E731
                       for r in map(json.loads, (p / "metrics.jsonl").read_text().splitlines())]
    assert strip(ref_dir) == strip(run_dir)
    untimed = lambda d: {k: v for k, v in d.items() if "seconds" not in k}  # noqa: E731
    assert untimed(json.loads((ref_dir / "summary.json").read_text())) == untimed(runs[0]["summary"])
