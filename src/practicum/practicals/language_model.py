"""Seed 003, d2l chapter 8/9: character language models on the Jay Chou lyrics or The Time Machine.

Several models are trained one after the other on the same data, the same sampler, the same
optimizer and the same number of epochs (their order is ``model.names``):

- ``rnn_scratch``: the RNN written out (one-hot input, explicit tanh update, d2l's clipping);
- ``rnn`` / ``gru`` / ``lstm``: ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a linear read-out.

With ``model.equal_params`` the plain RNN has ``model.hidden`` units and every other model gets
the width that gives it the same number of parameters, so "gated beats plain" is a comparison at
equal parameters (the table shows widths and counts).

Data: the corpus as one id sequence; the *last* ``valid_fraction`` of it is held out as a
contiguous validation text (a language model must not see the middle of a held-out passage),
recorded in ``splits.json``. Training perplexity is measured on the epoch's own batches, validation
perplexity by reading the held-out text sequentially with the state carried over.

Samples: at the epochs in ``sample.epochs`` every model continues each prefix greedily (d2l's
``predict``) and by sampling at ``sample.temperature`` from a generator seeded with (seed, epoch),
so the same seed gives the same text.

Resume: a checkpoint per model at each epoch end (weights, optimizer, RNG, metrics offset,
samples so far); a finished model is not trained again.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.text import Vocab, lm_corpus, seq_data_iter_random, seq_data_iter_sequential
from practicum.errors import UsageError
from practicum.models.rnn import (MODELS, build_lm, detach_state, grad_clipping, hidden_for_budget,
                                  lm_parameters, predict)
from practicum.practicals.textkit import checkpoint, count_parameters, make_optimizer, restore, write_table
from practicum.store import Run


class Data(Section):
    corpus: Literal["jaychou", "timemachine"] = "timemachine"
    token: Literal["char", "word"] = "char"
    max_tokens: int | None = Field(None, gt=0, description="use the first N tokens (d2l: 10000)")
    valid_fraction: float = Field(0.1, gt=0, lt=1, description="the corpus' tail held out")
    sampler: Literal["sequential", "random"] = "sequential"
    batch_size: int = Field(32, gt=0)
    num_steps: int = Field(35, gt=0, description="BPTT length")


class Model(Section):
    names: list[str] = Field(list(MODELS), min_length=1)
    hidden: int = Field(256, gt=0, description="width of the plain RNN (of every model without equal_params)")
    equal_params: bool = Field(True, description="give every model the parameter count of an 'rnn' of width hidden")
    layers: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="between stacked layers")

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str]) -> list[str]:
        for n in names:
            if n not in MODELS:
                raise ValueError(f"unknown model '{n}': use {', '.join(MODELS)}")
        if len(set(names)) != len(names):
            raise ValueError("a model is listed twice")
        return names


class Optim(Section):
    name: Literal["sgd", "adam"] = "adam"
    lr: float = Field(0.002, gt=0)
    clip: float = Field(1.0, gt=0, description="gradient-norm clipping threshold")


class Train(Section):
    epochs: int = Field(30, gt=0)
    threads: int = Field(1, gt=0, description="torch threads (small recurrent batches gain nothing from more on a shared CPU)")


class Sample(Section):
    prefixes: list[str] = ["time traveller"]
    length: int = Field(50, gt=0, description="tokens generated after the prefix")
    epochs: list[int] = Field([], description="epochs to sample at; [] = 4 evenly spaced, the last included")
    temperature: float = Field(0.8, gt=0, description="for the sampled column (the greedy one is argmax)")


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    sample: Sample = Sample()


# ---------------------------------------------------------------------------------------------


def widths(cfg: Config, vocab_size: int) -> dict[str, int]:
    """Each model's hidden width (equal parameter counts when asked)."""
    m = cfg.model
    if not m.equal_params:
        return {n: m.hidden for n in m.names}
    budget = lm_parameters("rnn", vocab_size, m.hidden, m.layers)
    return {n: hidden_for_budget(n, vocab_size, budget, 1 if n == "rnn_scratch" else m.layers)
            for n in m.names}


