"""Text data, d2l-style and small: tokenisers, a vocabulary, the corpus readers, translation
arrays and seeded splits.

    lines --tokenize--> tokens --Vocab--> ids
    LM:  one long id sequence (lm_corpus) -> data/lm.py's LMLoader (torch) -> (X, Y) (B, T)
    MT:  (source, target) token lists -> build_array_nmt -> ids (N, T) + valid lengths (N,)
    classification: token lists -> pad_batch -> ids (N, T) + lengths (N,)

Everything here is NumPy (no torch), so arrays and splits are checked without a model. Every
random choice takes a ``numpy.random.Generator``: a run seeds one and checkpoints its state.
Encodings are explicit: the lyrics zip is UTF-8, rt-polarity is cp1252, everything else UTF-8.
"""

from __future__ import annotations

import collections
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from practicum.data.cache import fetch_file
from practicum.errors import PracticumError, UsageError

# ---------------------------------------------------------------------------------------------
# Tokenisers and vocabulary


def tokenize(lines: Iterable[str], token: str = "word") -> list[list[str]]:
    """Each line -> its words (split on whitespace) or its characters (spaces included)."""
    if token == "word":
        return [line.split() for line in lines]
    if token == "char":
        return [list(line) for line in lines]
    raise UsageError(f"unknown token type '{token}': use 'word' or 'char'")


def count_corpus(tokens) -> collections.Counter:
    """Token frequencies of a flat or a nested (list of lines) token list."""
    if tokens and isinstance(tokens[0], (list, tuple)):
        tokens = [t for line in tokens for t in line]
    return collections.Counter(tokens)


class Vocab:
    """Token <-> index. Index 0 is ``<unk>``, then the reserved tokens, then tokens by falling
    frequency (ties alphabetical, so the order never depends on input order); tokens seen fewer
    than ``min_freq`` times map to ``<unk>``."""

    unk = 0

    def __init__(self, tokens=(), min_freq: int = 0, reserved_tokens: Sequence[str] = ()):
        counter = count_corpus(list(tokens))
        self.token_freqs = sorted(counter.items(), key=lambda kv: (-kv[1], kv[0]))
        self.idx_to_token = ["<unk>"] + [t for t in dict.fromkeys(reserved_tokens) if t != "<unk>"]
        self.token_to_idx = {t: i for i, t in enumerate(self.idx_to_token)}
        for token, freq in self.token_freqs:
            if freq < min_freq:
                break
            if token not in self.token_to_idx:
                self.token_to_idx[token] = len(self.idx_to_token)
                self.idx_to_token.append(token)

    def __len__(self) -> int:
        return len(self.idx_to_token)

    def __getitem__(self, tokens):
        """A token -> its index; a list or tuple of tokens -> a list of indices."""
        if isinstance(tokens, (list, tuple)):
            return [self.token_to_idx.get(t, self.unk) for t in tokens]
        return self.token_to_idx.get(tokens, self.unk)

    def __contains__(self, token) -> bool:
        return token in self.token_to_idx

    def to_tokens(self, indices):
        if isinstance(indices, (list, tuple, np.ndarray)):
            return [self.idx_to_token[int(i)] for i in indices]
        return self.idx_to_token[int(indices)]

    # saved next to a run's weights, so embeddings can be reused by token
    def to_json(self) -> dict:
        return {"idx_to_token": self.idx_to_token}

    @classmethod
    def from_json(cls, data: dict) -> "Vocab":
        vocab = cls()
        vocab.idx_to_token = list(data["idx_to_token"])
        vocab.token_to_idx = {t: i for i, t in enumerate(vocab.idx_to_token)}
        return vocab


# ---------------------------------------------------------------------------------------------
# Corpus readers (files come verified from practicum.data.cache)


