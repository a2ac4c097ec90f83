"""Seed 003's CBOW, GloVe, AutoAugment / RandAugment / AugMix (issue 18): each from-scratch piece
against a hand computation, torch or PIL, and each new entry end to end on its quick form."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from practicum.config import load_experiment


@pytest.fixture(autouse=True)
def keep_torch_threads():
    """The tasks set torch's thread count for their process; give other tests theirs back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def latest_run(cli, experiment: str) -> Path:
    _, out, _ = cli("runs", "--json", "--experiment", experiment)
    runs = json.loads(out)
    assert runs and runs[-1]["status"] == "finished", runs
    return Path(runs[-1]["dir"])


def table(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / "tables" / f"{name}.json").read_text(encoding="utf-8"))


def meets_quick_band(run_dir: Path, name: str) -> dict:
    cfg = load_experiment(name, quick=True)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary[cfg.expect.metric] >= cfg.expect.quick_min, (cfg.expect.metric, summary)
    return summary


# ---------------------------------------------------------------------------------------------
# CBOW


def test_cbow_scores_loss_and_gradients_match_a_hand_computation():
    from practicum.models.word2vec import CBOW, sigmoid_bce

    torch.manual_seed(0)
    model = CBOW(7, 3)
    contexts = torch.tensor([[1, 2, 0, 0], [3, 4, 5, 6]])  # the first row has two real contexts
    mask = torch.tensor([[1.0, 1, 0, 0], [1, 1, 1, 1]])
    targets = torch.tensor([[0, 5, 6], [2, 1, 1]])  # center, then two noise words (one drawn twice)
    labels = torch.tensor([[1.0, 0, 0], [1, 0, 0]])
    scores = model(contexts, mask, targets)
    loss = sigmoid_bce(scores, labels, torch.ones_like(labels))
    loss.backward()

    V, U = model.context.weight.detach().double().numpy(), model.center.weight.detach().double().numpy()
    v_bar = np.stack([V[[1, 2]].mean(0), V[[3, 4, 5, 6]].mean(0)])  # padding slots left out of the mean
    s = np.einsum("be,ble->bl", v_bar, U[targets.numpy()])
    y = labels.numpy()
    sig = 1 / (1 + np.exp(-s))
    hand_loss = np.mean(np.mean(-(y * np.log(sig) + (1 - y) * np.log(1 - sig)), 1))
    ds = (sig - y) / (3 * 2)  # d loss / d score: (B, 1 + K), mean over 3 slots and 2 examples
    dV, dU = np.zeros_like(V), np.zeros_like(U)
    for b, (ctx, n) in enumerate([([1, 2], 2), ([3, 4, 5, 6], 4)]):
        dv_bar = ds[b] @ U[targets[b].numpy()]  # (E,)
        for o in ctx:
            dV[o] += dv_bar / n
        for slot, t in enumerate(targets[b].tolist()):
            dU[t] += ds[b, slot] * v_bar[b]
    assert np.allclose(scores.detach().numpy(), s, atol=1e-6)
    assert loss.item() == pytest.approx(hand_loss, abs=1e-6)
    assert np.allclose(model.context.weight.grad.numpy(), dV, atol=1e-6)
    assert np.allclose(model.center.weight.grad.numpy(), dU, atol=1e-6)


def test_cbow_examples_are_the_skipgram_draw_read_the_other_way():
    from practicum.data.text import cbow_examples, skipgram_examples

    rng = np.random.default_rng(0)
    sentences = [rng.integers(1, 20, size=rng.integers(2, 9)) for _ in range(50)]
    counts = np.bincount(np.concatenate(sentences), minlength=20).astype(float)
    sg = skipgram_examples(sentences, 3, 2, counts ** 0.75, np.random.default_rng(1))
    cb = cbow_examples(sg, 3, 2)
    assert cb["contexts"].shape == cb["context_mask"].shape == (len(sg["centers"]), 6)
    assert cb["targets"].shape == cb["labels"].shape == (len(sg["centers"]), 3)
    assert np.array_equal(cb["targets"][:, 0], sg["centers"])  # the center is the word to predict
    assert np.array_equal(cb["contexts"], sg["contexts_negatives"][:, :6])
    assert (cb["context_mask"].sum(1) >= 1).all()
    assert (sg["mask"][:, 6:8] == 1).all()  # the first K noise slots are always real ones
    assert np.array_equal(cb["targets"][:, 1:], sg["contexts_negatives"][:, 6:8])
    assert (cb["labels"][:, 0] == 1).all() and (cb["labels"][:, 1:] == 0).all()


