"""Seed 003's sections without a practical (issue 18, part a): n-gram statistics and models,
convolution and pooling by hand, batch normalisation from scratch, numerical stability. Each
from-scratch piece against torch or hand-computed values; each new entry end to end (--quick)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import latest_run, table
from practicum.config import load_experiment

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The tasks set torch's thread count for their process; give other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def summary_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "summary.json").read_text())


def in_quick_band(run_dir: Path, name: str) -> None:
    expect = load_experiment(name, quick=True).expect
    value = summary_of(run_dir)[expect.metric]
    assert value >= expect.quick_min, (expect.metric, value)
    if expect.max is not None:
        assert value <= expect.max, (expect.metric, value)


# -- 1. n-grams ----------------------------------------------------------------------------------

from practicum.practicals import ngram  # noqa: E402

TOY = [0, 1, 0, 1, 2]  # bigrams (0,1) x2, (1,0), (1,2); unigrams 0 x2, 1 x2, 2 x1; V = 3


def test_ngram_counts_and_add_k_by_hand():
    assert ngram.ngrams(TOY, 2) == {(0, 1): 2, (1, 0): 1, (1, 2): 1}
    laplace1, laplace2 = ngram.AddK(TOY, 1, 1.0, 3), ngram.AddK(TOY, 2, 1.0, 3)
    assert laplace1.prob((), 2) == pytest.approx((1 + 1) / (5 + 3))
    assert laplace2.prob((0,), 1) == pytest.approx((2 + 1) / (2 + 3))
    assert laplace2.prob((2,), 2) == pytest.approx(1 / 3)  # an unseen history: uniform
    assert laplace2.prob((), 0) == pytest.approx(laplace1.prob((), 0))  # a row's first token: the unigram


def test_kneser_ney_by_hand():
    D = 0.5
    uni = ngram.KneserNey(TOY, 1, D, 3)  # raw counts, then uniform: (max(c - D, 0) + D * 3 types / 3) / 5
    assert [uni.prob((), w) for w in range(3)] == pytest.approx([0.4, 0.4, 0.2])
    bi = ngram.KneserNey(TOY, 2, D, 3)
    # continuation counts N1+(. w) = 1 for every w: P_cont = (0.5 + 0.5 * 3 * 1/3) / 3 = 1/3
    assert bi.prob((0,), 1) == pytest.approx((1.5 + D * 1 * (1 / 3)) / 2)  # history 0 has 1 type, total 2
    assert bi.prob((0,), 0) == pytest.approx(D / 3 / 2)
    assert bi.prob((2,), 0) == pytest.approx(1 / 3)  # 2 is never followed: all mass to the lower order


@pytest.mark.parametrize("model", ["add", "kn"])
def test_ngram_models_are_distributions(model):
    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(0, 6, (300,), generator=gen).tolist()
    V = 8  # two tokens never seen
    for n in (1, 2, 3, 4):
        m = ngram.AddK(ids, n, 0.1, V) if model == "add" else ngram.KneserNey(ids, n, 0.75, V)
        for h in [(), (ids[0],), tuple(ids[:2]), tuple(ids[5:8]), (7, 7, 7), (1, 7)]:
            probs = [m.prob(h, w) for w in range(V)]
            assert min(probs) > 0 and sum(probs) == pytest.approx(1.0, abs=1e-12), (n, h)


def test_ngram_perplexity_and_zipf_fit_on_known_values():
    ids = [0, 1, 2, 3] * 50
    huge_k = ngram.AddK(ids, 2, 1e12, 5)
    targets = [(p, 0) for p in range(1, len(ids))]
    assert ngram.perplexity(huge_k, ids, targets, 2) == pytest.approx(5.0, rel=1e-6)  # uniform over V
    kn = ngram.KneserNey(ids, 2, 0.1, 5)
    assert ngram.perplexity(kn, ids, targets, 2) < 1.2  # a cycle is almost certain after a bigram
    counts = [1e6 * r ** -1.3 for r in range(1, 2001)]
    a, _, lo, hi = ngram.zipf_fit(counts, 10, 1)
    assert a == pytest.approx(1.3) and lo == 10 and hi == 2000


def test_ngram_scores_exactly_the_rnn_validation_targets():
    from practicum.data.lm import LMLoader

    gen = torch.Generator().manual_seed(1)
    val = torch.randint(0, 27, (1234,), generator=gen)
    targets = ngram.val_targets(len(val), 32, 35)
    Y = torch.cat([y.reshape(-1) for _, y, _ in LMLoader(val, 32, 35, train=False)])  # what the RNN scores
    assert [int(val[p]) for p, _ in targets] == Y.tolist()
    L = (len(val) - 1) // 32
    assert all(start % L == 0 and start < p for p, start in targets)  # each row starts afresh


def test_ngram_entries_run_quick_without_and_with_an_rnn_run(cli):
    code, _, err = cli("run", "ngram-timemachine", "--quick", "--no-report", "--no-deps")  # without the RNN run
    assert code == 0, err
    run_dir = latest_run(cli, "ngram-timemachine")
    in_quick_band(run_dir, "ngram-timemachine")
    caption = table(run_dir, "5_perplexity")["caption"]
    assert "no RNN perplexities" in caption and "practicum run lm-timemachine" in caption
    assert [r[1] for r in table(run_dir, "1_unigrams")["rows"][:2]] == ["the", "a"]
    assert {r[0] for r in table(run_dir, "4_zipf")["rows"]} == {"1-gram", "2-gram", "3-gram"}
    assert (run_dir / "figures" / "zipf.png").is_file()
    splits = json.loads((run_dir / "splits.json").read_text())
    assert splits["train"] == [0, 5400] and splits["val"] == [5400, 6000]  # language_model's cut
    s = summary_of(run_dir)
    assert s["val/perplexity_kn_3"] < s["val/perplexity_kn_1"] < 28  # context helps; all beat uniform

    # an RNN run with the same data settings (one model, to be quick): now it stands beside
    assert cli("run", "lm-timemachine", "--quick", "--no-report", "-o", 'model.names=["gru"]')[0] == 0
    assert cli("run", "ngram-timemachine", "--quick", "--no-report", "--force", "--no-deps")[0] == 0
    run_dir = latest_run(cli, "ngram-timemachine")
    rows = {r[0]: r for r in table(run_dir, "5_perplexity")["rows"]}
    lm = json.loads(cli("runs", "--json", "--experiment", "lm-timemachine")[1])[-1]
    assert rows["gru"][1] == pytest.approx(lm["summary"]["val/perplexity_gru"]) and lm["id"] in rows["gru"][2]

    assert cli("run", "ngram-jaychou", "--quick", "--no-report", "--no-deps")[0] == 0
    run_dir = latest_run(cli, "ngram-jaychou")
    in_quick_band(run_dir, "ngram-jaychou")
    assert table(run_dir, "1_unigrams")["rows"][0][1] == "␣"  # the space between lyric lines


# -- 2. convolution and pooling by hand ------------------------------------------------------------

from practicum.practicals import conv_scratch as cs  # noqa: E402


def test_corr2d_and_pooling_on_d2l_values():
    X = torch.arange(9.0).reshape(3, 3)
    assert torch.equal(cs.corr2d(X, torch.tensor([[0.0, 1.0], [2.0, 3.0]])), torch.tensor([[19.0, 25.0], [37.0, 43.0]]))
    X2 = torch.stack([X, X + 1])
    K2 = torch.tensor([[[0.0, 1.0], [2.0, 3.0]], [[1.0, 2.0], [3.0, 4.0]]])
    assert torch.equal(cs.corr2d_multi_in(X2, K2), torch.tensor([[56.0, 72.0], [104.0, 120.0]]))
    Y3 = cs.corr2d_multi_in_out(X2, torch.stack([K2, K2 + 1, K2 + 2]))  # D2L 7.4: three output channels
    assert Y3.shape == (3, 2, 2) and torch.equal(Y3[0], cs.corr2d_multi_in(X2, K2))
    assert torch.equal(cs.pool2d(X, 2, "max"), torch.tensor([[4.0]]))  # stride = window by default
    assert torch.equal(cs.pool2d(X, 2, "max", stride=1), torch.tensor([[4.0, 5.0], [7.0, 8.0]]))
    assert torch.equal(cs.pool2d(X, 2, "avg", stride=1), torch.tensor([[2.0, 3.0], [5.0, 6.0]]))
    # D2L 7.3: an 8x8 input, output shapes of its four padding/stride cases
    X8 = torch.rand(8, 8)
    for k, p, s, shape in (((3, 3), 1, 1, (8, 8)), ((5, 3), (2, 1), 1, (8, 8)), ((3, 3), 1, 2, (4, 4)),
                           ((3, 5), (0, 1), (3, 4), (2, 2))):
        assert cs.corr2d(X8, torch.rand(*k), padding=p, stride=s).shape == shape


def test_corr2d_values_and_gradients_equal_f_conv2d():
    gen = torch.Generator().manual_seed(0)
    X = torch.randn(3, 7, 6, generator=gen, dtype=torch.float64, requires_grad=True)
    K = torch.randn(2, 3, 3, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    ours = cs.corr2d_multi_in_out(X, K, padding=(1, 2), stride=(2, 1))
    theirs = F.conv2d(X[None], K, padding=(1, 2), stride=(2, 1))[0]
    torch.testing.assert_close(ours, theirs)
    w = torch.randn(ours.shape, generator=gen, dtype=torch.float64)
    gx, gk = torch.autograd.grad((ours * w).sum(), (X, K))
    tx, tk = torch.autograd.grad((theirs * w).sum(), (X, K))
    torch.testing.assert_close(gx, tx)
    torch.testing.assert_close(gk, tk)
    K1 = torch.randn(4, 3, 1, 1, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(cs.corr2d_multi_in_out_1x1(X.detach(), K1), F.conv2d(X.detach()[None], K1)[0])


def test_pooling_with_padding_and_stride_equals_torch():
    gen = torch.Generator().manual_seed(2)
    X = torch.randn(3, 7, 5, generator=gen, dtype=torch.float64)
    for size, pad, stride in ((2, 0, None), (3, 1, 2), ((3, 2), (1, 1), (2, 1))):
        torch.testing.assert_close(cs.pool2d(X, size, "max", pad, stride), F.max_pool2d(X[None], size, stride, pad)[0])
        torch.testing.assert_close(cs.pool2d(X, size, "avg", pad, stride), F.avg_pool2d(X[None], size, stride, pad)[0])
    rows = cs.checks(torch.Generator().manual_seed(0))  # the run's own table
    assert len(rows) >= 14 and max(r[2] for r in rows) < 1e-12


def test_conv_scratch_entry_learns_the_edge_kernel(cli):
    code, _, err = cli("run", "conv-scratch", "--quick")
    assert code == 0, err
    run_dir = latest_run(cli, "conv-scratch")
    in_quick_band(run_dir, "conv-scratch")
    s = summary_of(run_dir)
    assert s["kernel/scratch_k[0,0]"] == pytest.approx(s["kernel/torch_k[0,0]"], abs=1e-6)  # same start, same steps
    assert s["kernel/scratch_k[0,0]"] > 0.5 and s["kernel/scratch_k[0,1]"] < -0.5
    assert s["edges/transposed_max_abs"] == 0.0 and s["check/max_abs_diff"] < 1e-12
    losses = [r[-1] for r in table(run_dir, "2_kernel")["rows"]]
    assert losses[-1] < losses[0] / 10
    assert {"edges.png", "kernel.png"} <= {p.name for p in (run_dir / "figures").iterdir()}
    assert "![kernel]" in (run_dir / "report.md").read_text()


# -- 3. batch normalisation from scratch -----------------------------------------------------------

from practicum.models.batchnorm import BatchNorm  # noqa: E402


@pytest.mark.parametrize("dims", [2, 4])
def test_scratch_batch_norm_equals_torch(dims):
    gen = torch.Generator().manual_seed(dims)
    C = 5
    ours, theirs = BatchNorm(C, dims).double(), (nn.BatchNorm1d if dims == 2 else nn.BatchNorm2d)(C).double()
    with torch.no_grad():  # a learned scale and shift, the same in both
        g = torch.rand(C, generator=gen, dtype=torch.float64) + 0.5
        b = torch.randn(C, generator=gen, dtype=torch.float64)
        theirs.weight.copy_(g), theirs.bias.copy_(b)
        ours.gamma.copy_(g.view_as(ours.gamma)), ours.beta.copy_(b.view_as(ours.beta))
    shape = (16, C) if dims == 2 else (4, C, 3, 2)
    for _ in range(3):  # training mode: batch statistics; moving statistics updated
        x = (torch.randn(shape, generator=gen, dtype=torch.float64) * 3 + 1).requires_grad_()
        w = torch.randn(shape, generator=gen, dtype=torch.float64)
        y1, y2 = ours(x), theirs(x)
        torch.testing.assert_close(y1, y2)
        gx1, gg, gb = torch.autograd.grad((y1 * w).sum(), (x, ours.gamma, ours.beta))
        gx2, tg, tb = torch.autograd.grad((y2 * w).sum(), (x, theirs.weight, theirs.bias))
        torch.testing.assert_close(gx1, gx2)
        torch.testing.assert_close(gg.flatten(), tg)
        torch.testing.assert_close(gb.flatten(), tb)
    torch.testing.assert_close(ours.moving_mean.flatten(), theirs.running_mean)
    torch.testing.assert_close(ours.moving_var.flatten(), theirs.running_var)  # unbiased, as torch
    ours.eval(), theirs.eval()  # evaluation: the moving statistics, whatever the batch
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    torch.testing.assert_close(ours(x), theirs(x))
    torch.testing.assert_close(ours(x[:1]), theirs(x[:1]))
    mean_before = ours.moving_mean.clone()
    ours(x)
    assert torch.equal(ours.moving_mean, mean_before)  # evaluation leaves them alone


def test_lenet_bn_scratch_trains_like_lenet_bn():
    from practicum.models import build_model

    nets = []
    for name in ("lenet-bn-scratch", "lenet-bn"):
        torch.manual_seed(0)  # the same conv and linear weights: BatchNorm draws nothing
        nets.append(build_model(name))
    a, b = nets
    assert sum(p.numel() for p in a.parameters()) == sum(p.numel() for p in b.parameters())
    assert sum(isinstance(m, BatchNorm) for m in a.modules()) == 4
    x, y = torch.randn(32, 1, 28, 28, generator=torch.Generator().manual_seed(1)), torch.arange(32) % 10
    opts = [torch.optim.SGD(n.parameters(), lr=0.1) for n in nets]
    for _ in range(3):
        for net, opt in zip(nets, opts):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    torch.testing.assert_close(a.conv1.weight, b.conv1.weight, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(a.bn4.moving_var.flatten(), b.bn4.running_var, atol=1e-5, rtol=1e-4)
    a.eval(), b.eval()
    torch.testing.assert_close(a(x), b(x), atol=1e-4, rtol=1e-4)


def test_fmnist_lenet_bn_scratch_entry_runs_quick(cli):
    cfg = load_experiment("fmnist-lenet-bn-scratch")
    assert cfg.expect.min == 0.859 and "0.859" in cfg.description  # DIDL-PT 5.10's scratch BN-LeNet
    code, _, err = cli("run", "fmnist-lenet-bn-scratch", "--quick", "--no-report")
    assert code == 0, err
    in_quick_band(latest_run(cli, "fmnist-lenet-bn-scratch"), "fmnist-lenet-bn-scratch")


# -- 4. numerical stability --------------------------------------------------------------------------

from practicum.practicals import stability  # noqa: E402


def test_inits_give_their_variances():
    from practicum.models import build_model

    torch.manual_seed(0)
    nets = {init: build_model("mlp-deep", init=init) for init in ("default", "xavier", "kaiming")}
    linears = [m for m in nets["xavier"].modules() if isinstance(m, nn.Linear)]
    assert len(linears) == 10
    for init, expected in (("default", lambda i, o: 1 / (3 * i)), ("xavier", lambda i, o: 2 / (i + o)),
                           ("kaiming", lambda i, o: 2 / i)):
        w = [m.weight for m in nets[init].modules() if isinstance(m, nn.Linear)][1]  # 256 x 256
        assert float(w.detach().var()) == pytest.approx(expected(256, 256), rel=0.05), init


def test_sigmoid_gradient_matrix_product_and_ratio():
    x, s, g = stability.sigmoid_gradient(8.0)
    assert g.max() == pytest.approx(0.25) and x[g.argmax()] == pytest.approx(0.0)
    assert abs(g - s * (1 - s)).max() < 1e-15
    gen = torch.Generator().manual_seed(0)
    norms = stability.matrix_product_norms(100, 4, 1.0, gen)
    gen = torch.Generator().manual_seed(0)  # by hand, D2L's loop
    M = torch.normal(0.0, 1.0, (4, 4), generator=gen, dtype=torch.float64)
    for _ in range(100):
        M = M @ torch.normal(0.0, 1.0, (4, 4), generator=gen, dtype=torch.float64)
    assert len(norms) == 101 and norms[-1] == pytest.approx(float(M.norm())) and norms[-1] > 1e15
    assert stability.log10_ratio([[1e-7, 1.0], [1e-5, 10.0]]) == pytest.approx(-6.5)


def test_grad_norm_recorder_reads_the_step_gradients():
    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))
    memory: dict = {}
    record = stability.grad_norm_recorder(net, memory, steps=2)
    x, y = torch.randn(5, 4), torch.tensor([0, 1, 0, 1, 1])
    for step in range(3):
        net.zero_grad()
        F.cross_entropy(net(x), y).backward()
        expected = [float(net[0].weight.grad.norm()), float(net[2].weight.grad.norm())]
        record(net)
        if step < 2:
            assert memory["grad_norms"][-1] == expected
    assert len(memory["grad_norms"]) == 2


def test_stability_entry_and_study_run_quick(cli, home):
    code, _, err = cli("run", "fmnist-mlp-deep", "--quick")
    assert code == 0, err
    run_dir = latest_run(cli, "fmnist-mlp-deep")
    in_quick_band(run_dir, "fmnist-mlp-deep")
    data = json.loads((run_dir / "grad_norms.json").read_text())
    assert len(data["norms"]) == 20 and len(data["layers"]) == 10 and data["label"] == "relu, init xavier"
    assert {"sigmoid.png", "matrix_product.png", "grad_norms.png"} <= {p.name for p in (run_dir / "figures").iterdir()}
    assert [r[0] for r in table(run_dir, "2_matrix")["rows"]][-1] == 101
    assert summary_of(run_dir)["matrix/log10_norm"] > 10

    code, out, err = cli("sweep", "study-init-stability", "--quick", "--seeds", "1")
    assert code == 0, err
    study = home / "studies" / "study-init-stability-quick"
    report = (study / "report.md").read_text()
    assert "grad_profile.png" in report and "grad_steps.png" in report
    with open(study / "results.csv") as f:
        rows = {tuple(line.split(",")[:2]): line for line in f.read().splitlines()[1:]}
    ratio = {k: float(v.split(",")[7]) for k, v in rows.items()}  # grad/log10_ratio: the 4th metric
    assert ratio[("sigmoid", "default")] < ratio[("sigmoid", "xavier")] < ratio[("relu", "xavier")]
    assert ratio[("sigmoid", "default")] < -5 < -1 < ratio[("relu", "xavier")]


KILLER = r"""
import os, signal, sys
from pathlib import Path
from practicum.train import checkpoint

