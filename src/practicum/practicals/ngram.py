"""Seed 003, task 02 / D2L 9.3: n-gram statistics and smoothed n-gram language models, beside
the RNN language models on the same held-out text.

Statistics (the whole text the models use, tokenised by ``stats.token``: D2L counts the words of
The Time Machine; the lyrics are counted by character):
- unigram, bigram and trigram frequency tables (``1_unigrams`` ... ``3_trigrams``);
- Zipf's law: the frequency of the r-th most frequent n-gram falls like f ~ r^-a. The exponent
  is the least-squares slope of log f = -a log r + c over the ranks where the law holds: from
  ``stats.zipf_min_rank`` (the first few, "the", "and", ..., lie below the line) up to the last
  n-gram seen at least ``stats.zipf_min_count`` times (below that the counts are 1, 2, ... over
  long runs of ties, the flat steps of the tail). Table ``4_zipf``, figure ``zipf``.

Models, written from scratch (token counts in dictionaries, as a reader would on paper), every
one a proper distribution over the whole vocabulary (the tests check the sums):
- ``add-k`` (k = 1: Laplace): P(w | h) = (c(h w) + k) / (c(h) + k V);
- ``kneser-ney``: interpolated Kneser-Ney with one discount D (Chen & Goodman 1998),

      P(w | h) = max(c(h w) - D, 0) / c(h) + D N1+(h .) / c(h) * P_lower(w | h')

  where h' drops h's first token and c(h) is the sum of c(h w) over w. The lower orders count
  *continuations*: c(g) is replaced by N1+(. g), the number of distinct tokens seen before g (a
  token that only ever follows one other, "Francisco", gets little unigram mass). Below the
  unigram: uniform 1/V. A history never seen passes its whole mass down.

The split is language_model's (``held_out_cut``: the corpus' tail ``data.val_fraction``, the
same characters the RNNs validate on; vocabulary of the whole text, as theirs). Counts come from
the training part only. Validation scores exactly the RNN's targets: the held-out text cut into
``data.eval_batch_size`` rows read in ``data.num_steps`` windows (data/lm.py's LMLoader, given
positions instead of ids), each token predicted from at most n - 1 tokens before it *in its row*
(the RNN's state starts afresh at each row start). Perplexity = exp(mean -log P).

Beside them (table ``5_perplexity``) the best validation perplexity of every model of the latest
finished run of ``compare.lm_run`` whose data settings are these -- or a note naming the command
that would make one. The summary's ``val/perplexity`` is the best n-gram model's, picked on
this validation text as the RNNs' numbers are their best epoch on it; every model's is there too
(``val/perplexity_kn_5``, ``val/perplexity_add-0.1_3``, ...), and ``zipf/alpha_1..3``.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, field_validator

from practicum import fileio
from practicum.config import Experiment, Section, read_toml
from practicum.store import Run


class Data(Section):
    corpus: Literal["jaychou", "timemachine"] = "timemachine"
    token: Literal["char", "word"] = Field("char", description="the models' tokens (the RNNs': char)")
    max_tokens: int | None = Field(None, gt=0, description="use the first N tokens (as language_model)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the corpus' tail held out as split 'val'")
    num_steps: int = Field(35, gt=0, description="the RNNs' window: validation is scored on their targets")
    eval_batch_size: int = Field(32, gt=0, description="the RNNs' evaluation rows (language_model's "
                                 "train.eval_batch_size)")


class Stats(Section):
    token: Literal["word", "char"] = Field("word", description="tokens counted (D2L: the words)")
    top: int = Field(10, gt=0, description="rows of each frequency table")
    zipf_min_rank: int = Field(10, ge=1, description="the fit starts at this rank")
    zipf_min_count: int = Field(3, ge=1, description="... and ends at the last n-gram seen this often")


class Models(Section):
    orders: list[int] = Field([1, 2, 3, 4, 5], min_length=1, description="n of the n-gram models")
    add_k: list[float] = Field([1.0, 0.1, 0.01], description="k of the add-k models (1: Laplace)")
    discount: float = Field(0.75, gt=0, le=1, description="Kneser-Ney's D")

    @field_validator("orders")
    @classmethod
    def _positive(cls, orders: list[int]) -> list[int]:
        if any(n < 1 for n in orders):
            raise ValueError("every order is at least 1")
        return sorted(set(orders))

    @field_validator("add_k")
    @classmethod
    def _k(cls, ks: list[float]) -> list[float]:
        if any(k <= 0 for k in ks):
            raise ValueError("every k is > 0 (k = 0 gives unseen n-grams probability 0)")
        return ks


class Compare(Section):
    lm_run: str | None = Field("latest:lm-timemachine", description="the RNN run to show beside: a run id "
                               "(or prefix), latest:<experiment> (its latest finished run with these data "
                               "settings), or nothing")


class Config(Experiment):
    version = 1

    data: Data = Data()
    stats: Stats = Stats()
    models: Models = Models()
    compare: Compare = Compare()


# -- counting ----------------------------------------------------------------------------------


def ngrams(tokens, n: int) -> Counter:
    """Counts of the n-grams (tuples) of a token sequence."""
    return Counter(tuple(tokens[i: i + n]) for i in range(len(tokens) - n + 1))


def zipf_fit(counts: list[int], min_rank: int, min_count: int) -> tuple[float, float, int, int]:
    """(a, c, first rank, last rank) of log f = -a log r + c by least squares over ranks
    [min_rank, last rank with f >= min_count] of counts sorted high to low (natural logs)."""
    f = np.sort(np.asarray(counts, float))[::-1]
    last = int(np.sum(f >= min_count))
    if last - min_rank + 1 < 2:
        return math.nan, math.nan, min_rank, last
    r = np.arange(min_rank, last + 1)
    slope, c = np.polyfit(np.log(r), np.log(f[min_rank - 1: last]), 1)
    return float(-slope), float(c), min_rank, last


# -- the models ----------------------------------------------------------------------------------


class Table:
    """Counts c(g) of the n-grams of one order, with per history h = g[:-1]: the total c(h) =
    sum over w of c(h w), and N1+(h .), the number of distinct w with c(h w) > 0."""

    def __init__(self, counts: dict):
        self.counts = counts
        self.total: dict = defaultdict(int)
        self.types: dict = defaultdict(int)
        for g, c in counts.items():
            self.total[g[:-1]] += c
            self.types[g[:-1]] += 1


class AddK:
    """P(w | h) = (c(h w) + k) / (c(h) + k V); a history shorter than n - 1 (a row's first
    tokens) uses the order it has."""

    def __init__(self, ids, n: int, k: float, vocab_size: int):
        self.n, self.k, self.V = n, k, vocab_size
        self.tables = {m: Table(ngrams(ids, m)) for m in range(1, n + 1)}

    def prob(self, history: tuple, w: int) -> float:
        h = history[len(history) - (self.n - 1):] if self.n > 1 else ()
        t = self.tables[len(h) + 1]
        return (t.counts.get(h + (w,), 0) + self.k) / (t.total.get(h, 0) + self.k * self.V)


class KneserNey:
    """Interpolated Kneser-Ney with one discount D (see the module docstring). The order a query
    starts at uses raw counts; every lower order, continuation counts N1+(. g)."""

    def __init__(self, ids, n: int, discount: float, vocab_size: int):
        self.n, self.D, self.V = n, discount, vocab_size
        raw = {m: ngrams(ids, m) for m in range(1, n + 1)}
        self.raw = {m: Table(c) for m, c in raw.items()}
        # N1+(. g) for every g of order m < n: each distinct (m+1)-gram x g adds one to g
        self.cont = {m: Table(Counter(g[1:] for g in raw[m + 1])) for m in range(1, n)}

    def prob(self, history: tuple, w: int) -> float:
        h = history[len(history) - (self.n - 1):] if self.n > 1 else ()
        return self._p(h, w, self.raw[len(h) + 1])

    def _p(self, h: tuple, w: int, t: Table) -> float:
        lower = self._p(h[1:], w, self.cont[len(h)]) if h else 1.0 / self.V
        total = t.total.get(h, 0)
        if total == 0:  # a history never seen: all its mass to the lower order
            return lower
        return (max(t.counts.get(h + (w,), 0) - self.D, 0) + self.D * t.types[h] * lower) / total


def build_models(cfg: Models, ids, vocab_size: int) -> dict:
    """name -> model, in table order: add-k for every k, then Kneser-Ney, each for every order."""
    models = {}
    for n in cfg.orders:
        for k in cfg.add_k:
            models[f"add-{k:g} {n}-gram"] = AddK(ids, n, k, vocab_size)
        models[f"kneser-ney {n}-gram"] = KneserNey(ids, n, cfg.discount, vocab_size)
    return models


def val_targets(n_val: int, batch_size: int, num_steps: int) -> list[tuple[int, int]]:
    """(position, row start) of every token the RNN's evaluation predicts in a held-out text of
    n_val tokens: data/lm.py's evaluation order run over the positions themselves."""
    import torch

    from practicum.data.lm import LMLoader

    loader = LMLoader(torch.arange(n_val), batch_size, num_steps, train=False)
    out, starts = [], None
    for X, Y, fresh in loader:  # (B, T) positions of the inputs, of the targets
        if fresh:
            starts = X[:, 0].tolist()  # each row's first token: its state starts there
        out += [(int(p), s) for row, s in zip(Y.tolist(), starts) for p in row]
    return out


