"""The torch fit loop: registries, batched data, checkpoints of random state, learning, TensorBoard,
determinism, best checkpoint and early stopping. (Kill -9 resume and DDP: test_train_processes.py;
every catalog entry: test_classify_catalog.py.)"""

from __future__ import annotations

import io
import json
import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from practicum.data.tensors import Loader, Pipeline, TensorSet, random_shift
from practicum.errors import UsageError
from practicum.train import checkpoint
from practicum.train.optim import (LOSSES, OPTIMIZERS, SCHEDULES, build_loss, build_optimizer, build_schedule,
                                   multiplier)



def run_dir_of(cli, experiment: str) -> Path:
    _, out, _ = cli("runs", "--json", "--experiment", experiment)
    return Path(json.loads(out)[-1]["dir"])


def metric_rows(run_dir: Path) -> list[tuple]:
    """metrics.jsonl without wall-clock times."""
    rows = map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"]) for r in rows]


# --- registries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_every_optimizer_builds_and_steps(name):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 3)
    momentum = 0.9 if name in ("sgd", "scratch-momentum") else 0.0  # scratch-momentum requires one
    opt = build_optimizer(name, model.parameters(), lr=0.1, momentum=momentum,
                          nesterov=name == "sgd", weight_decay=None, betas=None, eps=None)
    before = model.weight.detach().clone()
    F.cross_entropy(model(torch.randn(8, 4)), torch.randint(0, 3, (8,))).backward()
    opt.step()
    assert not torch.equal(before, model.weight)
    assert isinstance(opt, torch.optim.Optimizer)


def test_optimizer_errors_name_the_problem():
    params = torch.nn.Linear(2, 2).parameters()
    with pytest.raises(UsageError, match="did you mean 'adam'"):
        build_optimizer("adm", params, lr=0.1)
    with pytest.raises(UsageError, match="momentum"):
        build_optimizer("sgd", params, lr=0.1, nesterov=True)
    with pytest.raises(UsageError, match="unknown schedule"):
        build_schedule(torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), 0.1), "cosin", total_steps=10)


@pytest.mark.parametrize("name", SCHEDULES.names())
def test_every_schedule_starts_finite_and_ends_at_most_at_the_peak(name):
    values = [multiplier(name, s, 100, warmup_steps=10) for s in range(100)]
    assert all(math.isfinite(v) and 0 <= v <= 1.0 + 1e-12 for v in values)
    assert values[0] == pytest.approx(0.1)  # warm-up: 1/10, 2/10, ... 10/10
    assert values[9] == pytest.approx(1.0)


def test_schedule_values():
    # linear warm-up, then the schedule over the remaining steps
    assert [multiplier("constant", s, 20, warmup_steps=4) for s in range(6)] == [0.25, 0.5, 0.75, 1, 1, 1]
    assert multiplier("cosine", 10, 20, warmup_steps=10) == pytest.approx(1.0)
    assert multiplier("cosine", 19, 20, warmup_steps=10) == pytest.approx(0.0, abs=1e-12)
    assert multiplier("cosine", 99, 100, final=0.1) == pytest.approx(0.1)
    assert multiplier("cosine", 50, 101) == pytest.approx(0.5)
    assert [multiplier("step", s, 100, step_size=10, gamma=0.5) for s in (0, 9, 10, 25)] == [1, 1, 0.5, 0.25]
    # one-cycle: from `start` up to 1 at pct_start, then linearly down to `final` at the last step
    oc = [multiplier("onecycle", s, 101, pct_start=0.2, start=0.1, final=0.0) for s in range(101)]
    assert oc[0] == pytest.approx(0.1) and oc[20] == pytest.approx(1.0) and oc[100] == pytest.approx(0.0)
    assert max(oc) == oc[20] and oc[10] == pytest.approx(0.55)
    assert all(a < b for a, b in zip(oc[:20], oc[1:21])) and all(a > b for a, b in zip(oc[20:], oc[21:]))


def test_schedule_drives_the_optimizer_per_step_and_saves_plain_state():
    opt = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=0.2)
    sched = build_schedule(opt, "onecycle", total_steps=10, pct_start=0.5, start=0.5, final=0.0)
    seen = []
    for _ in range(10):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([0.2 * multiplier("onecycle", s, 10, pct_start=0.5, start=0.5, final=0.0)
                                  for s in range(10)])
    buf = io.BytesIO()
    torch.save(sched.state_dict(), buf)
    buf.seek(0)
    assert torch.load(buf, weights_only=True)["last_epoch"] == 10