def test_cbow_entry_quick_says_when_there_is_no_skipgram_run_then_sits_beside_it(cli, home):
    code, _, err = cli("run", "w2v-ptb-cbow", "--quick", "--no-report")
    assert code == 0, err
    run_dir = latest_run(cli, "w2v-ptb-cbow")
    meets_quick_band(run_dir, "w2v-ptb-cbow")
    alone = table(run_dir, "3_beside")
    assert "no finished run of 'w2v-ptb'" in alone["caption"] and "practicum run w2v-ptb" in alone["caption"]
    assert cli("run", "w2v-ptb", "--quick", "--no-report")[0] == 0
    code, _, err = cli("run", "w2v-ptb-cbow", "--quick", "--no-report", "--force")
    assert code == 0, err
    run_dir = latest_run(cli, "w2v-ptb-cbow")
    skipgram = latest_run(cli, "w2v-ptb")
    beside = table(run_dir, "3_beside")
    assert beside["columns"] == ["query", "CBOW (this run)", f"w2v-ptb {skipgram.name}"]
    assert [r[0] for r in beside["rows"]][:3] == ["chip", "intel", "baby"]
    chip = beside["rows"][0]
    assert len(chip[1].split(", ")) == 5 and len(chip[2].split(", ")) == 5
    scores = {r[0]: r[1:] for r in table(run_dir, "4_beside_scores")["rows"]}
    assert all(isinstance(v, float) and v > 0 for v in scores[next(iter(scores))])  # both losses
    assert json.loads((run_dir / "beside_source.json").read_text())["resolved_id"] == skipgram.name
    assert np.load(run_dir / "embeddings.npy").shape[1] == 100


# ---------------------------------------------------------------------------------------------
# GloVe


def dense_cooccurrence(sentences, V: int, window: int, weighting: bool) -> np.ndarray:
    """The definition, one pair at a time."""
    X = np.zeros((V, V))
    for s in sentences:
        for a in range(len(s)):
            for b in range(len(s)):
                d = abs(a - b)
                if 0 < d <= window:
                    X[s[a], s[b]] += 1.0 / d if weighting else 1.0
    return X


def test_cooccurrence_counts_of_a_hand_made_corpus():
    from practicum.data.text import cooccurrence

    sentences = [np.array([1, 2, 3]), np.array([2, 1])]  # "a b c" and "b a": no pair across the two
    i, j, x = cooccurrence(sentences, 4, 2)
    got = {(int(a), int(b)): float(v) for a, b, v in zip(i, j, x)}
    assert got == {(1, 2): 2.0, (2, 1): 2.0, (2, 3): 1.0, (3, 2): 1.0, (1, 3): 0.5, (3, 1): 0.5}
    i, j, x = cooccurrence(sentences, 4, 2, distance_weighting=False)
    assert {(int(a), int(b)): float(v) for a, b, v in zip(i, j, x)}[(1, 3)] == 1.0
    assert (3, 1) not in {(int(a), int(b)) for a, b in zip(*cooccurrence(sentences, 4, 1)[:2])}

    rng = np.random.default_rng(0)
    corpus = [rng.integers(0, 9, size=rng.integers(1, 12)) for _ in range(40)]
    for window, weighting in ((3, True), (5, False)):
        i, j, x = cooccurrence(corpus, 9, window, weighting)
        X = np.zeros((9, 9))
        X[i.numpy(), j.numpy()] = x.numpy()
        assert np.allclose(X, dense_cooccurrence(corpus, 9, window, weighting), atol=1e-5)
        assert (x > 0).all() and len(x) == (X > 0).sum()


def test_weighting_function_h():
    from practicum.models.glove import weighting

    x = torch.tensor([1.0, 10.0, 50.0, 99.0, 100.0, 1000.0])
    hand = [0.01 ** 0.75, 0.1 ** 0.75, 0.5 ** 0.75, 0.99 ** 0.75, 1.0, 1.0]
    assert torch.allclose(weighting(x), torch.tensor(hand))
    assert torch.allclose(weighting(torch.tensor([2.0, 4.0]), x_max=4.0, alpha=1.0), torch.tensor([0.5, 1.0]))


def test_glove_loss_and_its_gradients_match_a_hand_computation():
    from practicum.models.glove import GloVe, glove_loss

    torch.manual_seed(0)
    model = GloVe(5, 3)
    i, j = torch.tensor([0, 1, 4, 0]), torch.tensor([1, 0, 2, 3])
    x = torch.tensor([3.0, 3.0, 0.5, 250.0])
    pred = model(i, j)
    loss = glove_loss(pred, x)
    loss.backward()

    v, u = model.center.weight.detach().double().numpy(), model.context.weight.detach().double().numpy()
    b, c = (t.weight.detach().double().numpy()[:, 0] for t in (model.center_bias, model.context_bias))
    I, J, X = i.numpy(), j.numpy(), x.double().numpy()
    hand_pred = (v[I] * u[J]).sum(1) + b[I] + c[J]
    h = np.minimum(1.0, (X / 100) ** 0.75)
    err = hand_pred - np.log(X)
    assert np.allclose(pred.detach().numpy(), hand_pred, atol=1e-6)
    assert loss.item() == pytest.approx(np.mean(h * err ** 2), rel=1e-5)
    db = np.zeros(5)
    np.add.at(db, I, 2 * h * err / 4)
    dv = np.zeros_like(v)
    np.add.at(dv, I, (2 * h * err / 4)[:, None] * u[J])
    assert np.allclose(model.center_bias.weight.grad[:, 0].numpy(), db, atol=1e-6)
    assert np.allclose(model.center.weight.grad.numpy(), dv, atol=1e-6)
    assert torch.equal(model.words, model.center.weight + model.context.weight)


