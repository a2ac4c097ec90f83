"""Your own model that raises (issue 23): its import, its constructor or its first forward pass
failing is one line naming the file, the class and the exception, exit 2 (a UsageError), and it
is refused before any run exists: no run directory, no row in the index."""

from __future__ import annotations

import json
import random
import re
import textwrap

import numpy as np
import pytest
import torch

import practicum
from practicum.models import user

GOOD = textwrap.dedent("""\
    import torch
    from torch import nn

    class Net(nn.Module):
        def __init__(self, num_classes=10, in_channels=1, image_size=28):
            super().__init__()
            self.fc = nn.Linear(in_channels * image_size * image_size, num_classes)

        def forward(self, x):
            return self.fc(x.flatten(1))
    """)
BROKEN = {  # what is wrong -> (the file, the line of the message after 'class Net: ')
    "import": (GOOD.replace("import torch\n", "import torch\nraise RuntimeError('boom')\n"),
               r"importing .*mymodel\.py failed: RuntimeError: boom \(line 2\); class Net not reached"),
    "init": (GOOD.replace("super().__init__()", "super().__init__()\n        raise RuntimeError('boom')"),
             r"mymodel\.py: class Net: __init__ raised RuntimeError: boom \(line 7\)"),
    "forward": (GOOD.replace("x.flatten(1)", "x"),  # (B, 1, 28, 28) into a Linear(784, 10)
                r"mymodel\.py: class Net: forward of a dummy batch \(2, 1, 28, 28\) raised RuntimeError: "
                r"mat1 and mat2 shapes cannot be multiplied .* \(line 10\)"),
}
EXPERIMENT = textwrap.dedent("""\
    name = "tiny"
    task = "classify"
    [data]
    train_limit = 200
    test_limit = 100
    [model]
    name = "mymodel.py:Net"
    [train]
    epochs = 1
    tensorboard = false
    """)


@pytest.fixture
def experiment(tmp_path):
    (tmp_path / "tiny.toml").write_text(EXPERIMENT)
    return tmp_path / "tiny.toml"


def no_run_left(cli, home) -> bool:
    return not (home / "tiny").exists() and json.loads(cli("runs", "--json")[1]) == []


@pytest.mark.parametrize("case", BROKEN)
def test_a_model_that_raises_is_one_usage_line_and_no_run(cli, home, experiment, case):
    source, message = BROKEN[case]
    (experiment.parent / "mymodel.py").write_text(source)
    code, out, err = cli("run", experiment, "--no-report")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "starting run" not in out + err, err
    assert err.startswith("error: ") and re.search(message, err), err
    assert no_run_left(cli, home)


@pytest.mark.parametrize("case", BROKEN)
def test_the_python_api_raises_usage_error(cli, home, experiment, case):
    source, message = BROKEN[case]
    (experiment.parent / "mymodel.py").write_text(source)
    with pytest.raises(practicum.UsageError, match=message):
        practicum.run(experiment, report=False)
    assert no_run_left(cli, home)


def test_a_class_from_python_that_raises_is_refused_too(cli, home, experiment):
    class Net(torch.nn.Module):
        def __init__(self, num_classes=10, in_channels=1, image_size=28):
            super().__init__()
            self.fc = torch.nn.Linear(7, num_classes)

        def forward(self, x):
            return self.fc(x)

    with pytest.raises(practicum.UsageError, match=r"Net \(from Python\): class Net: forward of a dummy batch "
                                                   r"\(2, 1, 28, 28\) raised RuntimeError"):
        practicum.run(experiment, model=Net, report=False)
    assert no_run_left(cli, home)


def test_the_check_draws_no_random_numbers(tmp_path):
    (tmp_path / "mymodel.py").write_text(GOOD.replace("x.flatten(1)", "x.flatten(1) + torch.rand(1)"))
    model = user.resolve(f"{tmp_path / 'mymodel.py'}:Net", [])
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    model.check_build(dict(num_classes=10, in_channels=1, image_size=28), inputs=(torch.zeros(2, 1, 28, 28),))
    got = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(got[0], expected[0]) and np.array_equal(got[1], expected[1]) and got[2] == expected[2]


LM = textwrap.dedent("""\
    import torch
    from torch import nn

    class TinyLM(nn.Module):
        def __init__(self, vocab_size, hidden, layers=1, dropout=0.0):
            super().__init__()
            self.embed, self.out = nn.Embedding(vocab_size, hidden), nn.Linear(hidden, vocab_size)

        def begin_state(self, batch_size):
            return None

        def forward(self, X, state=None):
            return self.out(self.embed(X)), state
    """)
TEXT = textwrap.dedent("""\
    import torch
    from torch import nn

    class Bag(nn.Module):
        def __init__(self, vocab_size, embed, pad):
            super().__init__()
            self.embedding, self.out = nn.Embedding(vocab_size, embed, padding_idx=pad), nn.Linear(embed, 2)

        def forward(self, ids, lengths):
            return self.out(self.embedding(ids).mean(1))
    """)
TEXT_MODELS = {  # practical: (the file, its run's overrides, the class)
    "lm-timemachine": ("my_lm.py", LM, ['model.names=["my_lm.py:TinyLM"]'], "TinyLM"),
    "sentiment-rt-polarity": ("my_text.py", TEXT, ['train.variants=["custom-random"]', 'custom.name="my_text.py:Bag"'],
                              "Bag"),
}


@pytest.mark.parametrize("entry", TEXT_MODELS)
@pytest.mark.parametrize("stage", ["init", "forward"])
def test_a_text_model_that_raises_is_one_usage_line_and_no_run(cli, home, tmp_path, monkeypatch, entry, stage):
    file, source, overrides, cls = TEXT_MODELS[entry]
    if stage == "init":
        source = source.replace("super().__init__()", "super().__init__()\n        raise RuntimeError('boom')")
    else:
        source = source.replace("        return self.out(", "        raise RuntimeError('boom')\n        return self.out(")
    (tmp_path / file).write_text(source)
    monkeypatch.chdir(tmp_path)
    code, out, err = cli("run", entry, "--quick", "--no-report", *(x for o in overrides for x in ("-o", o)))
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    where = "__init__" if stage == "init" else "forward of a dummy batch"
    assert re.search(rf"{file}: class {cls}: {where}.* raised RuntimeError: boom", err), err
    assert not (home / entry).exists() and json.loads(cli("runs", "--json")[1]) == []
