"""The D2L CNN zoo on Fashion-MNIST and the from-scratch optimizers in the fit loop.

The generic checks live elsewhere and cover the new pieces automatically: every preset
(alexnet, nin, googlenet, densenet and their -slim CPU forms, lenet-bn, resnet18-d2l) gets
test_models.py's shape/backward/save-load/overfit tests, and every fmnist-<model> entry gets
test_classify_catalog.py's --quick run against its band. Here: what is specific to this issue.
"""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from practicum.config import load_experiment
from practicum.errors import UsageError
from practicum.models import MODELS, build_model
from practicum.sweeps import plan_study
from practicum.train.optim import OPTIMIZERS, build_optimizer

ZOO = {  # entry -> (CPU preset it trains, D2L's preset and input size)
    "fmnist-alexnet": ("alexnet-slim", "alexnet", 224),
    "fmnist-nin": ("nin-slim", "nin", 224),
    "fmnist-googlenet": ("googlenet-slim", "googlenet", 96),
    "fmnist-lenet-bn": ("lenet-bn", "lenet-bn", 28),
    "fmnist-resnet18": ("resnet18-slim", "resnet18-d2l", 96),
    "fmnist-densenet": ("densenet-slim", "densenet", 96),
}



@pytest.mark.parametrize("name", sorted(ZOO))
def test_zoo_entry_states_d2ls_figure_and_its_presets(name):
    cfg = load_experiment(name)
    cpu, d2l, size = ZOO[name]
    assert cfg.task == "classify" and cfg.data.name == "fashion-mnist" and cfg.model.name == cpu
    assert "D2L" in cfg.description and f"{cfg.expect.min:.3f}" in cfg.description  # the bar, stated
    assert 0.85 <= cfg.expect.min <= 0.93  # D2L's Fashion-MNIST figures for these nets
    assert MODELS[d2l].image_size == size and MODELS[cpu].image_size == 28


@pytest.mark.parametrize("name, size", [("alexnet", 224), ("nin", 224), ("googlenet", 96), ("densenet", 96),
                                        ("resnet18-d2l", 96)])
def test_d2l_presets_run_at_d2ls_input_size(name, size):
    model = build_model(name).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 1, size, size)).shape == (1, 10)


def test_d2l_layer_shapes():
    x = torch.zeros(1, 1, 224, 224)
    assert build_model("alexnet").features(x).shape == (1, 256, 5, 5)  # D2L: 6400 features into fc
    nin = build_model("nin")
    assert nin.features(x).shape == (1, 10, 5, 5)  # one map per class, then the global pool
    g = build_model("googlenet")
    y = g.b2(g.b1(torch.zeros(1, 1, 96, 96)))
    assert y.shape == (1, 192, 12, 12)
    assert g.b4(g.b3(y)).shape == (1, 832, 3, 3)
    d = build_model("densenet")
    assert d.stem(torch.zeros(1, 1, 96, 96)).shape == (1, 64, 24, 24) and d.fc.in_features == 248


def test_nin_slim_class_maps_cannot_die():
    """D2L's NiN ends in a ReLU, under which a class map can die (that class never predicted
    again); the CPU preset keeps 4x4 class maps (padded pools) without that ReLU."""
    slim = build_model("nin-slim").eval()
    assert slim.features(torch.zeros(1, 1, 28, 28)).shape == (1, 10, 4, 4)
    assert isinstance(slim.features[-1][-1], torch.nn.Identity)
    with torch.no_grad():
        assert (slim(torch.randn(8, 1, 28, 28)) < 0).any()  # logits free to go negative
    assert isinstance(build_model("nin").features[-1][-1], torch.nn.ReLU)  # D2L's net unchanged


def test_lenet_bn_normalises_before_every_activation():
    model = build_model("lenet-bn")
    assert [type(m).__name__ for m in (model.bn1, model.bn2, model.bn3, model.bn4)] == \
        ["BatchNorm2d", "BatchNorm2d", "BatchNorm2d", "BatchNorm1d"]
    assert not any("bn" in k for k in build_model("lenet-d2l").state_dict())  # plain presets unchanged


def test_cnn_zoo_study_plans_every_cpu_preset():
    p = plan_study("study-fmnist-cnn-zoo", quick=True)
    presets = sorted(cpu for cpu, _, _ in ZOO.values())
    assert sorted(t.point["model.name"] for t in p.trials) == sorted(presets * 2)  # 2 seeds: mean +- std
    assert "test/accuracy" in p.metrics and "train/seconds_per_epoch" in p.metrics
    assert "model/parameters" in p.metrics


# ---------------------------------------------------------------- scratch optimizers in the loop


SCRATCH = [n.removeprefix("scratch-") for n in OPTIMIZERS.names() if n.startswith("scratch-")]


@pytest.mark.parametrize("name", SCRATCH)
def test_scratch_optimizer_from_the_registry_matches_torch(name):
    """``scratch-<name>`` builds the hand-written class, and a few steps on a real net equal the
    torch.optim twin (same name without the prefix; momentum is torch's SGD with momentum)."""
    hyper = dict(lr=0.01, momentum=0.9 if name == "momentum" else 0.0)
    torch_name = {"momentum": "sgd"}.get(name, name)
    torch.manual_seed(0)
    a = build_model("lenet-d2l")
    b = build_model("lenet-d2l")
    b.load_state_dict(a.state_dict())
    opt_a = build_optimizer("scratch-" + name, a.parameters(), **hyper)
    opt_b = build_optimizer(torch_name, b.parameters(), **hyper)
    assert type(opt_a).__module__ == "practicum.train.optim_scratch"
    x, y = torch.randn(8, 1, 28, 28), torch.arange(8)
    for _ in range(5):
        for model, opt in ((a, opt_a), (b, opt_b)):
            opt.zero_grad()
            F.cross_entropy(model(x), y).backward()
            opt.step()
    for (k, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pa, pb, rtol=1e-4, atol=1e-6, msg=k)


def test_scratch_optimizer_options_are_checked():
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises(UsageError, match="no weight decay"):
        build_optimizer("scratch-adam", params, 0.1, weight_decay=1e-4)
    with pytest.raises(UsageError, match="needs optim.momentum"):
        build_optimizer("scratch-momentum", params, 0.1)
    with pytest.raises(UsageError, match="did you mean 'scratch-adam'"):
        build_optimizer("scratch-adm", params, 0.1)


def test_scratch_optimizer_trains_through_the_cli(cli):
    code, _, err = cli("run", "fmnist-lenet-bn", "--quick", "--no-report", "-o", "optim.name=scratch-momentum",
                       "-o", "optim.lr=0.05", "-o", "optim.momentum=0.9")
    assert code == 0, err
    (record,) = json.loads(cli("runs", "--json")[1])
    assert record["summary"]["test/accuracy"] > 0.3  # chance is 0.1


def test_optimizers_study_quick(cli):
    code, _, err = cli("sweep", "study-fmnist-optimizers", "--quick", "--seeds", "1")
    assert code == 0, err
    runs = json.loads(cli("runs", "--json")[1])
    assert len(runs) == 6 and all(r["status"] == "finished" for r in runs)
    for r in runs:  # every update rule learns something in 63 steps
        assert r["summary"]["test/accuracy"] > 0.3, r["summary"]
