"""k-fold cross-validation (D2L 5.7): classify's data.folds/data.fold, ``practicum run --folds K``,
studies with ``folds = K`` choosing a point by its mean validation metric. Quick forms on slices of
Fashion-MNIST: each fold run trains one epoch on a few hundred images."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from practicum.config import load_experiment
from practicum.errors import UsageError

SLICE = ["-o", "data.train_limit=300", "-o", "train.tensorboard=false", "-o", "train.progress=false"]


def runs_json(cli) -> list[dict]:
    return json.loads(cli("runs", "--json")[1])


def test_fold_bounds_partition_any_size():
    from practicum.practicals.classify import fold_bounds

    for n in (10, 11, 103, 60_000):
        for k in (2, 3, 5, 10):
            bounds = fold_bounds(n, k)
            assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
            assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))  # contiguous, no gap, no overlap
            assert {stop - start for start, stop in bounds} <= {n // k, -(-n // k)}


def test_folds_partition_the_training_set_and_never_load_test(home, monkeypatch):
    import numpy as np

    from practicum.data import vision
    from practicum.practicals.classify import Data, load_data

    real = vision.load_mnist("fashion-mnist")

    class NoTest:  # what load_data sees: the real training arrays, a test set that must not be read
        train_x, train_y, classes = real.train_x, real.train_y, real.classes

        @property
        def test_x(self):
            raise AssertionError("a fold run read the test set")

        test_y = test_x

    monkeypatch.setattr(vision, "load_mnist", lambda name: NoTest())
    n, k = 103, 5
    seen = []
    for fold in range(k):
        train, val, test = load_data(Data(name="fashion-mnist", train_limit=n, folds=k, fold=fold))
        assert test is None
        assert len(val) in (n // k, n // k + 1) and len(train) + len(val) == n
        # val is one contiguous block of the first n images, train is all the others, in order
        start = sum(len(v) for v in seen)
        assert np.array_equal(val.x[:, 0].numpy(), real.train_x[start:start + len(val)])
        rest = np.concatenate([real.train_x[:start], real.train_x[start + len(val):n]])
        assert np.array_equal(train.x[:, 0].numpy(), rest)
        labels = np.concatenate([real.train_y[:start], real.train_y[start + len(val):n]])
        assert np.array_equal(train.y.numpy(), labels)
        seen.append(val)
    assert sum(len(v) for v in seen) == n  # the folds' val splits cover the set once


@pytest.mark.parametrize("overrides,message", [
    (["data.folds=1"], "data.folds = 1"),
    (["data.folds=3", "data.fold=3"], "numbered 0 .. 2"),
    (["data.fold=2"], "without data.folds"),
    (["data.folds=3", "data.val_size=100"], "replaces data.val_size"),
])
def test_fold_settings_are_checked_at_load(overrides, message):
    with pytest.raises(UsageError, match=message):
        load_experiment("fmnist-mlp", overrides)


def test_the_defaults_keep_every_identity():
    plain = load_experiment("fmnist-mlp")
    assert plain.config_hash() == load_experiment("fmnist-mlp", ["data.folds=0", "data.fold=0"]).config_hash()
    assert "folds" not in plain.identity().get("data", {})
    hashes = {load_experiment("fmnist-mlp", ["data.folds=3", f"data.fold={f}"]).config_hash() for f in range(3)}
    assert len(hashes) == 3 and plain.config_hash() not in hashes


def test_a_fold_run_validates_on_its_fold_and_measures_no_test(cli, home):
    code, out, err = cli("run", "fmnist-mlp", "--quick", "--no-report", *SLICE, "-o", "data.folds=3", "-o", "data.fold=1")
    assert code == 0, err
    (run,) = runs_json(cli)
    run_dir = Path(run["dir"])
    assert not any(k.startswith("test/") for k in run["summary"]) and "val/accuracy" in run["summary"]
    splits = {json.loads(line)["split"] for line in (run_dir / "metrics.jsonl").read_text().splitlines()}
    assert splits == {"train", "val"}
    assert not (run_dir / "predictions.npz").exists()
    record = json.loads((run_dir / "splits.json").read_text())
    assert record["bounds"] == [[0, 100], [100, 200], [200, 300]] and record["fold"] == 1
    assert record["sizes"] == {"train": 200, "val": 100}
    assert sum(record["class_counts"]["val"].values()) == 100


def test_a_held_out_validation_split_is_recorded(cli, home):
    code, _, err = cli("run", "fmnist-mlp", "--quick", "--no-report", *SLICE, "-o", "data.val_size=50")
    assert code == 0, err
    (run,) = runs_json(cli)
    record = json.loads((Path(run["dir"]) / "splits.json").read_text())
    assert record["bounds"] == {"train": [0, 250], "val": [250, 300]}  # the last 50 of the 300
    assert record["sizes"] == {"train": 250, "val": 50} and "val_size" in record["how"]
    assert sum(record["class_counts"]["val"].values()) == 50


def test_run_folds_makes_k_runs_and_a_report_over_folds_then_nothing(cli, home):
    code, out, err = cli("run", "fmnist-mlp", "--quick", "--folds", "3", *SLICE)
    assert code == 0, err
    assert "3 fold runs: 0 already finished, 3 ran, 0 failed" in out
    runs = runs_json(cli)
    assert len(runs) == 3 and {r["status"] for r in runs} == {"finished"}
    assert len({r["config_hash"] for r in runs}) == 3
    assert all(not any(k.startswith("test/") for k in r["summary"]) for r in runs)
    (study,) = [p for p in (home / "studies").iterdir() if p.name.startswith("fmnist-mlp-cv3-quick")]
    rows = list(csv.reader(open(study / "results.csv")))
    assert rows[0][:2] == ["n", "val/accuracy (mean ± std over folds)"]
    assert rows[1][0] == "3" and "±" in rows[1][1]
    values = [r["summary"]["val/accuracy"] for r in runs]
    import statistics

    assert rows[1][1] == f"{statistics.fmean(values):.4f} ± {statistics.stdev(values):.4f}"
    report = (study / "report.md").read_text()
    assert "standard deviation over folds" in report and "Cross-validation estimate" in report
    section = report.split("Cross-validation estimate", 1)[1]
    final = next(line for line in section.splitlines() if line.startswith("practicum run fmnist-mlp"))
    assert "data.fold" not in final  # the final model: all the training data, tested once

    code, out, err = cli("run", "fmnist-mlp", "--quick", "--folds", "3", *SLICE)
    assert code == 0 and "3 fold runs: 3 already finished, 0 ran, 0 failed" in out
    assert len(runs_json(cli)) == 3


def test_run_folds_refuses_what_has_no_folds(cli):
    code, _, err = cli("run", "numpy-halfmoon", "--folds", "3")
    assert code == 2 and "has no data.folds" in err
    code, _, err = cli("run", "fmnist-mlp", "--folds", "3", "--force")
    assert code == 2 and "--force" in err


def test_a_grid_over_data_fold_is_the_same_cross_validation():
    from practicum import sweeps

    by_count = sweeps.plan("fmnist-mlp", {"optim.lr": [0.1, 0.2]}, 1, folds=3, quick=True)
    by_axis = sweeps.plan("fmnist-mlp", {"optim.lr": [0.1, 0.2], "data.fold": [0, 1, 2]}, 1,
                          overrides=["data.folds=3"], quick=True)
    assert [t.config_hash for t in by_count.trials] == [t.config_hash for t in by_axis.trials]
    assert by_axis.folds == 3 and list(by_axis.grid) == ["optim.lr"]
    assert [t.point for t in by_count.trials] == [{"optim.lr": 0.1}] * 3 + [{"optim.lr": 0.2}] * 3
    with pytest.raises(UsageError, match="needs data.folds"):
        sweeps.plan("fmnist-mlp", {"data.fold": [0, 1]}, 1, quick=True)


STUDY = """
kind = "study"
name = "study-cv-test"
seed_report = "003"
experiment = "fmnist-mlp"
folds = 3
metrics = ["val/accuracy", "val/loss"]
[set]
data.train_limit = 300
train.tensorboard = false
train.progress = false
[grid]
"optim.lr" = [0.0005, 0.2]
"""


def test_a_study_with_folds_chooses_the_best_mean_val_metric(cli, home, tmp_path):
    import practicum

    path = tmp_path / "study-cv-test.toml"
    path.write_text(STUDY)
    code, out, err = cli("sweep", str(path), "--quick")
    assert code == 0, err
    assert "6 trials: 0 already finished, 6 ran, 0 failed" in out
    study = practicum.load_study("study-cv-test-quick")
    trials = study.trials
    assert sorted(trials["fold"]) == [0, 0, 1, 1, 2, 2]
    means = trials.groupby("optim.lr")["val/accuracy"].mean()
    chosen = study.chosen
    assert chosen["metric"] == "val/accuracy" and chosen["n"] == 3
    assert chosen["point"] == {"optim.lr": float(means.idxmax())}
    assert chosen["point"] == {"optim.lr": 0.2}  # 0.0005 barely moves in one epoch
    assert chosen["mean"] == pytest.approx(means.max())
    assert chosen["runner_up"]["point"] == {"optim.lr": 0.0005} and chosen["runner_up"]["paired"] == 3
    assert "data.fold" not in chosen["final_command"] and "optim.lr=0.2" in chosen["final_command"]
    results = study.results
    assert list(results[("val/accuracy", "n")]) == [3, 3]
    report = (home / "studies" / "study-cv-test-quick" / "report.md").read_text()
    assert "Chosen by the best mean val/accuracy over the 3 folds: optim.lr=0.2" in report


def test_the_catalog_study_plans_folds_of_each_weight_decay():
    from practicum.sweeps import plan_study

    p = plan_study("study-fmnist-wd-cv")
    assert p.folds == 5 and len(p.trials) == 4 * 5
    assert {t.fold for t in p.trials} == set(range(5))
    final = load_experiment("fmnist-mlp-cv")
    assert final.data.folds == 0 and final.optim.weight_decay in p.grid["optim.weight_decay"]


def test_the_python_api_runs_folds_and_names_the_estimate(home):
    import practicum

    overrides = {"data.train_limit": 200, "train.tensorboard": False, "train.progress": False}
    study = practicum.sweep("fmnist-mlp", folds=2, overrides=overrides, quick=True, name="api-cv")
    assert study.counts["ran"] == 2 and sorted(study.trials["fold"]) == [0, 1]
    assert list(study.results[("val/accuracy", "n")]) == [2]
    assert study.chosen["n"] == 2 and study.chosen["runner_up"] is None
    again = practicum.sweep("fmnist-mlp", folds=2, overrides=overrides, quick=True, name="api-cv")
    assert again.counts == {"total": 2, "skipped": 2, "ran": 0, "failed": 0}