def perplexity(model, val, targets: list[tuple[int, int]], n: int) -> float:
    """exp(mean -log P(val[p] | the n - 1 tokens before p within its row))."""
    nll = 0.0
    for p, start in targets:
        nll -= math.log(model.prob(tuple(val[max(start, p - n + 1): p]), val[p]))
    return math.exp(nll / len(targets))


# -- the RNNs beside --------------------------------------------------------------------------

MATCHED = ("corpus", "token", "max_tokens", "val_fraction", "num_steps")


def lm_settings(run_dir: Path) -> dict:
    """The data settings of a language_model run that decide what its validation perplexity
    measures (missing keys are its defaults)."""
    from practicum.practicals import language_model

    raw = read_toml(run_dir / "config.toml")
    d = language_model.Data.model_validate({k: v for k, v in raw.get("data", {}).items()})
    t = raw.get("train", {})
    out = {k: getattr(d, k) for k in MATCHED}
    out["eval_batch_size"] = t.get("eval_batch_size", language_model.Train().eval_batch_size)
    return out


def find_lm_runs(cfg: Config, run: Run) -> tuple[list[list], str]:
    """(rows [model, val perplexity, source], note) of ``compare.lm_run``: the RNNs' best
    validation perplexities, or no rows and a note saying why."""
    ref = cfg.compare.lm_run
    if not ref:
        return [], "no RNN run asked for (compare.lm_run)"
    ours = {k: getattr(cfg.data, k) for k in (*MATCHED, "eval_batch_size")}
    index = run.index
    if ref.startswith("latest:"):
        experiment = ref.split(":", 1)[1]
        done = [r for r in index.list(experiment) if r.status == "finished"]
        fits = [r for r in done if lm_settings(Path(r.dir)) == ours]
        if not fits:
            why = (f"its {len(done)} finished run(s) have other data settings (the latest: "
                   f"{lm_settings(Path(done[-1].dir))}; here: {ours})" if done else "none has finished")
            return [], (f"no RNN perplexities: no finished run of '{experiment}' with these data settings in "
                        f"{index.path} ({why}); run 'practicum run {experiment}'")
        record = fits[-1]
    else:
        record = index.find(ref)
        if record.status != "finished":
            return [], f"no RNN perplexities: run {record.id} is {record.status}"
        if (theirs := lm_settings(Path(record.dir))) != ours:
            return [], f"no RNN perplexities: run {record.id} has data settings {theirs}, these are {ours}"
    names = [k.removeprefix("val/perplexity_") for k in record.summary if k.startswith("val/perplexity_")]
    rows = [[name, float(record.summary[f"val/perplexity_{name}"]), f"{record.experiment} run {record.id}"]
            for name in names]
    return rows, (f"RNNs: the best validation perplexity over the epochs of run {record.id} "
                  f"({record.experiment}), scored on the same targets")


