"""Seed 003, d2l 16.1-16.3: sentiment classification with a BiLSTM and a TextCNN (Kim 2014).

Variants ``<arch>-<init>`` are trained one after the other on the same split: ``arch`` is
``textcnn`` or ``bilstm``; ``init`` is ``random`` (U[-0.25, 0.25] rows, Kim's CNN-rand) or ``w2v``
(rows of the words a word2vec run knows are copied from its saved ``embeddings.npy``, rescaled to
the standard deviation of the random rows; the other rows stay random). Both inits of one
architecture start from the same random weights, so the comparison isolates the embeddings.

``embed.w2v_run`` names the word2vec run: a run id (or unique prefix) or ``latest:<experiment>``
(the latest finished run of that experiment in this run store); the id used is recorded.

Data:
- ``rt-polarity``: 10,662 snippets; one stratified split drawn with the seed -- test 10 %,
  validation 10 %, train 80 % (Kim's 10-fold CV also held 10 % of each training fold out as
  his dev set); recorded in ``splits.json``. Test accuracy is read at the epoch of best validation
  accuracy.
- ``aclimdb-tiny``: d2l's 20 train / 20 test reviews (the files' own split), the last epoch.

Resume: a checkpoint per variant at each epoch end.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.text import Vocab, pad_batch, read_imdb_tiny, read_rt_polarity, split_indices, splits_record
from practicum.errors import PracticumError
from practicum.models.textclass import build_classifier
from practicum.practicals.textkit import checkpoint, count_parameters, make_optimizer, restore, write_table
from practicum.store import Run

VARIANTS = ("textcnn-random", "textcnn-w2v", "bilstm-random", "bilstm-w2v")


class Data(Section):
    dataset: Literal["rt-polarity", "aclimdb-tiny"] = "rt-polarity"
    test_fraction: float = Field(0.1, gt=0, lt=1, description="rt-polarity: held-out share")
    valid_fraction: float = Field(0.1, ge=0, lt=1, description="rt-polarity: share for picking the epoch (0: last)")
    max_len: int | None = Field(None, gt=0, description="truncate longer texts (d2l IMDb: 500)")
    min_freq: int = Field(1, ge=1)
    limit: int | None = Field(None, gt=0, description="use a stratified N-example subset (quick form)")


class Embed(Section):
    dim: int = Field(100, gt=0, description="must equal the word2vec run's when a w2v variant is trained")
    w2v_run: str = Field("latest:w2v-ptb", description="run id / prefix, or latest:<experiment>")
    freeze: bool = False


class TextCNNSpec(Section):
    kernel_sizes: list[int] = [3, 4, 5]
    channels: int = Field(100, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)


class BiLSTMSpec(Section):
    hidden: int = Field(100, gt=0)
    layers: int = Field(2, gt=0)
    dropout: float = Field(0.5, ge=0, lt=1)


class Train(Section):
    variants: list[str] = Field(list(VARIANTS), min_length=1)
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(50, gt=0)
    optimizer: Literal["adam", "adadelta", "sgd"] = "adam"
    lr: float = Field(0.001, gt=0)
    max_norm: float | None = Field(3.0, gt=0, description="Kim's L2 cap on each output-weight row")
    threads: int = Field(1, gt=0)

    @field_validator("variants")
    @classmethod
    def _known(cls, names):
        for n in names:
            if n not in VARIANTS:
                raise ValueError(f"unknown variant '{n}': use {', '.join(VARIANTS)}")
        if len(set(names)) != len(names):
            raise ValueError("a variant is listed twice")
        return names


class Config(Experiment):
    data: Data = Data()
    embed: Embed = Embed()
    textcnn: TextCNNSpec = TextCNNSpec()
    bilstm: BiLSTMSpec = BiLSTMSpec()
    train: Train = Train()


# -- data ---------------------------------------------------------------------------------------


def load_splits(cfg: Config) -> tuple[dict[str, tuple[list, np.ndarray]], dict]:
    """split name -> (token lists, labels), and the record for splits.json."""
    d = cfg.data
    if d.dataset == "aclimdb-tiny":
        out = {s: read_imdb_tiny(s) for s in ("train", "test")}
        if d.limit:
            out = {s: (t[: d.limit], y[: d.limit]) for s, (t, y) in out.items()}
        return out, {"how": "the files' own train/test folders", "sizes": {s: len(v[1]) for s, v in out.items()}}
    texts, labels = read_rt_polarity()
    pool = np.arange(len(labels))
    if d.limit:
        pool = np.sort(split_indices(len(labels), {"use": min(d.limit, len(labels)), "rest": -1}, cfg.seed,
                                     labels)["use"])
    sizes = {"test": d.test_fraction, "valid": d.valid_fraction, "train": -1}
    if d.valid_fraction == 0:
        sizes.pop("valid")
    parts = split_indices(len(pool), sizes, cfg.seed, labels[pool])
    parts = {k: pool[v] for k, v in parts.items()}
    record = splits_record(parts, seed=cfg.seed, how="stratified random split of rt-polarity.pos + .neg "
                           "(index = line in .pos, then 5,331 + line in .neg)")
    return {k: ([texts[i] for i in v], labels[v]) for k, v in parts.items()}, record


def resolve_w2v(run: Run, ref: str) -> tuple[str, np.ndarray, Vocab]:
    """(run id, embeddings (V, E), vocab) of the word2vec run ``ref`` in this run store."""
    index = run.index
    if ref.startswith("latest:"):
        experiment = ref.split(":", 1)[1]
        done = [r for r in index.list(experiment) if r.status == "finished" and r.id != run.id]
        if not done:
            raise PracticumError(f"embed.w2v_run = '{ref}': no finished run of '{experiment}' in {index.path}; "
                                 f"run 'practicum run {experiment}' first, or give a run id")
        record = done[-1]
    else:
        record = index.find(ref)
        if record.status != "finished":
            raise PracticumError(f"embed.w2v_run = '{ref}': run {record.id} is {record.status}")
    d = Path(record.dir)
    if not (d / "embeddings.npy").is_file() or not (d / "vocab.json").is_file():
        raise PracticumError(f"embed.w2v_run = '{ref}': run {record.id} has no embeddings.npy + vocab.json "
                             f"(is it a word2vec run?)")
    return record.id, np.load(d / "embeddings.npy", allow_pickle=False), Vocab.from_json(fileio.read_json(d / "vocab.json"))


def init_embedding(model, vocab: Vocab, w2v: tuple[np.ndarray, Vocab] | None) -> float:
    """Copy word2vec rows into the model's embedding; returns the share of vocabulary covered."""
    if w2v is None:
        return 0.0
    W, w2v_vocab = w2v
    W = W / W.std() * model.embedding.weight[2:].std().item()  # the scale of the random rows
    rows = [(i, w2v_vocab[t]) for i, t in enumerate(vocab.idx_to_token) if t in w2v_vocab and t != "<unk>"]
    with torch.no_grad():
        for i, j in rows:
            model.embedding.weight[i] = torch.from_numpy(W[j])
    return len(rows) / max(len(vocab) - 2, 1)  # <unk> and <pad> are not words