def test_losses():
    torch.manual_seed(0)
    logits, y = torch.randn(16, 5), torch.randint(0, 5, (16,))
    assert set(LOSSES.names()) >= {"cross_entropy", "nll", "label_smoothing"}
    ce = build_loss("cross_entropy")(logits, y)
    assert build_loss("nll")(logits, y) == pytest.approx(float(ce), rel=1e-6)
    smooth = build_loss("label_smoothing")(logits, y)
    assert smooth == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=0.1)))
    assert build_loss("cross_entropy", 0.2)(logits, y) == pytest.approx(
        float(F.cross_entropy(logits, y, label_smoothing=0.2)))
    target = torch.randint(0, 2, (16, 5)).float()
    assert build_loss("bce")(logits, target) == pytest.approx(
        float(F.binary_cross_entropy_with_logits(logits, target)))


# --- data as tensors ----------------------------------------------------------------------------


def test_random_shift_is_a_zero_filled_translation():
    x = torch.arange(2 * 3 * 5 * 6, dtype=torch.float32).view(2, 3, 5, 6) + 1
    shifts = torch.tensor([[0, 4], [2, 2]])  # pad 2: (dy, dx) = (-2, +2) and (0, 0)
    out = random_shift(x, 2, shifts=shifts)
    padded = F.pad(x, (2, 2, 2, 2))
    for b, (sy, sx) in enumerate(shifts.tolist()):
        assert torch.equal(out[b], padded[b, :, sy:sy + 5, sx:sx + 6])
    assert torch.equal(out[1], x[1])


def test_pipeline_resizes_normalises_and_shifts_only_in_training():
    x = torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8)
    pipe = Pipeline(image_size=32, mean=[0.5], std=[0.25], shift=2)
    g = torch.Generator().manual_seed(0)
    out = pipe(x, train=False)
    assert out.shape == (4, 1, 32, 32) and out.dtype == torch.float32
    same = Pipeline(image_size=32, mean=[0.5], std=[0.25])(x, train=True)
    assert torch.equal(out, same)  # no shift configured -> identical
    assert not torch.equal(pipe(x, train=True, shifts=torch.randint(0, 5, (4, 2), generator=g)), out)
    small = Pipeline(image_size=28)(x, train=False)
    assert torch.equal(small, x.float() / 255)


def test_mean_std_from_a_histogram_matches_numpy():
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (50, 7, 7), dtype=np.uint8)
    mean, std = TensorSet.from_arrays(x, np.zeros(50, np.int64), ["a"]).mean_std()
    assert mean[0] == pytest.approx(x.mean() / 255) and std[0] == pytest.approx((x / 255).std(ddof=1))


def test_loader_batches_are_slices_of_a_seeded_permutation_and_shard_over_ranks():
    data = TensorSet.from_arrays(np.arange(10 * 4, dtype=np.uint8).reshape(10, 2, 2),
                                 np.arange(10), ["c"])
    pipe = Pipeline(shift=1)
    one = Loader(data, 4, pipe, train=True, generator=torch.Generator().manual_seed(3))
    assert one.steps_per_epoch == 3
    order = one.order()
    assert sorted(order.tolist()) == list(range(10))
    one.batch(order, 0)
    x1, y1 = one.batch(order, 1)
    assert torch.equal(y1, order[4:8])
    # two ranks with the same generator: each gets half of the same global batch, same shifts
    parts = []
    for rank in range(2):
        ld = Loader(data, 4, pipe, train=True, generator=torch.Generator().manual_seed(3), rank=rank, world=2)
        o = ld.order()
        ld.batch(o, 0)  # the draws of batch 0
        parts.append(ld.batch(o, 1))
    assert torch.equal(torch.cat([p[1] for p in parts]), y1)
    assert torch.equal(torch.cat([p[0] for p in parts]), x1)
    # evaluation: in order, every sample once; sharded contiguously over ranks
    ev = [Loader(data, 3, pipe, train=False, rank=r, world=2) for r in range(2)]
    assert torch.cat([y for ld in ev for _, y in ld]).tolist() == list(range(10))
    # a last global batch smaller than the world is dropped in training (a rank would get none)
    assert Loader(TensorSet.from_arrays(np.zeros((9, 2, 2), np.uint8), np.zeros(9, np.int64), ["c"]), 4,
                  pipe, train=True, world=2).steps_per_epoch == 2