def decode(data: bytes, encoding: str, source: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as e:
        raise PracticumError(f"{source}: not valid {encoding} at byte {e.start} ({e.reason})") from None


def read_zip_member(path, member: str | None = None) -> tuple[str, bytes]:
    """(name, bytes) of ``member`` (default: the only file) of a zip archive."""
    with zipfile.ZipFile(path) as z:
        names = [n for n in z.namelist() if not n.endswith("/")]
        name = member or (names[0] if len(names) == 1 else None)
        if name is None or name not in names:
            raise PracticumError(f"{path}: no member {member!r} (has {', '.join(names[:5])})")
        return name, z.read(name)


def read_jaychou() -> str:
    """The lyrics as one string, line breaks turned into spaces (as d2l-zh v1 does)."""
    path = fetch_file("jaychou-lyrics", "jaychou_lyrics.txt.zip")
    name, data = read_zip_member(path)
    text = decode(data, "utf-8", f"{path}:{name}")
    return text.replace("\n", " ").replace("\r", " ")


def read_timemachine() -> str:
    """The book, lower-cased, every run of non-letters one space (d2l 1.0): 26 letters + space."""
    path = fetch_file("timemachine", "timemachine.txt")
    text = decode(path.read_bytes(), "utf-8", str(path))
    return re.sub("[^A-Za-z]+", " ", text).lower().strip()


def read_ptb(split: str = "train") -> list[list[str]]:
    """Penn Treebank sentences (Mikolov's preprocessing: lower case, <unk>, N for numbers)."""
    if split not in ("train", "valid", "test"):
        raise UsageError(f"ptb has no split '{split}': use train, valid or test")
    path = fetch_file("ptb", f"ptb.{split}.txt")
    return [line.split() for line in decode(path.read_bytes(), "utf-8", str(path)).split("\n")
            if line.strip()]


def preprocess_nmt(text: str) -> str:
    """d2l's clean-up: non-breaking spaces -> spaces, lower case, a space before , . ! ?"""
    text = text.replace("\u202f", " ").replace("\xa0", " ").lower()
    return re.sub(r"(?<=[^ ])([,.!?])", r" \1", text)  # d2l: a mark not after a space gets one


def read_fra_eng(path=None, limit: int | None = None) -> tuple[list[list[str]], list[list[str]]]:
    """(English, French) token lists, one pair per line of fra.txt, the first ``limit`` lines
    (the file is sorted by English length, so those are the shortest). A third column -- the
    attribution in newer Tatoeba releases -- is ignored."""
    path = path or fetch_file("fra-eng", "fra.txt")
    lines = decode(Path(path).read_bytes(), "utf-8", str(path)).split("\n")
    source, target = [], []
    for n, line in enumerate(lines):
        if limit is not None and len(source) >= limit:
            break
        if not line.strip():
            continue
        parts = preprocess_nmt(line).split("\t")
        if len(parts) < 2:
            raise PracticumError(f"{path}: line {n + 1} has no tab-separated translation")
        source.append(parts[0].split())
        target.append(parts[1].split())
    return source, target


def read_rt_polarity() -> tuple[list[list[str]], np.ndarray]:
    """Pang & Lee's 10,662 snippets (cp1252 bytes) as word lists, labels 1 = positive."""
    texts, labels = [], []
    for label, name in ((1, "rt-polarity.pos"), (0, "rt-polarity.neg")):
        path = fetch_file("rt-polarity", name)
        lines = decode(path.read_bytes(), "cp1252", str(path)).splitlines()
        texts += [line.split() for line in lines if line.strip()]
        labels += [label] * sum(1 for line in lines if line.strip())
    return texts, np.array(labels, dtype=np.int64)


def tokenize_review(text: str) -> list[str]:
    """IMDb reviews: lower case, HTML breaks out, punctuation split off the words."""
    text = text.replace("<br />", " ").lower()
    return re.findall(r"[a-z0-9]+(?:'[a-z]+)?|[!?.,;:()\"-]", text)


def read_imdb_tiny(split: str) -> tuple[list[list[str]], np.ndarray]:
    """d2l's aclImdb tiny sample (10 pos + 10 neg per split), sorted by file name."""
    if split not in ("train", "test"):
        raise UsageError(f"aclimdb-tiny has no split '{split}': use train or test")
    path = fetch_file("aclimdb-tiny", "aclImdb_tiny.zip")
    texts, labels = [], []
    with zipfile.ZipFile(path) as z:
        for label, folder in ((1, "pos"), (0, "neg")):
            prefix = f"aclImdb_tiny/{split}/{folder}/"
            for name in sorted(n for n in z.namelist() if n.startswith(prefix) and n.endswith(".txt")):
                texts.append(tokenize_review(decode(z.read(name), "utf-8", f"{path}:{name}")))
                labels.append(label)
    return texts, np.array(labels, dtype=np.int64)


# ---------------------------------------------------------------------------------------------
# Language-model corpora (their batches: data/lm.py)


def lm_corpus(name: str, token: str = "char", max_tokens: int | None = None) -> tuple[np.ndarray, Vocab]:
    """(ids (N,) int64, vocab) of a whole corpus: ``jaychou`` or ``timemachine``."""
    readers = {"jaychou": read_jaychou, "timemachine": read_timemachine}
    if name not in readers:
        raise UsageError(f"unknown language-model corpus '{name}': use {' or '.join(readers)}")
    text = readers[name]()
    tokens = tokenize([text], token)[0]
    if max_tokens:
        tokens = tokens[:max_tokens]
    vocab = Vocab(tokens)
    return np.array(vocab[tokens], dtype=np.int64), vocab


# ---------------------------------------------------------------------------------------------
# Translation and classification batches


def truncate_pad(line: list[int], num_steps: int, pad: int) -> list[int]:
    """Cut to ``num_steps`` or pad with ``pad`` up to it."""
    return line[:num_steps] if len(line) > num_steps else line + [pad] * (num_steps - len(line))


def build_array_nmt(lines: list[list[str]], vocab: Vocab, num_steps: int) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, num_steps), valid lengths (N,)): each line + <eos>, truncated or padded.
    The valid length counts <eos> and never the padding."""
    pad, eos = vocab["<pad>"], vocab["<eos>"]
    rows = [truncate_pad(vocab[line] + [eos], num_steps, pad) for line in lines]
    array = np.array(rows, dtype=np.int64).reshape(len(rows), num_steps)
    return array, (array != pad).sum(1).astype(np.int64)


def pad_batch(lines: list[list[int]], pad: int, max_len: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(ids (N, T), lengths (N,)) with T the longest line (capped at ``max_len``); at least 1."""
    lengths = np.array([min(len(l), max_len or len(l)) for l in lines], dtype=np.int64)
    width = max(1, int(lengths.max(initial=1)))
    out = np.full((len(lines), width), pad, dtype=np.int64)
    for i, (line, n) in enumerate(zip(lines, lengths)):
        out[i, :n] = line[:n]
    return out, np.maximum(lengths, 1)


