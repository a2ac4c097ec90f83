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