def test_rng_state_round_trips_through_a_weights_only_load():
    g = torch.Generator().manual_seed(5)
    checkpoint.seed_everything(1)
    state = checkpoint.rng_state(g)
    buf = io.BytesIO()
    torch.save(state, buf)
    expected = (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g))
    random.random(), np.random.rand(), torch.rand(3), torch.rand(2, generator=g)  # move every stream on
    buf.seek(0)
    checkpoint.set_rng_state(torch.load(buf, weights_only=True), g)
    assert (random.random(), np.random.rand(), torch.rand(1), torch.rand(1, generator=g)) == expected


# --- the loop, through the classify task ---------------------------------------------------------


def test_quick_lenet_learns_and_records_everything(cli):
    code, out, err = cli("run", "mnist-lenet", "--quick", "--no-report")
    assert code == 0, err
    run_dir = run_dir_of(cli, "mnist-lenet")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["test/accuracy"] > 0.4  # chance is 0.1
    assert summary["model/parameters"] == 61706 and summary["train/seconds_per_epoch"] > 0
    assert summary["train/steps"] == 32 and summary["train/epochs"] == 1
    with np.load(run_dir / "predictions.npz", allow_pickle=False) as z:
        assert len(z["y_true"]) == len(z["y_pred"]) == 500
        wrong = np.flatnonzero(z["y_true"] != z["y_pred"])
        assert np.array_equal(z["mis_index"], wrong)
        assert z["mis_images"].shape == (min(len(wrong), 32), 28, 28)  # as stored, before resizing and z["mis_images"].dtype == np.uint8
        assert list(z["classes"]) == [str(i) for i in range(10)]
        assert z["confusion"].shape == (10, 10) and z["confusion"].sum() == 500
        assert np.trace(z["confusion"]) / 500 == pytest.approx(summary["test/accuracy"])
    table = json.loads((run_dir / "tables" / "confusion.json").read_text())
    assert len(table["rows"]) == 10 and len(table["columns"]) == 11
    for name in ("checkpoints/last.pt", "model.pt"):
        ck = torch.load(run_dir / name, weights_only=True)
        assert "model" in ck
    names = {(r[2], r[3]) for r in metric_rows(run_dir)}
    assert {("train", "loss"), ("train", "accuracy"), ("train", "lr"), ("test", "loss"),
            ("test", "accuracy")} <= names


def test_run_report_shows_the_confusion_matrix_and_misclassified_images(cli):
    code, _, err = cli("run", "mnist-lenet", "--quick")
    assert code == 0, err
    run_dir = run_dir_of(cli, "mnist-lenet")
    assert {"confusion_matrix.png", "misclassified.png"} <= {p.name for p in (run_dir / "figures").iterdir()}
    page = (run_dir / "report.html").read_text()
    assert page.count('src="data:image/png;base64,') >= 3  # curves, confusion matrix, misclassified
    assert "confusion matrix" in page and "misclassified test images" in page
    assert "http://" not in page and "https://" not in page


def test_tensorboard_round_trip_scalars_and_hparams(cli):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    assert cli("run", "fmnist-softmax", "--quick", "--no-report")[0] == 0
    run_dir = run_dir_of(cli, "fmnist-softmax")
    ea = EventAccumulator(str(run_dir / "tb"))
    ea.Reload()
    scalars = ea.Tags()["scalars"]
    assert {"loss/train", "accuracy/train", "lr/train", "loss/test", "accuracy/test"} <= set(scalars)
    logged = [(r[0], r[4]) for r in metric_rows(run_dir) if r[2:4] == ("train", "loss")]
    assert [(e.step, pytest.approx(e.value)) for e in ea.Scalars("loss/train")] == logged
    summary = json.loads((run_dir / "summary.json").read_text())
    assert ea.Scalars("hparam/test/accuracy")[-1].value == pytest.approx(summary["test/accuracy"])
    content = ea.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = dict(start.session_start_info.hparams)
    assert hparams["optim.lr"].number_value == pytest.approx(0.1)
    assert hparams["model.name"].string_value == "softmax"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"])
    assert "hparam/test/accuracy" in {m.name.tag for m in experiment.experiment.metric_infos}