def test_glove_entry_quick_beside_skipgram(cli, home):
    assert cli("run", "w2v-ptb", "--quick", "--no-report")[0] == 0
    code, _, err = cli("run", "glove-ptb", "--quick")
    assert code == 0, err
    run_dir = latest_run(cli, "glove-ptb")
    summary = meets_quick_band(run_dir, "glove-ptb")
    assert summary["data/nonzeros"] > 1000 and summary["train/loss"] > 0
    skipgram = latest_run(cli, "w2v-ptb")
    beside = table(run_dir, "3_beside")
    assert beside["columns"] == ["query", "GloVe (this run)", f"w2v-ptb {skipgram.name}"]
    assert beside["rows"][0][0] == "chip" and len(beside["rows"][0][1].split(", ")) == 5
    top = table(run_dir, "4_cooccurrence")["rows"]
    assert top[0][2] >= top[1][2] >= top[7][2] and top[0][3] == 1.0  # the largest count is capped at h = 1
    stats = json.loads((run_dir / "cooccurrence.json").read_text())
    assert sum(stats["counts"]) == stats["nonzeros"] == summary["data/nonzeros"]
    assert (run_dir / "figures" / "weighting.png").is_file() and (run_dir / "report.md").is_file()
    W = np.load(run_dir / "embeddings.npy")
    assert W.shape == (int(summary["data/vocab_size"]), 100)


def practicum_process(*args, env, timeout=300):
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-m", "practicum", *args], capture_output=True, text=True,
                          env=env, timeout=timeout)


def one_thread_env() -> dict:
    import os

    return {**os.environ, "OMP_NUM_THREADS": "1"}


def metric_lines(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def kill_when(args: list[str], home: Path, path_glob: str, ready) -> dict:
    """Start ``practicum *args`` in a child and SIGKILL it once its checkpoint satisfies ``ready``."""
    import signal
    import subprocess
    import sys
    import time

    def state():
        found = list(home.glob(path_glob))
        try:
            return torch.load(found[0], weights_only=True)["loop"] if found else None
        except Exception:  # noqa: BLE001 - written atomically, but the directory may be mid-listing
            return None

    child = subprocess.Popen([sys.executable, "-m", "practicum", *args], env=one_thread_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline and child.poll() is None:
        ck = state()
        if ck and ready(ck):
            break
        time.sleep(0.01)
    child.send_signal(signal.SIGKILL)
    child.wait()
    ck = state()
    assert ck is not None and ready(ck) and not ck["done"], f"the kill must land mid-epoch: {ck}"
    return ck


# 1,000 sentences, batches of 64 entries of X, 3 epochs, a checkpoint every 40 steps.
GLOVE = ["run", "glove-ptb", "--quick", "--no-report", "-o", "data.limit=1000", "-o", "optim.batch_size=64",
         "-o", "train.epochs=3", "-o", "train.checkpoint_steps=40", "-o", "train.log_steps=25",
         "-o", "eval.beside=''"]


def test_glove_killed_mid_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*GLOVE)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))
    kill_when(GLOVE, home, "glove-ptb/*/checkpoints/last.pt", lambda ck: ck["epoch"] == 1 and ck["position"] > 0)
    env = one_thread_env()
    out = practicum_process(*GLOVE, env=env)
    assert out.returncode == 0 and "resuming" in out.stderr, out.stderr
    (run_dir,) = (p for p in home.glob("glove-ptb/*/") if p.is_dir())
    (ref_dir,) = (p for p in (tmp_path / "ref").glob("glove-ptb/*/") if p.is_dir())
    assert metric_lines(ref_dir) == metric_lines(run_dir)
    a, b = (np.load(d / "embeddings.npy") for d in (ref_dir, run_dir))
    assert np.array_equal(a, b)
    assert table(ref_dir, "1_neighbours") == table(run_dir, "1_neighbours")


def test_glove_on_two_processes_writes_one_run_in_the_one_process_band(cli, home, tmp_path, monkeypatch):
    args = ["run", "glove-ptb", "--quick", "--no-report", "-o", "eval.beside=''"]
    out = practicum_process(*args, "--nproc", "2", env=one_thread_env())
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = json.loads(cli("runs", "--json")[1])
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    (run_dir,) = home.glob("glove-ptb/*/")
    assert (run_dir / "embeddings.npy").is_file() and (run_dir / "tables" / "4_cooccurrence.json").is_file()
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli(*args)[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two, one = record["summary"], one["summary"]
    assert two["train/steps"] == one["train/steps"] and two["data/nonzeros"] == one["data/nonzeros"]
    assert abs(two["train/loss"] - one["train/loss"]) < 0.1 * one["train/loss"]
