"""Seed 003, d2l 15.1-15.4: word2vec (skip-gram, negative sampling) on the Penn Treebank.

    PTB train sentences -> vocabulary (min_freq 10: 6,719 words, d2l's) -> per epoch: subsample
    frequent words, draw a window per center, contexts + K noise words each (unigram^0.75)
    -> SkipGram scores (B, 60) -> masked sigmoid BCE -> Adam

d2l draws the subsampling and the examples once; here they are redrawn each epoch from the run's
seeded generator (as word2vec's C code does on the fly). The loss is the from-scratch
``sigmoid_bce`` (tests hold it equal to torch's).

Results: nearest neighbours by cosine similarity for ``eval.queries`` (d2l's "chip" first) and
analogies a : b :: c : d by 3CosAdd, as tables; ``embeddings.npy`` (center vectors, (V, E)) and
``vocab.json`` in the run for reuse (``sentiment`` loads them by run id).

Resume: checkpoint at each epoch end (weights, optimizer, RNG, metrics offset).
"""

from __future__ import annotations

import io
import time

import numpy as np
import torch
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.text import Vocab, read_ptb, skipgram_examples, subsample
from practicum.models.word2vec import SkipGram, analogy, nearest, sigmoid_bce
from practicum.practicals.textkit import checkpoint, restore, write_table
from practicum.store import Run


class Data(Section):
    min_freq: int = Field(10, ge=1, description="rarer words are dropped (d2l: 10)")
    subsample_t: float = Field(1e-4, gt=0, description="subsampling threshold t (d2l: 1e-4)")
    max_window: int = Field(5, gt=0)
    num_noise: int = Field(5, gt=0, description="noise words per context word")
    limit: int | None = Field(None, gt=0, description="use the first N training sentences")


class Model(Section):
    embed: int = Field(100, gt=0)


class Train(Section):
    epochs: int = Field(5, gt=0)
    batch_size: int = Field(512, gt=0)
    lr: float = Field(0.002, gt=0, description="Adam (d2l: 0.002)")
    threads: int = Field(1, gt=0)


class Eval(Section):
    queries: list[str] = ["chip", "intel", "baby", "beautiful", "bank", "president", "stock", "japan"]
    neighbours: int = Field(5, gt=0)
    analogies: list[str] = Field(
        ["big bigger small smaller", "buy bought sell sold", "japan japanese china chinese",
         "company companies bank banks", "good better bad worse", "he his she her",
         "year years month months", "man woman mr. mrs.", "up down rise fall", "day days week weeks"],
        description="'a b c d': a is to b as c is to d")
    expected: dict[str, str] = Field({"chip": "microprocessor"},
                                     description="query -> word whose similarity the summary reports")


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    train: Train = Train()
    eval: Eval = Eval()


