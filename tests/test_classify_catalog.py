"""Every catalog entry of the ``classify`` task: it states its seed and band, its --quick form runs
in seconds and beats chance; marked slow: the short entries trained to their bars."""

from __future__ import annotations

import json

import pytest

from practicum.config import catalog, load_experiment, read_toml

CLASSIFY = sorted(name for name, path in catalog().items() if read_toml(path).get("task") == "classify")
CHANCE = 0.1  # ten classes in MNIST and Fashion-MNIST



def test_the_catalog_has_every_entry_of_the_issue():
    assert set(CLASSIFY) >= {
        "mnist-lenet", "mnist-vgg11", "mnist-resnet18", "mnist-vit", "mnist-vit-noscale", "mnist-cnn2",
        "mnist-cnn2-sigmoid", "mnist-cnn2-deep", "lab-fc", "lab-lenet", "lab-resnet18", "fmnist-softmax",
        "fmnist-mlp", "fmnist-mlp2", "mnist-fast"}


@pytest.mark.parametrize("name", CLASSIFY)
def test_entry_states_its_seed_and_band_and_validates(name):
    cfg = load_experiment(name)
    assert cfg.seed_report in {"000", "002", "003", "004"}
    assert cfg.expect.metric == "test/accuracy" and cfg.expect.min and cfg.expect.quick_min
    assert cfg.expect.quick_min > CHANCE
    load_experiment(name, quick=True)  # the quick overrides are valid too


@pytest.mark.parametrize("name", CLASSIFY)
def test_quick_form_runs_and_beats_chance(cli, name):
    source = load_experiment(name).model.init_from
    if source:  # a fine-tuning entry: the run it starts from comes first (its quick form)
        assert cli("run", source, "--quick", "--no-report")[0] == 0
    code, out, err = cli("run", name, "--quick", "--no-report")
    assert code == 0, err
    (record,) = [r for r in json.loads(cli("runs", "--json")[1]) if r["experiment"] == name]
    accuracy = record["summary"]["test/accuracy"]
    assert accuracy >= load_experiment(name).expect.quick_min > CHANCE, record["summary"]


# Entries that reach their bar in minutes on a 2-core CPU, and every entry that records a measured
# result next to its bar (the seed rows: some take an hour; `pytest -m slow -k <entry>` runs one).
SHORT = ["mnist-fast", "fmnist-softmax", "fmnist-mlp", "fmnist-mlp2", "lab-fc", "lab-lenet", "mnist-lenet"]
MEASURED = sorted({*SHORT, *(n for n in CLASSIFY if load_experiment(n).expect.measured is not None)})


@pytest.mark.slow
@pytest.mark.timeout(3 * 3600)  # a full seed-row run: up to an hour or two
@pytest.mark.parametrize("name", MEASURED)
def test_entry_reaches_its_bar(cli, name):
    code, out, err = cli("run", name, "--no-report")
    assert code == 0, err
    (record,) = json.loads(cli("runs", "--json")[1])
    expect = load_experiment(name).expect
    value = record["summary"][expect.metric]
    assert value >= expect.min and (expect.max is None or value <= expect.max), record["summary"]