# ---------------------------------------------------------------------------------------------


def corpus_text(corpus: str) -> str:
    from practicum.data.text import read_jaychou, read_timemachine

    return {"jaychou": read_jaychou, "timemachine": read_timemachine}[corpus]()


def shown(gram: tuple, token: str) -> str:
    """An n-gram as text; a space as a visible mark."""
    return "".join(gram).replace(" ", "␣") if token == "char" else " ".join(gram)


def run(cfg: Config, run: Run) -> dict:
    from practicum.data.text import lm_corpus, tokenize
    from practicum.errors import UsageError
    from practicum.practicals.language_model import held_out_cut
    from practicum.report.ngram import zipf_figure

    d, s = cfg.data, cfg.stats
    ids, vocab = lm_corpus(d.corpus, d.token, d.max_tokens)
    cut = held_out_cut(len(ids), d.val_fraction)
    train_ids, val_ids = ids[:cut].tolist(), ids[cut:].tolist()
    targets = val_targets(len(val_ids), d.eval_batch_size, d.num_steps)
    if not targets:
        raise UsageError(f"data: {len(val_ids)} held-out tokens give no {d.num_steps}-token window")
    fileio.write_json(run.dir / "splits.json", {
        "corpus": d.corpus, "token": d.token, "tokens": len(ids), "vocab_size": len(vocab),
        "how": "contiguous: the first tokens train, the tail is validation (language_model's cut)",
        "train": [0, cut], "val": [cut, len(ids)], "val_targets": len(targets)})

    # -- statistics: the text the models use, counted by stats.token
    text = corpus_text(d.corpus)
    used = "".join(tokenize([text], "char")[0][: d.max_tokens]) if d.token == "char" else \
        " ".join(text.split()[: d.max_tokens])
    tokens = tokenize([used], s.token)[0]
    counts = {n: ngrams(tokens, n) for n in (1, 2, 3)}
    summary = {"data/vocab_size": float(len(vocab)), "data/train_tokens": float(len(train_ids)),
               "data/val_targets": float(len(targets)), "stats/tokens": float(len(tokens))}
    zipf_rows, freqs = [], {}
    for n, title in zip((1, 2, 3), ("unigrams", "bigrams", "trigrams")):
        total = sum(counts[n].values())
        top = sorted(counts[n].items(), key=lambda kv: (-kv[1], kv[0]))[: s.top]
        run.write_table(f"{n}_{title}", ["rank", f"{n}-gram", "count", "share"],
                        [[r + 1, shown(g, s.token), c, c / total] for r, (g, c) in enumerate(top)],
                        f"The {s.top} most frequent {title} of {d.corpus} ({s.token}s): {len(counts[n]):,} distinct "
                        f"of {total:,}")
        freqs[n] = sorted(counts[n].values(), reverse=True)
        a, c, lo, hi = zipf_fit(freqs[n], s.zipf_min_rank, s.zipf_min_count)
        zipf_rows.append([f"{n}-gram", len(freqs[n]), a, lo, hi, hi - lo + 1])
        summary[f"zipf/alpha_{n}"] = a
    run.write_table("4_zipf", ["n-gram", "distinct", "exponent a", "fit from rank", "to rank", "ranks fitted"],
                    zipf_rows, f"Zipf's law f ~ rank^-a: least squares of log f on log rank, from rank "
                    f"{s.zipf_min_rank} to the last n-gram seen at least {s.zipf_min_count} times")
    fileio.write_json(run.artifact_path("zipf.json"), {
        "corpus": d.corpus, "token": s.token, "freqs": {str(n): f for n, f in freqs.items()},
        "fits": {str(n): {"a": r[2], "from": r[3], "to": r[4]} for n, r in zip((1, 2, 3), zipf_rows)}})
    zipf_figure(run.artifact_path("zipf.json"), run.figure_path("zipf.png"))

    # -- smoothed models on the held-out targets
    rows = []
    for name, model in build_models(cfg.models, train_ids, len(vocab)).items():
        ppl = perplexity(model, val_ids, targets, model.n)
        rows.append([name, ppl, "n-gram, counts of the training part"])
        key = name.replace(" ", "_").replace("-gram", "").replace("kneser-ney", "kn")
        summary[f"val/perplexity_{key}"] = ppl
    summary["val/perplexity"] = min(r[1] for r in rows)
    rnn_rows, note = find_lm_runs(cfg, run)
    run.write_table("5_perplexity", ["model", "val perplexity", "source"], rows + rnn_rows,
                    f"{d.corpus}, {d.token}-level: validation perplexity on the held-out tail ({len(targets):,} "
                    f"targets, vocabulary {len(vocab)}; uniform: {len(vocab)}). {note}")
    if rnn_rows:
        summary["val/perplexity_rnn_best"] = min(r[1] for r in rnn_rows)
    return summary