# ---------------------------------------------------------------------------------------------
# Splits: fixed by seed and recorded in the run


def split_indices(n: int, sizes: dict[str, int | float], seed: int,
                  labels: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Disjoint index sets over ``range(n)``, drawn with ``seed``: ``sizes`` maps a split's name to
    a count or a fraction of n; the last split whose size is ``-1`` takes the rest. With
    ``labels`` the split is stratified (each split keeps the class proportions)."""
    counts = {k: (int(round(v * n)) if isinstance(v, float) else int(v)) for k, v in sizes.items()}
    rest = [k for k, v in counts.items() if v < 0]
    if len(rest) > 1:
        raise UsageError("split_indices: only one split may take the rest (-1)")
    fixed = sum(v for v in counts.values() if v >= 0)
    if fixed > n:
        raise UsageError(f"split sizes {counts} need {fixed} items; there are {n}")
    if rest:
        counts[rest[0]] = n - fixed
    rng = np.random.default_rng(seed)
    if labels is None:
        order = rng.permutation(n)
    else:  # interleave the classes' shuffled lists, so any prefix keeps the class shares
        groups = [rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)]
        keys = np.concatenate([(np.arange(len(g)) + rng.random()) / len(g) for g in groups])
        order = np.concatenate(groups)[np.argsort(keys, kind="stable")]
    out, start = {}, 0
    for name, count in counts.items():
        out[name] = np.sort(order[start: start + count])
        start += count
    return out


def splits_record(splits: dict[str, np.ndarray], **info) -> dict:
    """What a run writes to splits.json: sizes, how they were made, and every index."""
    return {**info, "sizes": {k: int(len(v)) for k, v in splits.items()},
            "indices": {k: [int(i) for i in v] for k, v in splits.items()}}


# ---------------------------------------------------------------------------------------------
# The translation data set: fra-eng pairs, split by English sentence


@dataclass
class TranslationData:
    """Arrays for training, and the held-out sentences with *all* their references.

    Tatoeba often gives one English sentence several French translations; the split is made over
    distinct English sentences, so no test sentence is ever seen in training, and a test
    sentence's references are all its translations in the pool."""

    src_vocab: Vocab
    tgt_vocab: Vocab
    num_steps: int
    arrays: dict[str, tuple[np.ndarray, ...]]  # train, val: src, src_valid, tgt, tgt_valid
    test_sources: list[list[str]]
    test_references: list[list[list[str]]]
    split_of: dict[str, str]  # English sentence (space-joined) -> split
    record: dict  # for splits.json


def load_translation(num_pairs: int | None, num_steps: int, test_size: int, val_size: int, seed: int,
                     min_freq: int = 2, drop_longer: bool = True, path=None) -> TranslationData:
    """The first ``num_pairs`` pairs of fra.txt (the shortest: the file is sorted by length).
    ``drop_longer`` drops pairs that do not fit ``num_steps`` with their <eos> (else d2l's
    truncation). Vocabularies come from the training pairs only, with <pad> <bos> <eos>."""
    source, target = read_fra_eng(path, num_pairs)
    pairs = list(zip(source, target))
    if drop_longer:
        pairs = [(s, t) for s, t in pairs if len(s) < num_steps and len(t) < num_steps]
    groups: dict[str, list[int]] = {}
    for i, (s, _) in enumerate(pairs):
        groups.setdefault(" ".join(s), []).append(i)
    sentences = list(groups)  # distinct English sentences, in file order
    if test_size + val_size >= len(sentences):
        raise UsageError(f"data: {len(sentences)} distinct English sentences cannot give test_size {test_size} "
                         f"+ val_size {val_size} and leave any for training (raise num_pairs)")
    splits = split_indices(len(sentences), {"test": test_size, "val": val_size, "train": -1}, seed)
    split_of = {sentences[i]: name for name, idx in splits.items() for i in idx}
    members = {name: [p for i in idx for p in groups[sentences[i]]] for name, idx in splits.items()}
    reserved = ["<pad>", "<bos>", "<eos>"]
    src_vocab = Vocab([pairs[p][0] for p in members["train"]], min_freq, reserved)
    tgt_vocab = Vocab([pairs[p][1] for p in members["train"]], min_freq, reserved)
    arrays = {}
    for name in ("train", "val"):
        src, src_valid = build_array_nmt([pairs[p][0] for p in members[name]], src_vocab, num_steps)
        tgt, tgt_valid = build_array_nmt([pairs[p][1] for p in members[name]], tgt_vocab, num_steps)
        arrays[name] = (src, src_valid, tgt, tgt_valid)
    test_sources = [sentences[i].split() for i in splits["test"]]
    test_references = [[pairs[p][1] for p in groups[sentences[i]]] for i in splits["test"]]
    record = splits_record(splits, seed=seed, how="distinct English sentences drawn with the seed; "
                           "indices into 'sentences' (file order)", pairs=len(pairs),
                           pairs_per_split={k: len(v) for k, v in members.items()},
                           num_pairs=num_pairs, num_steps=num_steps, drop_longer=drop_longer,
                           src_vocab=len(src_vocab), tgt_vocab=len(tgt_vocab))
    record["sentences"] = sentences
    return TranslationData(src_vocab, tgt_vocab, num_steps, arrays, test_sources, test_references, split_of, record)


# ---------------------------------------------------------------------------------------------
# Skip-gram examples (word2vec): subsampling, context windows, negative samples


def subsample(sentences: list[np.ndarray], counts: np.ndarray, rng: np.random.Generator,
              t: float = 1e-4) -> list[np.ndarray]:
    """Drop each occurrence of word w with probability 1 - sqrt(t / f(w)) (d2l; Mikolov et al. 2013),
    f(w) = its share of all tokens: frequent words ("the", "a") are thinned, rare ones always kept.
    Index 0 (<unk>) is always dropped, as d2l does."""
    freq = counts / counts.sum()
    keep_p = np.minimum(1.0, np.sqrt(t / np.maximum(freq, 1e-12)))
    keep_p[0] = 0.0
    return [s[rng.random(len(s)) < keep_p[s]] for s in sentences]


def skipgram_examples(sentences: list[np.ndarray], max_window: int, num_noise: int, noise_weights: np.ndarray,
                      rng: np.random.Generator) -> dict[str, np.ndarray]:
    """One example per center word that has a context: for each center a window size w is drawn
    from 1..max_window, its contexts are the words within w in the same sentence, and
    ``num_noise`` noise words per context are drawn from ``noise_weights`` (unnormalised).

    Returns ``centers`` (N,), ``contexts_negatives`` (N, L), ``mask`` (N, L) (1 = a real slot),
    ``labels`` (N, L) (1 = a context, 0 = noise); L = 2 max_window (1 + num_noise) -- d2l's 60.
    Columns: the 2W context slots (offsets -W..-1, 1..W), then the noise slots; the first
    (number of contexts) x num_noise noise slots are used. Noise equal to a context is kept
    (word2vec's C code keeps it too; d2l redraws it)."""
    ids = np.concatenate(sentences) if sentences else np.zeros(0, np.int64)
    sent = np.repeat(np.arange(len(sentences)), [len(s) for s in sentences])
    N, W = len(ids), max_window
    windows = rng.integers(1, W + 1, size=N)  # (N,)
    offsets = np.concatenate([np.arange(-W, 0), np.arange(1, W + 1)])  # (2W,)
    pos = np.arange(N)[:, None] + offsets  # (N, 2W)
    inside = (pos >= 0) & (pos < N)
    pos_c = np.clip(pos, 0, max(N - 1, 0))
    ctx_mask = inside & (np.abs(offsets) <= windows[:, None]) & (sent[pos_c] == sent[:, None])
    n_ctx = ctx_mask.sum(1)
    has = n_ctx > 0
    ids_c, ctx_mask, n_ctx = ids[has], ctx_mask[has], n_ctx[has]
    contexts = np.where(ctx_mask, ids[pos_c[has]], 0)
    noise_mask = np.arange(2 * W * num_noise)[None, :] < (n_ctx * num_noise)[:, None]  # (N, 2WK)
    cdf = np.cumsum(noise_weights / noise_weights.sum())
    noise = np.zeros(noise_mask.shape, dtype=ids.dtype)
    draws = np.searchsorted(cdf, rng.random(int(noise_mask.sum())) * cdf[-1], side="right")
    noise[noise_mask] = np.minimum(draws, len(cdf) - 1)  # inverse-CDF sampling, only where needed
    return {
        "centers": ids_c,
        "contexts_negatives": np.concatenate([contexts, noise], 1),
        "mask": np.concatenate([ctx_mask, noise_mask], 1).astype(np.float32),
        "labels": np.concatenate([np.ones_like(ctx_mask), np.zeros_like(noise_mask)], 1).astype(np.float32),
    }


def cbow_examples(ex: dict[str, np.ndarray], max_window: int, num_noise: int) -> dict[str, np.ndarray]:
    """CBOW examples from one ``skipgram_examples`` draw, so both models see the same windows and
    noise: per center word, its context words predict it against ``num_noise`` noise words.

    Returns ``contexts`` (N, 2W) and ``context_mask`` (N, 2W) (1 = a real context; every row has
    one), ``targets`` (N, 1 + K) = the center word then the first K of its noise words (a center
    with c contexts drew c K of them, so K always exist), and ``labels`` (N, 1 + K) = 1, 0, ..., 0."""
    W2 = 2 * max_window
    centers = ex["centers"]
    noise = ex["contexts_negatives"][:, W2:W2 + num_noise]  # (N, K)
    labels = np.zeros((len(centers), 1 + num_noise), np.float32)
    labels[:, 0] = 1.0
    return {
        "contexts": ex["contexts_negatives"][:, :W2],
        "context_mask": ex["mask"][:, :W2],
        "targets": np.concatenate([centers[:, None], noise], 1),
        "labels": labels,
    }


# ---------------------------------------------------------------------------------------------
# GloVe: the word-word co-occurrence counts


def cooccurrence(sentences: list[np.ndarray], vocab_size: int, window: int,
                 distance_weighting: bool = True) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
    """GloVe's sparse co-occurrence matrix X (Pennington et al. 2014; d2l 15.5), as three tensors:
    rows i (M,), columns j (M,) int64 and values x_ij (M,) float32, one entry per nonzero.

    x_ij adds up, over every occurrence of word i, the words j within ``window`` positions of it in
    the same sentence; each pair counts 1/d for words d apart (GloVe's distance weighting: far
    words say less about each other), or 1 with ``distance_weighting`` off. X is symmetric (a pair
    counts from both ends). Built once, vectorised: one shifted comparison per distance d, then
    ``torch.unique`` over the flat keys i * V + j sums the duplicates."""
    import torch

    lengths = [len(s) for s in sentences]
    flat = np.concatenate(sentences).astype(np.int64) if sentences else np.zeros(0, np.int64)
    ids = torch.from_numpy(flat)
    sent = torch.repeat_interleave(torch.arange(len(sentences)), torch.tensor(lengths, dtype=torch.long))
    keys, weights = [], []
    for d in range(1, window + 1):
        same = sent[:-d] == sent[d:]  # (N - d,): the pair (t, t + d) lies inside one sentence
        a, b = ids[:-d][same], ids[d:][same]
        w = torch.full((2 * len(a),), 1.0 / d if distance_weighting else 1.0, dtype=torch.float64)
        keys += [a * vocab_size + b, b * vocab_size + a]  # both directions
        weights.append(w)
    if not keys:
        empty = torch.zeros(0, dtype=torch.long)
        return empty, empty, torch.zeros(0)
    flat, inverse = torch.unique(torch.cat(keys), return_inverse=True)  # sorted: row-major order
    x = torch.zeros(len(flat), dtype=torch.float64).index_add_(0, inverse, torch.cat(weights))
    return flat // vocab_size, flat % vocab_size, x.float()