def test_same_config_and_seed_give_identical_metrics(cli):
    args = ("run", "fmnist-mlp", "--quick", "--no-report", "-o", "data.shift=2", "-o", "train.eval_steps=7")
    assert cli(*args)[0] == 0
    assert cli(*args, "--force")[0] == 0
    _, out, _ = cli("runs", "--json")
    first, second = (Path(r["dir"]) for r in json.loads(out))
    assert metric_rows(first) == metric_rows(second)
    w1 = torch.load(first / "model.pt", weights_only=True)["model"]
    w2 = torch.load(second / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(w1[k], w2[k]) for k in w1)
    # another seed: another run
    assert cli(*args, "--seed", "1")[0] == 0
    _, out, _ = cli("runs", "--json")
    assert metric_rows(Path(json.loads(out)[-1]["dir"])) != metric_rows(first)


def test_best_checkpoint_is_the_best_validation_and_test_is_measured_once_on_it(cli):
    # lab-fc: seed 004's Runner, ending with the best weights, chosen on the held-out 'val' split
    # (the last training images), evaluated every 4 steps here; test is measured once, at the end
    assert cli("run", "lab-fc", "--quick", "--no-report", "-o", "train.eval_steps=4")[0] == 0
    run_dir = run_dir_of(cli, "lab-fc")
    rows = metric_rows(run_dir)
    evals = [(r[0], r[4]) for r in rows if r[2:4] == ("val", "accuracy")]
    steps = 1500 // 64 + 1  # 2,000 quick images, 500 held out for validation
    assert [e[0] for e in evals] == [*range(4, steps, 4), steps]  # every 4 steps and the epoch end
    tests = [r for r in rows if r[2:4] == ("test", "accuracy")]
    assert len(tests) == 1  # never looked at while choosing
    best_step, best = max(evals, key=lambda e: (e[1], -e[0]))  # the first of the highest
    ck = torch.load(run_dir / "checkpoints" / "best.pt", weights_only=True)
    assert (ck["step"], ck["metric"]) == (best_step, "val/accuracy")
    assert ck["score"] == pytest.approx(best)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["val/accuracy"] == pytest.approx(best) and summary["best/step"] == best_step
    assert summary["test/accuracy"] == pytest.approx(tests[0][4])
    final = torch.load(run_dir / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(final[k], ck["model"][k]) for k in final)


def test_selecting_on_the_test_split_is_refused(cli, home):
    code, _, err = cli("run", "lab-fc", "--quick", "-o", "train.best_metric=test/accuracy")
    assert code == 2 and "train.best_metric" in err and "test split" in err
    assert not (home / "lab-fc").exists()


def test_early_stopping_stops_after_patience_evaluations_without_a_new_best(cli):
    code, _, err = cli("run", "lab-fc", "--quick", "--no-report", "-o", "optim.lr=1e-12",
                       "-o", "train.eval_steps=2", "-o", "train.early_stop_patience=2", "-o", "train.epochs=3")
    assert code == 0, err
    summary = json.loads((run_dir_of(cli, "lab-fc") / "summary.json").read_text())
    # lr ~ 0: the first evaluation (step 2) stays the best; steps 4 and 6 fail to beat it -> stop
    assert summary["train/stopped_early"] == 1.0 and summary["train/steps"] == 6
    assert summary["best/step"] == 2


def test_config_errors_name_the_field(cli):
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", "optim.nam=adam")
    assert code == 2 and "optim.nam" in err and "did you mean 'name'" in err
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", "optim.name=adamm")
    assert code == 2 and "unknown optimizer 'adamm'" in err
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", "model.options.widht=2")
    assert code == 2 and "widht" in err
    code, _, err = cli("run", "mnist-lenet", "--quick", "-o", "train.best_metric=val/accuracy")
    assert code == 2 and "no evaluation split 'val'" in err


def test_a_validation_split_can_choose_the_best_checkpoint(cli):
    code, _, err = cli("run", "fmnist-softmax", "--quick", "--no-report", "-o", "data.val_size=400",
                       "-o", "train.best_metric=val/accuracy", "-o", "train.eval_steps=8")
    assert code == 0, err
    run_dir = run_dir_of(cli, "fmnist-softmax")
    summary = json.loads((run_dir / "summary.json").read_text())
    assert {"val/accuracy", "test/accuracy", "best/val/accuracy"} <= set(summary)
    assert summary["train/steps"] == 25  # (2000 - 400) / 64 -> 25 batches
    val = [r[4] for r in metric_rows(run_dir) if r[2:4] == ("val", "accuracy")]
    assert summary["best/val/accuracy"] == pytest.approx(max(val))
