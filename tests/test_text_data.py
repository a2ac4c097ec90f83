"""The text data layer: tokenisers and vocabulary (Chinese, cp1252), corpus readers, language-model
batches (data/lm.py), translation arrays, seeded splits, skip-gram examples."""

import numpy as np
import pytest

from practicum.data import text
from practicum.data.lm import LMLoader
from practicum.data.text import (Vocab, build_array_nmt, decode, pad_batch, preprocess_nmt, skipgram_examples,
                                 split_indices, subsample, tokenize, truncate_pad)
from practicum.errors import PracticumError, UsageError


@pytest.fixture
def offline_data(monkeypatch, shared_cache, data_mirror):
    monkeypatch.setenv("PRACTICUM_DATA_CACHE", str(shared_cache))
    monkeypatch.setenv("PRACTICUM_DATA_MIRROR", str(data_mirror))
    monkeypatch.setenv("PRACTICUM_OFFLINE", "1")


# -- tokenisers and vocabulary ----------------------------------------------------------------------


def test_char_vocab_round_trips_chinese():
    lines = ["分开 不分开", "我想要 你 分开"]
    tokens = tokenize(lines, "char")
    assert tokens[0] == ["分", "开", " ", "不", "分", "开"]
    vocab = Vocab(tokens)
    assert vocab.to_tokens(0) == "<unk>" and len(vocab) == 1 + len(set("".join(lines)))
    for line, toks in zip(lines, tokens):
        assert "".join(vocab.to_tokens(vocab[toks])) == line
    # most frequent first (分 x3, then 开 and the space x3 -> alphabetical tie-break)
    assert vocab.idx_to_token[1:4] == [" ", "分", "开"]
    assert vocab["从没见过"] == vocab.unk


def test_word_vocab_min_freq_reserved_and_json_round_trip():
    tokens = tokenize(["the cat sat", "the dog sat", "a bird"], "word")
    vocab = Vocab(tokens, min_freq=2, reserved_tokens=["<pad>", "<bos>", "<eos>"])
    assert vocab.idx_to_token == ["<unk>", "<pad>", "<bos>", "<eos>", "sat", "the"]
    assert vocab[["the", "cat", "<eos>"]] == [5, 0, 3]
    again = Vocab.from_json(vocab.to_json())
    assert again.idx_to_token == vocab.idx_to_token and again["sat"] == vocab["sat"]
    with pytest.raises(UsageError, match="unknown token type"):
        tokenize(["x"], "byte")


def test_cp1252_bytes_decode_and_round_trip_through_the_vocabulary():
    raw = "caf\xe9 na\xefve \x93quoted\x94 \x96 it\x92s".encode("latin-1")  # cp1252 bytes
    with pytest.raises(PracticumError, match="not valid utf-8"):
        decode(raw, "utf-8", "x.txt")
    line = decode(raw, "cp1252", "x.txt")
    assert line == "café naïve “quoted” – it’s"
    tokens = tokenize([line], "word")[0]
    vocab = Vocab(tokens)
    assert " ".join(vocab.to_tokens(vocab[tokens])) == line


def test_real_corpora_read_with_their_encodings(offline_data):
    texts, labels = text.read_rt_polarity()  # cp1252 on disk
    assert len(texts) == 10662 and labels.sum() == 5331
    words = {w for t in texts for w in t}
    assert any(not w.isascii() for w in words)  # accented words came through cp1252
    assert "\ufffd" not in "".join(words)
    lyrics = text.read_jaychou()  # UTF-8 inside a zip
    assert "分开" in lyrics and "\n" not in lyrics and len(lyrics) == 63282
    ids, vocab = text.lm_corpus("jaychou", "char", max_tokens=10000)
    assert len(ids) == 10000 and "".join(vocab.to_tokens(ids[:50])) == lyrics[:50]
    tm = text.read_timemachine()
    assert tm.startswith("the time machine by h g wells") and set(tm) <= set("abcdefghijklmnopqrstuvwxyz ")
    train, _ = text.read_imdb_tiny("train")
    assert len(train) == 20 and "<br" not in " ".join(map(" ".join, train))
    assert len(text.read_ptb("valid")) == 3370


