"""``practicum compare`` and ``practicum.compare`` (issue 27): the config keys that differ (and only
those, unless --all-keys), the final metrics with their deltas, the curves, the unified diff of
config.toml, whether your own model's source differs; figures as PNG and SVG.
Runs are written through the store API (tests/helpers.py), without training."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from helpers import finished_run

import practicum
from practicum.config import load_experiment
from practicum.store import Index


@pytest.fixture
def two_lrs(home):
    """Two fmnist-softmax runs that differ in optim.lr only."""
    index = Index()
    a = finished_run(index, load_experiment("fmnist-softmax", ["optim.lr=0.05"]), {"test/accuracy": 0.80, "test/loss": 0.6},
                     {"train/loss": [1.0, 0.7], "test/accuracy": [0.7, 0.80]})
    b = finished_run(index, load_experiment("fmnist-softmax", ["optim.lr=0.2"]), {"test/accuracy": 0.83, "test/loss": 0.5},
                     {"train/loss": [0.9, 0.6], "test/accuracy": [0.75, 0.83]})
    return a, b


def test_two_runs_that_differ_in_the_learning_rate_show_exactly_that_key(cli, two_lrs):
    a, b = two_lrs
    c = practicum.compare(a.id, b.id)
    assert list(c.config.index) == ["optim.lr"] and list(c.config.loc["optim.lr"]) == [0.05, 0.2]
    assert c.metrics.loc["test/accuracy", f"Δ {b.id}"] == pytest.approx(0.03)
    assert c.metrics.loc["test/loss", b.id] == 0.5 and c.source is None  # presets: no source line
    assert set(c.curves["run"]) == {a.id, b.id} and len(c.curves) == 8
    assert "-lr = 0.05\n+lr = 0.2\n" in c.diff and c.diff.count("\n-") == 1 and c.diff.count("\n+") == 2  # +++ line
    assert len(practicum.compare(a.id, b.id, all_keys=True).config) > 20  # every key, the differing one first

    code, out, _ = cli("compare", a.id, b.id)
    assert code == 0
    table = out.split("\n\n")[0].splitlines()
    assert table[1].split() == ["key", a.id, b.id] and [r.split() for r in table[2:]] == [["optim.lr", "0.0500", "0.2000"]]
    assert re.search(r"^test/accuracy +0\.8000 +0\.8300 \(\+0\.0300\)$", out, re.M), out
    report = Path(out.strip().splitlines()[-1].split("report: ")[1])
    text = report.read_text()
    assert "| optim.lr | 0.0500 | 0.2000 |" in text and "```diff" in text
    figures = report.parent / "figures"  # every figure the report code saves: PNG (as before) and SVG
    assert {"compare_loss.png", "compare_loss.svg", "compare_accuracy.png", "compare_accuracy.svg"} <= \
        {p.name for p in figures.iterdir()}
    assert (figures / "compare_loss.svg").read_text().lstrip().startswith("<?xml")

    code, out, _ = cli("compare", a.id, b.id, "--all-keys")
    assert code == 0 and "optim.name" in out.split("\n\n")[0] and "config: every key" in out


def test_your_models_source_shows_whether_it_differs(home, tmp_path):
    net = tmp_path / "my_net.py"
    body = ("import torch\nfrom torch import nn\n\nclass Net(nn.Module):\n"
            "    def __init__(self, num_classes=10, in_channels=1, image_size=28):\n"
            "        super().__init__()\n        self.fc = nn.Linear(in_channels * image_size ** 2, num_classes)\n\n"
            "    def forward(self, x):\n        return self.fc(x.flatten(1)){}\n")
    index = Index()
    records = []
    for edit in ("", " * 1.0"):
        net.write_text(body.format(edit))
        cfg = load_experiment("fmnist-softmax", [f'model.name="{net}:Net"'])
        records.append(finished_run(index, cfg, {"test/accuracy": 0.8}))
    c = practicum.compare(*(r.id for r in records))
    assert c.config.empty  # the same config.toml ...
    assert c.source.startswith("model source: differs")  # ... but not the same model
    assert c.diff == ""

