"""Sentiment and word2vec on the shared fit loop: killed with SIGKILL mid-epoch and resumed
bit-identically (sentiment inside its second variant, word2vec inside its third epoch, whose
examples the resumed process must redraw), two DDP processes (gloo) training one sentiment run,
the text padded once, and word2vec's examples a function of (seed, epoch)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from helpers import kill_when, one_thread_env, practicum, runs


def lines(run_dir: Path) -> list[tuple]:
    return [(r["step"], r["epoch"], r["split"], r["name"], r["value"])
            for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())]


def untimed(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if "seconds" not in k}


def table_rows(run_dir: Path, name: str, drop_last_column: bool = False) -> list:
    rows = json.loads((run_dir / "tables" / f"{name}.json").read_text())["rows"]
    return [r[:-1] for r in rows] if drop_last_column else rows


def same_weights(a: Path, b: Path) -> bool:
    sa, sb = (torch.load(p, weights_only=True)["model"] for p in (a, b))
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def resume_and_compare(args, env, home, ref_home) -> tuple[Path, Path]:
    """Resume the killed run; its lines and summary must equal the reference run's in ``ref_home``."""
    assert [r["status"] for r in runs(env)] == ["interrupted"]
    out = practicum(*args, env=env)
    assert out.returncode == 0, out.stderr
    assert "resuming" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished"
    run_dir = Path(record["dir"])
    (ref_dir,) = (p.parent for p in ref_home.glob("*/*/config.toml"))  # a run, not .claims/ or site/
    assert lines(ref_dir) == lines(run_dir)  # no line lost or doubled, every value identical
    ref_summary = json.loads((ref_dir / "summary.json").read_text())
    assert untimed(ref_summary) == untimed(record["summary"])
    return ref_dir, run_dir


# Two variants, 3 epochs of 16 steps each (800 snippets, batch 50), a checkpoint every 3 steps.
SENTIMENT = ["run", "sentiment-rt-polarity", "--quick", "--no-report", "-o", "data.limit=1000",
             "-o", 'train.variants=["textcnn-random", "bilstm-random"]', "-o", "train.epochs=3",
             "-o", "train.checkpoint_steps=3", "-o", "train.log_steps=2", "-o", "train.eval_steps=7"]


def test_sentiment_killed_mid_epoch_in_its_second_variant_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))  # one uninterrupted run
    assert cli(*SENTIMENT)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))

    ck = kill_when(SENTIMENT, home, "sentiment-rt-polarity/*/checkpoints/bilstm-random/last.pt",
                   lambda ck: ck["step"] >= 3 and ck["position"] > 0)
    assert 0 < ck["step"] < 48
    ref_dir, run_dir = resume_and_compare(SENTIMENT, one_thread_env(), home, tmp_path / "ref")
    for variant in ("textcnn-random", "bilstm-random"):
        for name in ("last.pt", "best.pt"):  # last.pt: the final (restored best) weights
            assert same_weights(ref_dir / "checkpoints" / variant / name, run_dir / "checkpoints" / variant / name)
    assert table_rows(ref_dir, "1_accuracy", drop_last_column=True) == \
           table_rows(run_dir, "1_accuracy", drop_last_column=True)  # all but s/epoch
    test_lines = [line for line in lines(run_dir) if line[2].startswith("test-")]
    assert [line[2] for line in test_lines] == ["test-textcnn-random"] * 2 + ["test-bilstm-random"] * 2


# 1,000 sentences in batches of 64: about 95 steps per epoch, 3 epochs, a checkpoint every 15 steps.
WORD2VEC = ["run", "w2v-ptb", "--quick", "--no-report", "-o", "data.limit=1000", "-o", "optim.batch_size=64",
            "-o", "train.epochs=3", "-o", "train.checkpoint_steps=15", "-o", "train.log_steps=10"]


def test_word2vec_killed_in_its_third_epoch_resumes_bit_identical(cli, home, tmp_path, monkeypatch):
    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "ref"))
    assert cli(*WORD2VEC)[0] == 0
    monkeypatch.setenv("PRACTICUM_HOME", str(home))

    # killed in epoch 2: the resumed process builds epoch 0's examples, then goes straight to epoch 2's
    kill_when(WORD2VEC, home, "w2v-ptb/*/checkpoints/last.pt", lambda ck: ck["epoch"] == 2 and ck["position"] > 0)
    ref_dir, run_dir = resume_and_compare(WORD2VEC, one_thread_env(), home, tmp_path / "ref")
    a, b = (np.load(d / "embeddings.npy", allow_pickle=False) for d in (ref_dir, run_dir))
    assert a.shape == b.shape and np.array_equal(a, b)
    assert same_weights(ref_dir / "checkpoints/last.pt", run_dir / "checkpoints/last.pt")
    for name in ("1_neighbours", "2_analogies"):
        assert table_rows(ref_dir, name) == table_rows(run_dir, name)