def test_fra_eng_preprocessing_and_third_column(tmp_path):
    assert preprocess_nmt("Go.\tVa !") == "go .\tva !"
    assert preprocess_nmt("Run!\tCours\u202f!") == "run !\tcours !"
    assert preprocess_nmt("Hi,you.") == "hi ,you ."
    f = tmp_path / "fra.txt"
    f.write_text("Go.\tVa !\tCC-BY 2.0 (France) Attribution: tatoeba.org #2877272\nI lost.\tJ'ai perdu.\n",
                 encoding="utf-8")
    src, tgt = text.read_fra_eng(f)
    assert src == [["go", "."], ["i", "lost", "."]] and tgt == [["va", "!"], ["j'ai", "perdu", "."]]
    assert text.read_fra_eng(f, limit=1) == ([["go", "."]], [["va", "!"]])


# -- language-model samplers ------------------------------------------------------------------------


def lm_batches(corpus_len, B, T, sampler, seed=0, epoch=0, train=True, **kw):
    import torch

    loader = LMLoader(torch.arange(corpus_len), B, T, sampler=sampler, train=train,
                      generator=torch.Generator().manual_seed(seed), **kw)
    order = loader.order(epoch)
    return loader, [loader.batch(order, i) for i in range(loader.steps_per_epoch)]


def test_random_sampler_shapes_targets_and_coverage():
    loader, batches = lm_batches(100, 4, 5, "random")
    assert loader.steps_per_epoch == len(batches) == 4  # (100 - 4 - 1) // 5 = 19 windows -> 4 batches of 4
    starts = []
    for X, Y, fresh in batches:
        assert X.shape == Y.shape == (4, 5) and fresh  # unrelated batches: every one starts afresh
        assert (Y == X + 1).all() and (X.diff(dim=1) == 1).all()  # contiguous, shifted by one
        starts += X[:, 0].tolist()
    assert len(set(starts)) == len(starts)  # no window twice in an epoch
    assert len({s % 5 for s in starts}) == 1  # all on one grid, fixed by the random offset
    _, again = lm_batches(100, 4, 5, "random")
    assert all((a[0] == b[0]).all() for a, b in zip(again, batches))  # reproducible by seed
    offsets = set()
    for seed in range(20):  # every offset keeps the same number of batches
        loader, batches = lm_batches(100, 4, 5, "random", seed=seed)
        assert len(batches) == 4
        offsets.add(int(batches[0][0][0, 0]) % 5)
    assert len(offsets) > 1


def test_sequential_batches_continue_each_other():
    loader, batches = lm_batches(1000, 8, 7, "sequential", seed=3)
    assert len(batches) == loader.steps_per_epoch == (1000 - 6 - 1) // 8 // 7
    for (X0, _, _), (X1, _, fresh) in zip(batches, batches[1:]):
        assert X0.shape == X1.shape == (8, 7) and not fresh
        assert (X1[:, 0] == X0[:, -1] + 1).all()  # row b of batch i+1 continues row b of batch i
    assert batches[0][2]  # the epoch's first batch starts afresh
    for X, Y, _ in batches:
        assert (Y == X + 1).all()
    _, evaluation = lm_batches(1000, 8, 7, "random", train=False)  # evaluation: sequential from offset 0
    assert evaluation[0][0][0, 0] == 0 and (evaluation[1][0][:, 0] == evaluation[0][0][:, -1] + 1).all()
    _, short = lm_batches(30, 8, 7, "sequential", train=False)  # a short text: fewer rows, not no batch
    assert len(short) == 1 and short[0][0].shape == (4, 7)


def test_lm_ranks_take_their_rows_of_every_batch():
    import torch

    _, whole = lm_batches(1000, 8, 7, "sequential", seed=3)
    shards = [lm_batches(1000, 8, 7, "sequential", seed=3, rank=r, world=2)[1] for r in range(2)]
    for i, (X, Y, fresh) in enumerate(whole):
        torch.testing.assert_close(torch.cat([shards[0][i][0], shards[1][i][0]]), X)
        assert shards[1][i][0].shape == (4, 7) and shards[1][i][2] == fresh


# -- translation, classification batches, splits -------------------------------------------------------