# -- training -------------------------------------------------------------------------------------


def make_batches(ids: list[list[int]], labels: np.ndarray, order: np.ndarray, batch_size: int, pad: int, max_len):
    for i in range(0, len(order), batch_size):
        b = order[i: i + batch_size]
        X, lengths = pad_batch([ids[j] for j in b], pad, max_len)
        yield torch.from_numpy(X), torch.from_numpy(lengths), torch.from_numpy(labels[b])


@torch.no_grad()
def evaluate(model, ids, labels, pad, max_len) -> tuple[float, float]:
    model.eval()
    loss, correct = 0.0, 0
    for X, L, y in make_batches(ids, labels, np.arange(len(labels)), 256, pad, max_len):
        logits = model(X, L)
        loss += float(F.cross_entropy(logits, y, reduction="sum"))
        correct += int((logits.argmax(1) == y).sum())
    model.train()
    return loss / len(labels), correct / len(labels)


def train_variant(variant: str, cfg: Config, data: dict, vocab: Vocab, w2v, run: Run, start: int) -> dict:
    arch, init = variant.split("-")
    ckpt = run.checkpoint_path(f"{variant}.pt")
    torch.manual_seed(cfg.seed)  # the same start for both inits of an architecture
    rng = np.random.default_rng(cfg.seed)
    pad = vocab["<pad>"]
    model = build_classifier(arch, len(vocab), cfg.embed.dim, pad=pad, **getattr(cfg, arch).model_dump())
    coverage = init_embedding(model, vocab, w2v if init == "w2v" else None)
    model.embedding.weight.requires_grad_(not cfg.embed.freeze)
    opt = make_optimizer(cfg.train.optimizer, [p for p in model.parameters() if p.requires_grad], cfg.train.lr)
    hist = restore(run, ckpt, model, opt, rng, cfg.train.epochs, start) or {
        "epoch": 0, "steps": 0, "valid_acc": [], "test_acc": [], "train_acc": [], "seconds": [], "metrics_position": start}
    ids = {s: [vocab[t] for t in texts] for s, (texts, _) in data.items()}
    labels = {s: y for s, (_, y) in data.items()}
    max_len = cfg.data.max_len
    for epoch in range(hist["epoch"] + 1, cfg.train.epochs + 1):
        t0 = time.perf_counter()
        total, correct = 0.0, 0
        for X, L, y in make_batches(ids["train"], labels["train"], rng.permutation(len(labels["train"])),
                                    cfg.train.batch_size, pad, max_len):
            logits = model(X, L)
            loss = F.cross_entropy(logits, y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if cfg.train.max_norm:
                with torch.no_grad():  # Kim: rescale any class's weight row whose norm exceeds s
                    model.out.weight.renorm_(2, 0, cfg.train.max_norm)
            total += loss.item() * len(y)
            correct += int((logits.argmax(1) == y).sum())
            hist["steps"] += 1
        hist["seconds"].append(time.perf_counter() - t0)
        n = len(labels["train"])
        hist["train_acc"].append(correct / n)
        run.log({"loss": total / n, "accuracy": correct / n}, split=f"train-{variant}", step=hist["steps"], epoch=epoch)
        for split in ("valid", "test"):
            if split in ids:
                loss_, acc = evaluate(model, ids[split], labels[split], pad, max_len)
                hist[f"{split}_acc"].append(acc)
                run.log({"loss": loss_, "accuracy": acc}, split=f"{split}-{variant}", step=hist["steps"], epoch=epoch)
        hist["epoch"] = epoch
        checkpoint(run, ckpt, hist, model, opt, rng)
    pick = int(np.argmax(hist["valid_acc"])) if hist["valid_acc"] else len(hist["test_acc"]) - 1
    return {"variant": variant, "arch": arch, "init": init, "coverage": coverage, "params": count_parameters(model),
            "epoch": pick + 1, "valid": hist["valid_acc"][pick] if hist["valid_acc"] else None,
            "test": hist["test_acc"][pick], "train": hist["train_acc"][pick],
            "seconds": float(np.median(hist["seconds"])), "metrics_position": hist["metrics_position"]}


def run(cfg: Config, run: Run) -> dict:
    torch.set_num_threads(cfg.train.threads)
    data, record = load_splits(cfg)
    fileio.write_json(run.dir / "splits.json", {"dataset": cfg.data.dataset, **record})
    vocab = Vocab(data["train"][0], cfg.data.min_freq, ["<pad>"])
    w2v, w2v_id = None, None
    if any(v.endswith("-w2v") for v in cfg.train.variants):
        w2v_id, W, w2v_vocab = resolve_w2v(run, cfg.embed.w2v_run)
        if W.shape[1] != cfg.embed.dim:
            raise PracticumError(f"embed.dim = {cfg.embed.dim} but word2vec run {w2v_id} has {W.shape[1]}-d vectors")
        w2v = (W, w2v_vocab)
        fileio.write_json(run.artifact_path("w2v_source.json"), {"w2v_run": cfg.embed.w2v_run, "resolved_id": w2v_id})

    results, start = [], 0
    for variant in cfg.train.variants:
        results.append(train_variant(variant, cfg, data, vocab, w2v, run, start))
        start = results[-1]["metrics_position"]

    n_test = len(data["test"][1])
    picked = "best validation epoch" if "valid" in data else "last epoch"
    rows = [[r["variant"], r["params"], f"{r['coverage']:.1%}" if r["init"] == "w2v" else "-", r["epoch"],
             r["train"], r["valid"], r["test"], r["seconds"]] for r in results]
    sizes = ", ".join(f"{k} {len(v[1])}" for k, v in data.items())
    write_table(run, "1_accuracy", ["variant", "parameters", "vocab from w2v", "epoch", "train acc", "valid acc",
                                    "test acc", "s/epoch"], rows,
                f"{cfg.data.dataset} ({sizes}; vocab {len(vocab)}), test accuracy at the {picked}"
                + (f"; word2vec run {w2v_id}" if w2v_id else ""))
    summary = {f"test/accuracy_{r['variant']}": r["test"] for r in results}
    summary.update({f"train/accuracy_{r['variant']}": r["train"] for r in results})
    summary["test/accuracy"], summary["train/accuracy"] = results[0]["test"], results[0]["train"]
    se = 2 * math.sqrt(2 * 0.25 / n_test)  # ~2 standard errors of a difference of two accuracies
    verdicts = []
    for arch in ("textcnn", "bilstm"):
        acc = {r["init"]: r["test"] for r in results if r["arch"] == arch}
        if {"random", "w2v"} <= set(acc):
            gain = acc["w2v"] - acc["random"]
            summary[f"test/w2v_gain_{arch}"] = gain
            verdict = ("helps" if gain > se else "hurts" if gain < -se else "no clear difference") + f" (|gain| vs {se:.3f})"
            verdicts.append([arch, acc["random"], acc["w2v"], gain, verdict])
    if verdicts:
        write_table(run, "2_w2v_init", ["model", "random init", "word2vec init", "gain", "verdict (2 s.e.)"],
                    verdicts, f"does initialising from word2vec (run {w2v_id}) help? test accuracy on {n_test} "
                    "examples")
    return summary