step = int(sys.argv[1])
save = checkpoint.save

def save_or_die(path, obj, **kw):
    if Path(path).name == "last.pt" and obj["loop"]["step"] == step:
        os.kill(os.getpid(), signal.SIGKILL)
    save(path, obj, **kw)

checkpoint.save = save_or_die
from practicum.cli import main
sys.exit(main(sys.argv[2:]))
"""

RESUME_ARGS = ["run", "fmnist-mlp-deep", "--quick", "--no-report", "-o", "train.checkpoint_steps=4",
               "-o", "train.epochs=2", "-o", "data.train_limit=640"]  # 20 steps per epoch, 40 in all


def test_stability_killed_mid_epoch_resumes_with_the_same_gradient_norms(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*RESUME_ARGS)[0] == 0
    (ref_dir,) = (tmp_path / "ref").glob("fmnist-mlp-deep/*/")
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    killed = subprocess.run([sys.executable, "-c", KILLER, "12", *RESUME_ARGS], env=env, capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (run_dir,) = home.glob("fmnist-mlp-deep/*/")
    kept = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert kept["loop"]["step"] == 8 and len(kept["memory"][0]["grad_norms"]) == 8  # mid-window, mid-epoch
    code, _, err = cli(*RESUME_ARGS)
    assert code == 0 and "resuming" in err, err
    lines = lambda d: [(r["step"], r["split"], r["name"], r["value"])  # noqa: E731
                       for r in map(json.loads, (d / "metrics.jsonl").read_text().splitlines())]
    assert lines(ref_dir) == lines(run_dir)
    for name in ("grad_norms.json", "tables/3_grad_norms.json", "tables/2_matrix.json"):
        assert (ref_dir / name).read_text() == (run_dir / name).read_text(), name


def test_stability_on_two_processes_matches_one(cli, home, tmp_path, monkeypatch):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-m", "practicum", "run", "fmnist-mlp-deep", "--quick", "--no-report",
                          "--nproc", "2"], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    (two_dir,) = home.glob("fmnist-mlp-deep/*/")
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli("run", "fmnist-mlp-deep", "--quick", "--no-report")[0] == 0
    (one_dir,) = (tmp_path / "single").glob("fmnist-mlp-deep/*/")
    two, one = summary_of(two_dir), summary_of(one_dir)
    assert two["train/processes"] == 2 and two["train/steps"] == one["train/steps"]
    assert abs(two["test/accuracy"] - one["test/accuracy"]) < 0.05
    a, b = (json.loads((d / "grad_norms.json").read_text())["norms"][0] for d in (two_dir, one_dir))
    assert a == pytest.approx(b, rel=1e-4)  # DDP averages the halves' gradients: the same first step