def test_truncate_pad_and_nmt_arrays_with_valid_lengths():
    assert truncate_pad([1, 2, 3], 5, 0) == [1, 2, 3, 0, 0] and truncate_pad([1, 2, 3], 2, 0) == [1, 2]
    vocab = Vocab([["a", "b", "c"]], reserved_tokens=["<pad>", "<bos>", "<eos>"])
    arr, valid = build_array_nmt([["a"], ["a", "b", "c"], ["c", "b", "a", "a", "b"]], vocab, 4)
    eos, pad = vocab["<eos>"], vocab["<pad>"]
    assert arr.shape == (3, 4) and valid.tolist() == [2, 4, 4]
    assert arr[0].tolist() == [vocab["a"], eos, pad, pad] and arr[1, 3] == eos
    assert eos not in arr[2].tolist()  # truncated: no room for <eos>
    X, lengths = pad_batch([[5, 6], [7], []], pad=0)
    assert X.tolist() == [[5, 6], [7, 0], [0, 0]] and lengths.tolist() == [2, 1, 1]


def test_splits_are_disjoint_fixed_by_seed_and_stratified():
    labels = np.array([0] * 70 + [1] * 30)
    a = split_indices(100, {"test": 0.2, "valid": 10, "train": -1}, seed=5, labels=labels)
    assert [len(a[k]) for k in ("test", "valid", "train")] == [20, 10, 70]
    assert sorted(np.concatenate(list(a.values())).tolist()) == list(range(100))
    assert labels[a["test"]].sum() == 6  # 30 % positives, as in the whole
    b = split_indices(100, {"test": 0.2, "valid": 10, "train": -1}, seed=5, labels=labels)
    c = split_indices(100, {"test": 0.2, "valid": 10, "train": -1}, seed=6, labels=labels)
    assert all((a[k] == b[k]).all() for k in a) and not (a["test"] == c["test"]).all()
    with pytest.raises(UsageError, match="need 120"):
        split_indices(100, {"a": 60, "b": 60}, 0)
    rec = text.splits_record(a, seed=5)
    assert rec["sizes"] == {"test": 20, "valid": 10, "train": 70} and rec["indices"]["test"] == a["test"].tolist()


def test_translation_split_holds_out_whole_english_sentences(offline_data):
    data = text.load_translation(2000, 10, test_size=100, val_size=50, seed=0)
    src, src_valid, tgt, tgt_valid = data.arrays["train"]
    train_sentences = {" ".join(data.src_vocab.to_tokens(row[: n - 1].tolist())) for row, n in zip(src, src_valid)}
    held = {" ".join(s) for s in data.test_sources}
    assert len(held) == 100 and not held & train_sentences
    assert all(len(refs) >= 1 for refs in data.test_references)
    assert sum(map(len, data.test_references)) >= 100  # several translations per sentence are kept
    assert (src_valid <= 10).all() and (tgt_valid >= 2).all()  # at least one token + <eos>
    assert data.record["sizes"]["test"] == 100 and data.split_of["go ."] in ("train", "val", "test")


# -- skip-gram -----------------------------------------------------------------------------------------


def test_subsampling_thins_frequent_words_and_drops_unk():
    rng = np.random.default_rng(0)
    counts = np.array([50.0, 1_000_000.0, 50.0])  # <unk>, a very frequent word, a rare one (f < t)
    sentences = [np.array([0, 1, 2] * 100)]
    kept = subsample(sentences, counts, rng, t=1e-4)[0]
    assert 0 not in kept and (kept == 2).sum() == 100  # rare: all kept
    assert (kept == 1).sum() < 20  # frequent: keep prob sqrt(1e-4 / f) = 1 %


def test_skipgram_examples_windows_masks_and_noise():
    rng = np.random.default_rng(1)
    sentences = [np.array([1, 2, 3, 4, 5]), np.array([6, 7]), np.array([8])]
    ex = skipgram_examples(sentences, max_window=2, num_noise=3, noise_weights=np.ones(10), rng=rng)
    L = 2 * 2 * (1 + 3)
    assert ex["contexts_negatives"].shape == ex["mask"].shape == ex["labels"].shape == (7, L)  # 8 has no context
    for center, row, mask in zip(ex["centers"], ex["contexts_negatives"], ex["mask"]):
        ctx = row[:4][mask[:4] > 0]
        same = [s for s in sentences if center in s][0].tolist()
        assert set(ctx) <= set(same) - {center} and len(ctx) >= 1
        assert all(abs(same.index(c) - same.index(center)) <= 2 for c in ctx)
        assert mask[4:].sum() == 3 * len(ctx)  # K noise words per context
    assert (ex["labels"][:, :4] == 1).all() and (ex["labels"][:, 4:] == 0).all()