def save_npy(path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    fileio.write_bytes(path, buf.getvalue())


def run(cfg: Config, run: Run) -> dict:
    torch.set_num_threads(cfg.train.threads)
    d, tr = cfg.data, cfg.train
    sentences = read_ptb("train")[: d.limit]
    vocab = Vocab(sentences, min_freq=d.min_freq)
    freqs = dict(vocab.token_freqs)
    counts = np.array([0.0] + [freqs[t] for t in vocab.idx_to_token[1:]])  # <unk> (index 0) gets none
    ids = [np.array(vocab[s], dtype=np.int64) for s in sentences]
    fileio.write_json(run.dir / "splits.json", {"corpus": "ptb.train.txt", "sentences": len(sentences),
                                                "tokens": int(sum(map(len, ids))), "vocab_size": len(vocab),
                                                "how": "all of ptb.train.txt (word2vec has no held-out split)"})

    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = SkipGram(len(vocab), cfg.model.embed)
    opt = torch.optim.Adam(model.parameters(), lr=tr.lr)
    hist = restore(run, run.checkpoint_path("last.pt"), model, opt, rng, tr.epochs, 0) or {
        "epoch": 0, "steps": 0, "loss": [], "seconds": [], "examples": []}

    for epoch in range(hist["epoch"] + 1, tr.epochs + 1):
        t0 = time.perf_counter()
        ex = skipgram_examples(subsample(ids, counts, rng, d.subsample_t), d.max_window, d.num_noise,
                               counts**0.75, rng)
        order = rng.permutation(len(ex["centers"]))
        total, n = 0.0, 0
        for i in range(0, len(order), tr.batch_size):
            b = order[i: i + tr.batch_size]
            logits = model(torch.from_numpy(ex["centers"][b]), torch.from_numpy(ex["contexts_negatives"][b]))
            loss = sigmoid_bce(logits, torch.from_numpy(ex["labels"][b]), torch.from_numpy(ex["mask"][b]))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total, n = total + loss.item() * len(b), n + len(b)
            hist["steps"] += 1
        hist["loss"].append(total / n)
        hist["seconds"].append(time.perf_counter() - t0)
        hist["examples"].append(len(order))
        run.log({"loss": total / n}, split="train", step=hist["steps"], epoch=epoch)
        hist["epoch"] = epoch
        checkpoint(run, run.checkpoint_path("last.pt"), hist, model, opt, rng)

    W = model.center.weight.detach()
    save_npy(run.artifact_path("embeddings.npy"), W.numpy().astype(np.float32))
    fileio.write_json(run.artifact_path("vocab.json"), vocab.to_json())

    ev = cfg.eval
    summary = {"train/loss": hist["loss"][-1], "train/seconds_per_epoch": float(np.median(hist["seconds"])),
               "data/vocab_size": float(len(vocab)), "data/examples_per_epoch": float(np.mean(hist["examples"]))}
    rows = []
    for q in ev.queries:
        if q not in vocab:
            rows.append([q, "(not in the vocabulary)", ""])
            continue
        near = nearest(W, vocab[q], ev.neighbours)
        rows.append([q, ", ".join(f"{vocab.to_tokens(i)} {s:.3f}" for i, s in near), ""])
    for q, target in ev.expected.items():
        key = f"neighbours/{q}_{target}"
        if q in vocab and target in vocab:
            sims = torch.nn.functional.cosine_similarity(W, W[vocab[q]][None], dim=1)  # (V,)
            sims[vocab[q]] = -2.0  # the query itself does not count
            cos = sims[vocab[target]]
            rank = 1 + int((sims > cos).sum())
            summary[key + "_cosine"], summary[key + "_rank"] = float(cos), float(rank)
            for r in rows:
                if r[0] == q:
                    r[2] = f"{target}: cosine {float(cos):.3f}, rank {rank}"
        else:  # a slice too small to hold the words (quick form): an explicit non-result
            summary[key + "_cosine"], summary[key + "_rank"] = -1.0, float(len(vocab))
    write_table(run, "1_neighbours", ["query", f"{ev.neighbours} nearest by cosine", "expected"], rows,
                f"nearest words (center embeddings, {len(vocab)} words; d2l: chip -> microprocessor 0.70-0.77)")

    arows, top1, top5, asked = [], 0, 0, 0
    for item in ev.analogies:
        a, b, c, expect = item.split()
        missing = [w for w in (a, b, c, expect) if w not in vocab]
        if missing:
            arows.append([f"{a} : {b} :: {c} : ?", expect, f"not in the vocabulary: {', '.join(missing)}", ""])
            continue
        found = analogy(W, vocab[a], vocab[b], vocab[c], 5)
        words = [vocab.to_tokens(i) for i, _ in found]
        asked += 1
        top1 += words[0] == expect
        top5 += expect in words
        arows.append([f"{a} : {b} :: {c} : ?", expect, ", ".join(f"{w} {s:.3f}" for w, (_, s) in zip(words, found)),
                      words.index(expect) + 1 if expect in words else "> 5"])
    write_table(run, "2_analogies", ["analogy", "expected", "top 5 (3CosAdd)", "rank of expected"], arows,
                f"analogies: {top1}/{asked} right at top 1, {top5}/{asked} in the top 5")
    summary["analogy/top1_accuracy"] = top1 / asked if asked else 0.0
    summary["analogy/top5_accuracy"] = top5 / asked if asked else 0.0
    return summary