def sample_epochs(cfg: Config) -> list[int]:
    if cfg.sample.epochs:
        return sorted(e for e in set(cfg.sample.epochs) if 1 <= e <= cfg.train.epochs)
    E = cfg.train.epochs
    return sorted({max(1, round(E * k / 4)) for k in range(1, 5)})


@torch.no_grad()
def perplexity(model, corpus: np.ndarray, batch_size: int, num_steps: int) -> float:
    """exp(mean cross-entropy) over the whole text, read in order with the state carried over."""
    model.eval()
    batch_size = max(1, min(batch_size, (len(corpus) - 1) // num_steps))
    state, total, count = model.begin_state(batch_size), 0.0, 0
    for X, Y in seq_data_iter_sequential(corpus, batch_size, num_steps):
        logits, state = model(torch.from_numpy(X), state)
        total += float(F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(Y).reshape(-1),
                                       reduction="sum"))
        count += Y.size
    model.train()
    return math.exp(total / max(count, 1))


def samples(model, vocab: Vocab, cfg: Config, epoch: int, name: str) -> list[list]:
    """Table rows [epoch, model, prefix, greedy, sampled] for every prefix."""
    rows = []
    sep = "" if cfg.data.token == "char" else " "
    for k, prefix in enumerate(cfg.sample.prefixes):
        tokens = list(prefix) if cfg.data.token == "char" else prefix.split()
        ids = vocab[tokens]
        greedy = predict(model, ids, cfg.sample.length)
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + epoch * 1009 + k)  # per (seed, epoch, prefix)
        drawn = predict(model, ids, cfg.sample.length, cfg.sample.temperature, gen)
        rows.append([epoch, name, prefix, sep.join(vocab.to_tokens(greedy)), sep.join(vocab.to_tokens(drawn))])
    return rows


def train_model(name: str, width: int, cfg: Config, train_ids, valid_ids, vocab: Vocab, run: Run,
                start: int) -> dict:
    """Train one model for all epochs (resuming from its checkpoint); returns its results.
    ``start``: the metrics-file position where this model's lines begin."""
    ckpt = run.checkpoint_path(f"{name}.pt")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_lm(name, len(vocab), width, cfg.model.layers, cfg.model.dropout)
    opt = make_optimizer(cfg.optim.name, model.parameters(), cfg.optim.lr)
    d = cfg.data
    hist = restore(run, ckpt, model, opt, rng, cfg.train.epochs, start) or {
        "epoch": 0, "train_ppl": [], "valid_ppl": [], "seconds": [], "samples": [], "metrics_position": start}
    at_sample = set(sample_epochs(cfg))
    steps_done = hist.get("steps", 0)

    for epoch in range(hist["epoch"] + 1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        if d.sampler == "sequential":
            batches = seq_data_iter_sequential(train_ids, d.batch_size, d.num_steps, rng)
        else:
            batches = seq_data_iter_random(train_ids, d.batch_size, d.num_steps, rng)
        state, total, count = None, 0.0, 0
        for X, Y in batches:
            if state is None or d.sampler == "random":
                state = model.begin_state(X.shape[0])  # random batches are unrelated: start afresh
            else:
                state = detach_state(state)  # sequential: carry the values, cut the graph
            logits, state = model(torch.from_numpy(X), state)  # (B, T, V)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch.from_numpy(Y).reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if name == "rnn_scratch":
                grad_clipping(model.parameters(), cfg.optim.clip)  # from scratch ...
            else:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.optim.clip)  # ... and the library's
            opt.step()
            total += loss.item() * Y.size
            count += Y.size
            steps_done += 1
        hist["seconds"].append(time.perf_counter() - t0)
        train_ppl = math.exp(total / max(count, 1))
        valid_ppl = perplexity(model, valid_ids, d.batch_size, d.num_steps)
        hist["train_ppl"].append(train_ppl)
        hist["valid_ppl"].append(valid_ppl)
        run.log({"perplexity": train_ppl, "loss": math.log(train_ppl)}, split=f"train-{name}",
                step=steps_done, epoch=epoch)
        run.log({"perplexity": valid_ppl, "loss": math.log(valid_ppl)}, split=f"valid-{name}",
                step=steps_done, epoch=epoch)
        if epoch in at_sample:
            hist["samples"] += samples(model, vocab, cfg, epoch, name)
        hist["epoch"], hist["steps"] = epoch, steps_done
        checkpoint(run, ckpt, hist, model, opt, rng)
    return {"name": name, "width": width, "params": count_parameters(model), **hist}