def test_sentiment_on_two_processes_writes_one_run_in_the_one_process_band(cli, home, tmp_path, monkeypatch):
    # without dropout both runs compute the same updates (DDP averages the two half-batches'
    # gradients), up to summation order and each half-batch's own padding
    args = ["run", "sentiment-rt-polarity", "--quick", "--no-report", "-o", 'train.variants=["textcnn-random"]',
            "-o", "textcnn.dropout=0", "-o", "train.epochs=3"]
    env = one_thread_env()
    out = practicum(*args, "--nproc", "2", env=env)
    assert out.returncode == 0, out.stderr
    assert "on 2 processes" in out.stderr
    (record,) = runs(env)
    assert record["status"] == "finished" and record["summary"]["train/processes"] == 2
    assert len(list(home.glob("sentiment-rt-polarity/*/"))) == 1
    (run_dir,) = home.glob("sentiment-rt-polarity/*/")
    assert (run_dir / "tables" / "1_accuracy.json").is_file() and (run_dir / "splits.json").is_file()

    monkeypatch.setenv("PRACTICUM_HOME", str(tmp_path / "single"))
    assert cli(*args)[0] == 0
    (one,) = json.loads(cli("runs", "--json")[1])
    two, one = record["summary"], one["summary"]
    assert two["train/steps_textcnn-random"] == one["train/steps_textcnn-random"]
    assert abs(two["train/accuracy"] - one["train/accuracy"]) < 0.05
    assert abs(two["val/accuracy_textcnn-random"] - one["val/accuracy_textcnn-random"]) < 0.1  # 60 snippets
    assert abs(two["test/accuracy"] - one["test/accuracy"]) < 0.1


def test_sentiment_pads_each_split_once_and_a_batch_is_a_slice(cli, monkeypatch):
    from practicum.data.arrays import ArrayLoader
    from practicum.data.text import Vocab
    from practicum.practicals import sentiment

    calls, real = [], sentiment.pad_batch

    def counted(lines, *args, **kwargs):
        calls.append(len(lines))
        return real(lines, *args, **kwargs)

    monkeypatch.setattr(sentiment, "pad_batch", counted)
    assert cli("run", "sentiment-rt-polarity", "--quick", "--no-report", "-o", 'train.variants=["textcnn-random"]',
               "-o", "train.epochs=1")[0] == 0
    assert calls == [60, 60, 480]  # test, val, train: once each, whole splits

    texts = [["a", "b", "c"], ["b"], ["c", "a", "b", "a", "c"], [], ["a", "c"]]
    vocab = Vocab(texts, reserved_tokens=["<pad>"])
    arrays = sentiment.encode(texts, np.array([1, 0, 1, 0, 1]), vocab, 4, "cpu")
    assert arrays["ids"].shape == (5, 4) and arrays["lengths"].tolist() == [3, 1, 4, 1, 2]  # capped, >= 1
    loader = ArrayLoader(arrays, 2, train=True, generator=torch.Generator().manual_seed(0), collate=sentiment.trim)
    order = loader.order(0)
    for i in range(loader.steps_per_epoch):
        idx = order[2 * i: 2 * i + 2]
        ids, lengths, labels = loader.batch(order, i)
        width = int(arrays["lengths"][idx].max())
        assert torch.equal(ids, arrays["ids"][idx, :width]) and torch.equal(labels, arrays["labels"][idx])


def test_sentiment_selection_needs_a_validation_split(cli):
    code, _, err = cli("run", "sentiment-rt-polarity", "--quick", "--no-report", "-o", "data.val_fraction=0",
                       "-o", 'train.variants=["textcnn-random"]')
    assert code == 2 and "train.best_metric" in err and "no split 'val'" in err


def test_word2vec_examples_are_a_function_of_seed_and_epoch():
    from practicum.practicals.word2vec import Data, SkipGramLoader

    rng = np.random.default_rng(0)
    sentences = [rng.integers(1, 30, size=rng.integers(3, 12)) for _ in range(200)]
    counts = np.bincount(np.concatenate(sentences), minlength=30).astype(float)
    d = Data(min_freq=1, max_window=2, num_noise=2, subsample_t=0.01)  # keeps about half the words
    make = lambda: SkipGramLoader(sentences, counts, d, 7, 16, generator=torch.Generator().manual_seed(7))  # noqa: E731

    a, b = make(), make()
    a.order(0)
    order = a.order(1)  # a draws epoch 1 after epoch 0, b (a resumed process) only epoch 1
    assert order["perm"].shape == (a.n,) and a.steps_per_epoch == -(-a.n // 16)
    for i in (0, 3, a.steps_per_epoch - 1):
        batch = b.batch(order, i)
        idx = order["perm"][16 * i: 16 * (i + 1)]
        assert all(torch.equal(x, b.arrays[k][idx]) for x, k in zip(batch, b.arrays))
        assert all(torch.equal(x, y) for x, y in zip(batch, a.batch(order, i)))
    e0, e1 = b.examples(0, "cpu"), b.examples(1, "cpu")  # another epoch, another draw
    assert len(e0["centers"]) != len(e1["centers"]) or not torch.equal(e0["centers"], e1["centers"])
