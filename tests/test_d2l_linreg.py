"""Linear regression from scratch: the hand-derived gradient against autograd; both catalog forms."""

import json
from pathlib import Path

import pytest
import torch

from practicum.config import load_experiment
from practicum.practicals.linreg import data_iter, linreg, linreg_grads, squared_loss, synthetic_data



def test_hand_gradient_equals_autograd():
    g = torch.Generator().manual_seed(0)
    X, y = synthetic_data(torch.tensor([2.0, -3.4, 0.5]), 4.2, 50, 0.1, g)
    X, y = X.double(), y.double()
    w = torch.randn(3, generator=g, dtype=torch.float64, requires_grad=True)
    b = torch.tensor(0.3, dtype=torch.float64, requires_grad=True)
    squared_loss(linreg(X, w, b), y).mean().backward()
    gw, gb = linreg_grads(X, y, w.detach(), b.detach())
    torch.testing.assert_close(gw, w.grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gb, b.grad, rtol=1e-12, atol=1e-12)


def test_data_iter_covers_every_index_once():
    idx = torch.cat(list(data_iter(64, 1000, torch.Generator().manual_seed(1))))
    assert sorted(idx.tolist()) == list(range(1000))
    assert [len(b) for b in data_iter(64, 1000, torch.Generator())][-1] == 1000 % 64


def test_synthetic_data_follows_the_model():
    X, y = synthetic_data(torch.tensor([2.0, -3.4]), 4.2, 1000, 0.0, torch.Generator().manual_seed(2))
    torch.testing.assert_close(y, X @ torch.tensor([2.0, -3.4]) + 4.2)


@pytest.mark.parametrize("entry", ["linreg-scratch", "linreg-torch-3"])
def test_catalog_quick_learns_the_true_parameters(cli, home, entry):
    code, _, err = cli("run", entry, "--quick", "--no-report")
    assert code == 0, err
    rec = json.loads(cli("runs", "--json")[1])[0]
    quick = load_experiment(entry, quick=True)
    assert rec["summary"]["params/max_abs_error"] <= quick.expect.max
    table = json.loads((Path(rec["dir"]) / "tables" / "parameters.json").read_text())
    assert [r[0] for r in table["rows"]][-1] == "b"
    assert len(table["rows"]) == len(quick.data.true_w) + 1
    for name, true, learned, err_ in table["rows"]:
        assert abs(true - learned) < 0.05


def test_bad_batch_size_is_a_usage_error(cli):
    code, _, err = cli("run", "linreg-scratch", "-o", "optim.batch_size=5000")
    assert code == 2 and "batch_size" in err
    code, _, err = cli("run", "linreg-scratch", "-o", "train.implementation=numpy")
    assert code == 2 and "'scratch'" in err


def test_scratch_is_plain_sgd_and_torch_takes_the_registry(cli):
    code, _, err = cli("run", "linreg-scratch", "--quick", "-o", "optim.name=adam")
    assert code == 2 and "plain SGD written by hand" in err and "optim.name" in err
    code, _, err = cli("run", "linreg-scratch", "--quick", "-o", "optim.momentum=0.9")
    assert code == 2 and "optim.momentum apply to implementation = 'torch' only" in err
    code, _, err = cli("run", "linreg-torch", "--quick", "--no-report", "-o", "optim.name=adam", "-o", "optim.lr=0.1")
    assert code == 0, err

