"""Fine-tuning: ``model.init_from`` loads another run's weights (by id, directory or experiment
name), replaces the head when asked or when the class counts differ, freezes the body, and
gives the head its own learning rate; missing runs and checkpoints are clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from practicum.config import load_experiment
from practicum.errors import UsageError
from practicum.models import build_model
from practicum.practicals.classify import Model, head_name, init_from_run
from practicum.store import Index

SOURCE = ["run", "fmnist-lenet-bn", "--quick", "--no-report", "-o", "data.train_limit=500", "-o", "data.val_size=100",
          "-o", "train.best_metric=val/accuracy"]



@pytest.fixture
def source(cli, home):
    """A finished quick run of fmnist-lenet-bn: (its record, its final weights)."""
    code, _, err = cli(*SOURCE)
    assert code == 0, err
    (record,) = json.loads(cli("runs", "--json")[1])
    weights = torch.load(Path(record["dir"]) / "model.pt", weights_only=True)["model"]
    return record, weights


@pytest.mark.parametrize("ref", ["id", "prefix", "dir", "experiment"])
def test_init_from_reproduces_the_runs_weights(source, home, ref):
    record, weights = source
    value = {"id": record["id"], "prefix": record["id"][:17], "dir": record["dir"],
             "experiment": "fmnist-lenet-bn"}[ref]
    torch.manual_seed(123)
    model = build_model("lenet-bn")
    init_from_run(model, Model(name="lenet-bn", init_from=value), Index(home))
    for k, v in model.state_dict().items():
        assert torch.equal(v, weights[k]), k


def test_best_checkpoint_and_missing_checkpoint(source, home):
    record, _ = source
    model = build_model("lenet-bn")
    best = torch.load(Path(record["dir"]) / "checkpoints" / "best.pt", weights_only=True)["model"]
    init_from_run(model, Model(name="lenet-bn", init_from=record["id"], init_weights="best"), Index(home))
    assert all(torch.equal(v, best[k]) for k, v in model.state_dict().items())
    (Path(record["dir"]) / "model.pt").unlink()
    with pytest.raises(UsageError, match=r"model.init_from = .*has no model.pt"):
        init_from_run(model, Model(name="lenet-bn", init_from=record["id"]), Index(home))


def test_head_is_replaced_when_class_counts_differ(source, home):
    record, weights = source
    torch.manual_seed(0)
    model = build_model("lenet-bn", num_classes=5)
    fresh_head = model.fc2.weight.clone()
    init_from_run(model, Model(name="lenet-bn", init_from=record["id"]), Index(home))
    assert torch.equal(model.conv1.weight, weights["conv1.weight"])  # the body is the run's
    assert torch.equal(model.fc2.weight, fresh_head)  # the head keeps its fresh init


def test_new_head_keeps_the_fresh_head_even_when_shapes_fit(source, home):
    record, weights = source
    torch.manual_seed(0)
    model = build_model("lenet-bn")
    fresh_head = model.fc2.weight.clone()
    init_from_run(model, Model(name="lenet-bn", init_from=record["id"], new_head=True), Index(home))
    assert torch.equal(model.fc1.weight, weights["fc1.weight"])
    assert torch.equal(model.fc2.weight, fresh_head)


def test_a_different_body_is_an_error(source, home):
    record, _ = source
    with pytest.raises(UsageError, match=r"model.init_from = .*do not fit model 'lenet-d2l'"):
        init_from_run(build_model("lenet-d2l"), Model(name="lenet-d2l", init_from=record["id"]), Index(home))


def test_missing_run_says_which_command_to_run_first(home):
    with pytest.raises(UsageError, match=r"model.init_from = 'fmnist-resnet18'.*practicum run fmnist-resnet18' first"):
        init_from_run(build_model("resnet18-slim"), Model(name="resnet18-slim", init_from="fmnist-resnet18"),
                      Index(home))
    with pytest.raises(UsageError, match=r"model.init_from = 'no-such-run'"):
        init_from_run(build_model("lenet-bn"), Model(name="lenet-bn", init_from="no-such-run"), Index(home))


def test_missing_source_fails_the_finetune_entry_clearly(cli):
    code, _, err = cli("run", "finetune-full", "--quick", "--no-report", "--no-deps")
    assert code != 0 and "practicum run fmnist-resnet18' first" in err


@pytest.mark.parametrize("name, module", [("lenet-bn", "fc2"), ("alexnet-slim", "classifier.7"),
                                          ("nin-slim", "features.7.4"), ("googlenet-slim", "fc"),
                                          ("densenet-slim", "fc"), ("resnet18-slim", "fc")])
def test_head_is_the_last_layer(name, module):
    assert head_name(build_model(name)) == module


def finetune(cli, entry: str, source_id: str) -> tuple[dict, dict]:
    """Run a finetune entry's quick form from the source run (a LeNet, for speed) through the CLI:
    its run record and its final weights."""
    code, _, err = cli("run", entry, "--quick", "--no-report", "-o", 'model.name="lenet-bn"',
                       "-o", f'model.init_from="{source_id}"')
    assert code == 0, err
    runs = {r["experiment"]: r for r in json.loads(cli("runs", "--json")[1])}
    tuned = runs[entry]
    return tuned, torch.load(Path(tuned["dir"]) / "model.pt", weights_only=True)["model"]


def test_frozen_finetune_changes_only_the_head(source, cli):
    """The finetune-frozen entry: the body's parameters leave the run exactly as they came, the
    head trains."""
    record, weights = source
    tuned, after = finetune(cli, "finetune-frozen", record["id"])
    model = build_model("lenet-bn")
    for name, _ in model.named_parameters():
        same = torch.equal(after[name], weights[name])
        assert same != name.startswith("fc2."), name
    assert tuned["summary"]["model/trainable_parameters"] == 84 * 10 + 10
    assert tuned["summary"]["test/accuracy"] >= load_experiment("finetune-frozen").expect.quick_min


def test_full_finetune_with_a_faster_head(source, cli):
    record, weights = source
    tuned, after = finetune(cli, "finetune-full", record["id"])
    assert not torch.equal(after["conv1.weight"], weights["conv1.weight"])  # the body trains too
    assert tuned["summary"]["test/accuracy"] >= load_experiment("finetune-full").expect.quick_min
    cfg = load_experiment("finetune-full")
    assert cfg.optim.head_lr_mult == 10 and cfg.model.new_head  # D2L: the new head at 10x the rate
