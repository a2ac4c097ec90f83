"""Practicum from Python (issue 16): the API behaves as the CLI, your own model joins the
identity, every bad-model case is one line, ``new`` and ``export`` write what they promise, and
the quickstart notebook runs in a real Jupyter kernel."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pandas as pd
import pytest

import practicum
from practicum.config import load_experiment

NET = textwrap.dedent("""\
    import torch
    from torch import nn

    class TinyNet(nn.Module):
        def __init__(self, num_classes=10, in_channels=1, image_size=28, width=4):
            super().__init__()
            self.conv = nn.Conv2d(in_channels, width, 3, padding=1)
            self.fc = nn.Linear(width * (image_size // 2) ** 2, num_classes)

        def forward(self, x):
            return self.fc(torch.relu(nn.functional.max_pool2d(self.conv(x), 2)).flatten(1))
    """)
EXPERIMENT = textwrap.dedent("""\
    name = "tiny"
    task = "classify"
    [data]
    train_limit = 600
    test_limit = 200
    [model]
    name = "nets/my_nets.py:TinyNet"
    options = { width = 3 }
    [train]
    epochs = 1
    tensorboard = false
    """)


@pytest.fixture
def user_files(tmp_path):
    (tmp_path / "nets").mkdir()
    (tmp_path / "nets" / "my_nets.py").write_text(NET)
    (tmp_path / "tiny.toml").write_text(EXPERIMENT)
    return tmp_path


def test_run_returns_a_run_with_metrics_as_a_dataframe_and_reuses_it(home):
    run = practicum.run("fmnist-softmax", overrides={"optim.lr": 0.2}, quick=True)
    assert run.status == "finished" and run.dir.is_dir() and run.id in repr(run)
    assert run.config["optim"]["lr"] == 0.2 and 0.1 < run.summary["test/accuracy"] <= 1
    m = run.metrics
    assert list(m.columns) == ["step", "epoch", "split", "name", "value", "time"]
    test_acc = m[(m.split == "test") & (m.name == "accuracy")]["value"].iloc[-1]
    assert test_acc == pytest.approx(run.summary["test/accuracy"])
    assert {"curves", "confusion_matrix"} <= set(run.figures)
    assert "<iframe" in run._repr_html_() and "Final metrics" in run.report().html.read_text()
    again = practicum.run("fmnist-softmax", overrides={"optim.lr": 0.2}, quick=True)
    assert again.id == run.id  # a finished config is reused by its identity, as the CLI does
    assert practicum.load(run.id[:17]).id == run.id
    index = practicum.runs()
    assert isinstance(index, pd.DataFrame) and index["id"].tolist() == [run.id]
    assert index.loc[0, "test/accuracy"] == pytest.approx(run.summary["test/accuracy"])
    cfg = practicum.configure("fmnist-softmax", quick=True, overrides={"optim.lr": 0.2})
    assert practicum.run(cfg).id == run.id


def test_errors_are_typed_and_carry_the_cli_message(home):
    with pytest.raises(practicum.UsageError, match=r"key 'optim.name'.*did you mean 'adam'"):
        practicum.run("mnist-lenet", overrides={"optim.name": "adamm"})
    with pytest.raises(practicum.Diverged, match="diverged at step"):
        practicum.run("fmnist-mlp", overrides={"optim.lr": 1e6}, quick=True)
    assert practicum.runs()["status"].tolist() == ["failed"]


def test_sweep_results_have_mean_std_and_n_per_point(home):
    study = practicum.sweep("fmnist-softmax", grid={"optim.lr": [0.1, 0.3]}, seeds=2, quick=True)
    res = study.results
    assert list(res.index) == [0.1, 0.3] and res.index.name == "optim.lr"
    acc = res["test/accuracy"]
    assert list(acc.columns) == ["mean", "std", "n"] and acc["n"].tolist() == [2, 2]
    trials = study.trials
    for lr in (0.1, 0.3):
        vals = trials[trials["optim.lr"] == lr]["test/accuracy"]
        assert acc.loc[lr, "mean"] == pytest.approx(vals.mean()) and acc.loc[lr, "std"] == pytest.approx(vals.std())
    assert practicum.sweep("fmnist-softmax", grid={"optim.lr": [0.1, 0.3]}, seeds=2, quick=True).counts["ran"] == 0


def test_your_own_model_file_trains_and_an_edit_makes_a_new_run(cli, home, user_files):
    code, out, err = cli("run", user_files / "tiny.toml", "--no-report")
    assert code == 0, err
    cfg = load_experiment(str(user_files / "tiny.toml"))
    assert cfg.model.name == f"{(user_files / 'nets' / 'my_nets.py').resolve()}:TinyNet"
    before = cfg.config_hash()
    assert cli("run", user_files / "tiny.toml", "--no-report")[1].count("already finished") == 1
    path = user_files / "nets" / "my_nets.py"
    path.write_text(path.read_text().replace("torch.relu(", "torch.tanh("))
    assert load_experiment(str(user_files / "tiny.toml")).config_hash() != before
    code, out, err = cli("run", user_files / "tiny.toml", "--no-report")
    assert code == 0 and "already finished" not in out
    assert [r["status"] for r in json.loads(cli("runs", "--json")[1])] == ["finished", "finished"]


def test_a_module_path_and_a_class_from_python(home, user_files, monkeypatch):
    monkeypatch.syspath_prepend(str(user_files / "nets"))
    cfg = load_experiment(str(user_files / "tiny.toml"), ["model.name=my_nets:TinyNet"])
    assert cfg.model.resolved()["class"].endswith("TinyNet")
    import my_nets

    run = practicum.run(user_files / "tiny.toml", model=my_nets.TinyNet)
    assert run.status == "finished" and run.config["model"]["name"].startswith("python:")
    instance = practicum.run(user_files / "tiny.toml", model=my_nets.TinyNet(width=2))
    assert instance.id != run.id  # an instance carries its own initial weights


@pytest.mark.parametrize("override, message", [
    ("model.name=nets/nope.py:TinyNet", r"key 'model.name': model file 'nets/nope.py' not found"),
    ("model.name=nets/my_nets.py:TinyNett", r"key 'model.name': .*my_nets.py has no 'TinyNett' \(did you mean 'TinyNet'\?\)"),
    ("model.name=nets/broken.py:TinyNet", r"key 'model.name': importing .*broken.py failed: ModuleNotFoundError"),
    ("model.options={ depth = 3 }", r"key 'model': model.options: .*my_nets.py: TinyNet\(.*\) rejects"),
])
def test_each_bad_model_is_one_line_naming_the_file_and_the_key(cli, home, user_files, override, message):
    (user_files / "nets" / "broken.py").write_text("import not_a_module\n")
    code, _, err = cli("run", user_files / "tiny.toml", "-o", override)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert "tiny.toml" in err
    import re

    assert re.search(message, err), err
    assert not (home / "tiny").exists()


def test_new_writes_a_commented_file_that_loads_back_to_the_entry(cli, home, tmp_path):
    path = tmp_path / "mine.toml"
    code, out, err = cli("new", "mine", "--from", "mnist-vgg11", "--out", path)
    assert code == 0, err
    text = path.read_text()
    assert "# max global gradient norm" in text and "[optim.schedule]" in text and "[quick]" in text
    entry, mine = load_experiment("mnist-vgg11"), load_experiment(str(path))
    assert mine.name == "mine"
    assert mine.model_copy(update={"name": entry.name}).config_hash() == entry.config_hash()
    assert load_experiment(str(path), quick=True).train.epochs == load_experiment("mnist-vgg11", quick=True).train.epochs
    assert cli("new", "mine", "--from", "mnist-vgg11", "--out", path)[0] == 2  # never overwrites silently


@pytest.mark.parametrize("fmt", ["csv", "parquet", "json"])
def test_export_writes_metrics_summary_and_study_results(cli, home, tmp_path, fmt):
    study = practicum.sweep("fmnist-softmax", grid={"optim.lr": [0.1, 0.3]}, seeds=2, quick=True, report=False)
    run = study.trials["run"].iloc[0]
    read = {"csv": pd.read_csv, "parquet": pd.read_parquet, "json": pd.read_json}[fmt]
    code, out, _ = cli("export", run, "--format", fmt, "--out", tmp_path)
    assert code == 0
    metrics = read(tmp_path / f"{run}.metrics.{fmt}")
    assert list(metrics.columns) == ["step", "epoch", "split", "name", "value", "time"]
    assert len(metrics) == len(practicum.load(run).metrics)
    code, out, _ = cli("export", study.name, "--format", fmt, "--out", tmp_path)
    assert code == 0 and len(out.split()) == 3
    results = read(tmp_path / f"{study.name}.results.{fmt}")
    assert {"optim.lr", "test/accuracy/mean", "test/accuracy/std", "test/accuracy/n"} <= set(results.columns)
    assert results["test/accuracy/n"].tolist() == [2, 2]
    assert len(read(tmp_path / f"{study.name}.metrics.{fmt}")) == sum(
        len(practicum.load(r).metrics) for r in study.trials["run"])


def test_the_quickstart_notebook_runs_in_a_jupyter_kernel(home):
    import nbformat
    from nbclient import NotebookClient

    path = Path(__file__).resolve().parents[1] / "examples" / "quickstart.ipynb"
    nb = nbformat.read(path, as_version=4)
    home.mkdir(parents=True, exist_ok=True)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(home)}}).execute()
    outputs = {i: c.get("outputs", []) for i, c in enumerate(nb.cells) if c.cell_type == "code"}
    text = "\n".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for outs in outputs.values()
                     for o in outs)
    assert "test accuracy:" in text and "finished" in text
    assert "step" in text and "split" in text and "value" in text  # the metrics DataFrame
    assert "StudentCNN" in text and "LeNet-5" in text  # the comparison
    html = [o["data"]["text/html"] for outs in outputs.values() for o in outs if "text/html" in o.get("data", {})]
    assert any("<iframe" in h and "Final metrics" in h for h in html)  # the report, inline
    assert not any(o.get("output_type") == "error" for outs in outputs.values() for o in outs)
    assert sorted(practicum.runs()["experiment"]) == ["mnist-lenet", "mnist-lenet"]


LM = textwrap.dedent("""\
    import torch
    from torch import nn

    class TinyGRU(nn.Module):
        def __init__(self, vocab_size, hidden, layers=1, dropout=0.0):
            super().__init__()
            self.embed = nn.Embedding(vocab_size, 8)
            self.rnn = nn.GRU(8, hidden, layers, batch_first=True)
            self.out = nn.Linear(hidden, vocab_size)
            self.layers, self.hidden = layers, hidden

        def begin_state(self, batch_size):
            return torch.zeros(self.layers, batch_size, self.hidden, device=self.out.weight.device)

        def forward(self, X, state=None):
            Y, state = self.rnn(self.embed(X), state)
            return self.out(Y), state
    """)
TEXT = textwrap.dedent("""\
    import torch
    from torch import nn

    class MeanBag(nn.Module):
        def __init__(self, vocab_size, embed, pad):
            super().__init__()
            self.embedding = nn.Embedding(vocab_size, embed, padding_idx=pad)
            self.out = nn.Linear(embed, 2)

        def forward(self, ids, lengths):
            mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).float()[..., None]
            return self.out((self.embedding(ids) * mask).sum(1) / lengths[:, None].float())
    """)


def test_your_own_language_model_and_text_classifier(cli, home, tmp_path, monkeypatch):
    (tmp_path / "my_lm.py").write_text(LM)
    (tmp_path / "my_text.py").write_text(TEXT)
    monkeypatch.chdir(tmp_path)
    code, _, err = cli("run", "lm-timemachine", "--quick", "--no-report", "-o", 'model.names=["my_lm.py:TinyGRU", "gru"]')
    assert code == 0, err
    lm = practicum.runs(experiment="lm-timemachine").iloc[-1]
    assert lm["val/perplexity_TinyGRU"] > 1 and lm["val/perplexity_gru"] > 1
    code, _, err = cli("run", "sentiment-rt-polarity", "--quick", "--no-report",
                       "-o", 'train.variants=["custom-random", "custom-w2v"]', "-o", 'custom.name="my_text.py:MeanBag"',
                       "-o", "embed.w2v_run=latest:none")  # no word2vec run here: the w2v variant must say so
    assert code == 1 and "no finished run of 'none'" in err
    code, _, err = cli("run", "sentiment-rt-polarity", "--quick", "--no-report",
                       "-o", 'train.variants=["custom-random"]', "-o", 'custom.name="my_text.py:MeanBag"')
    assert code == 0, err
    assert 0 <= practicum.runs(experiment="sentiment-rt-polarity").iloc[-1]["test/accuracy_custom-random"] <= 1
    before = load_experiment("lm-timemachine", ['model.names=["my_lm.py:TinyGRU"]']).config_hash()
    (tmp_path / "my_lm.py").write_text(LM.replace("nn.Embedding(vocab_size, 8)", "nn.Embedding(vocab_size, 12)"))
    assert load_experiment("lm-timemachine", ['model.names=["my_lm.py:TinyGRU"]']).config_hash() != before
    code, _, err = cli("run", "lm-timemachine", "--quick", "-o", 'model.names=["my_lm.py:Nope"]')
    assert code == 2 and "key 'model.names'" in err and "has no 'Nope'" in err
    code, _, err = cli("run", "sentiment-rt-polarity", "--quick", "-o", 'train.variants=["custom-random"]',
                       "-o", 'custom.name="my_text.py:MeanBag"', "-o", "custom.options={ width = 3 }")
    assert code == 2 and "custom.options" in err and "rejects" in err