def run(cfg: Config, run: Run) -> dict:
    torch.set_num_threads(cfg.train.threads)
    d = cfg.data
    ids, vocab = lm_corpus(d.corpus, d.token, d.max_tokens)
    cut = int(len(ids) * (1 - d.valid_fraction))
    train_ids, valid_ids = ids[:cut], ids[cut:]
    if len(valid_ids) <= d.num_steps + 1 or len(train_ids) < d.batch_size * (d.num_steps + 1):
        raise UsageError(f"data: {len(ids)} tokens are too few for batch_size {d.batch_size} x num_steps "
                         f"{d.num_steps} with valid_fraction {d.valid_fraction}")
    fileio.write_json(run.dir / "splits.json", {
        "corpus": d.corpus, "token": d.token, "tokens": len(ids), "vocab_size": len(vocab),
        "how": "contiguous: the first tokens train, the tail is validation",
        "train": [0, cut], "valid": [cut, len(ids)]})
    fileio.write_json(run.artifact_path("vocab.json"), vocab.to_json())

    results, start = [], 0
    for name, w in widths(cfg, len(vocab)).items():
        results.append(train_model(name, w, cfg, train_ids, valid_ids, vocab, run, start))
        start = results[-1]["metrics_position"]

    rows = []
    for r in results:
        best = int(np.argmin(r["valid_ppl"]))
        rows.append([r["name"], r["width"], r["params"], r["train_ppl"][-1], r["valid_ppl"][-1],
                     r["valid_ppl"][best], best + 1, float(np.median(r["seconds"]))])
    write_table(run, "1_models", ["model", "hidden", "parameters", "train ppl (last)", "valid ppl (last)",
                                  "valid ppl (best)", "best epoch", "s/epoch"], rows,
                f"{d.corpus}: {len(train_ids):,} train / {len(valid_ids):,} validation {d.token}s, vocab "
                f"{len(vocab)}, {d.sampler} batches {d.batch_size}x{d.num_steps}, {cfg.optim.name} lr "
                f"{cfg.optim.lr}, clip {cfg.optim.clip}, {cfg.train.epochs} epochs"
                + (" (equal parameter counts)" if cfg.model.equal_params else ""))
    sample_rows = sorted((s for r in results for s in r["samples"]), key=lambda s: (s[0], cfg.model.names.index(s[1])))
    write_table(run, "2_samples", ["epoch", "model", "prefix", "greedy", f"sampled (T={cfg.sample.temperature})"],
                sample_rows, f"text from fixed prefixes ({cfg.sample.length} {d.token}s; seed {cfg.seed})")
    fileio.write_json(run.artifact_path("samples.json"), sample_rows)

    summary = {"data/vocab_size": float(len(vocab)), "data/train_tokens": float(len(train_ids))}
    for r in results:
        summary[f"valid/perplexity_{r['name']}"] = float(min(r["valid_ppl"]))
        summary[f"train/perplexity_{r['name']}"] = float(r["train_ppl"][-1])
        summary[f"model/parameters_{r['name']}"] = float(r["params"])
    best = {r["name"]: min(r["valid_ppl"]) for r in results}
    summary["valid/perplexity"] = float(min(best.values()))
    plain = [v for k, v in best.items() if k in ("rnn", "rnn_scratch")]
    gated = [v for k, v in best.items() if k in ("gru", "lstm")]
    if plain and gated:
        # relative perplexity gain of the worse gated model over the better plain RNN:
        # > 0 when every gated model beats every plain RNN on held-out perplexity
        summary["valid/gated_gain"] = float(1 - max(gated) / min(plain))
    return summary
