"""Seed 003 Task07, d2l 15.5: GloVe trained from scratch on the Penn Treebank.

    PTB train sentences -> vocabulary (min_freq 10, as w2v-ptb) -> <unk> dropped -> the sparse
    co-occurrence matrix X, once: x_ij = sum of 1/d over the pairs d <= window apart in a sentence
    -> minibatches of its nonzero entries (i, j, x_ij) -> predicted log counts v_i . u_j + b_i + c_j
    -> weighted squared error h(x_ij) (pred - log x_ij)^2 -> AdaGrad (the paper's), by the fit loop

Where skip-gram streams windows through the corpus every epoch, GloVe reads the corpus once: an
epoch is a pass over the nonzero entries of X in an order drawn from the loader's generator
(checkpointed, so a run resumed mid-epoch is exact). The vectors are v + u (the paper's sum).

No held-out split, as in word2vec: the embeddings are judged by their neighbours. Results: the
nearest words of ``eval.queries`` and the analogies (word2vec's tables), the entries of X with
their weight and the fitted log count (``4_cooccurrence``), the h(x) curve over X's histogram
(``figures/weighting.png``, from ``cooccurrence.json``), and with ``eval.beside`` (the entry:
``latest:w2v-ptb``) skip-gram's nearest words beside GloVe's. ``embeddings.npy`` and
``vocab.json`` as word2vec writes them (``sentiment`` can load them by run id).
"""

from __future__ import annotations

import numpy as np
import torch
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.practicals.word2vec import Eval
from practicum.train import config


class Data(Section):
    min_freq: int = Field(10, ge=1, description="rarer words become <unk> and are dropped (as w2v-ptb)")
    window: int = Field(10, gt=0, description="pairs up to this many words apart co-occur (the paper: 10)")
    distance_weighting: bool = Field(True, description="a pair d words apart counts 1/d (the paper's), else 1")
    limit: int | None = Field(None, gt=0, description="use the first N training sentences")


class Model(Section):
    embed: int = Field(100, gt=0)
    x_max: float = Field(100.0, gt=0, description="h(x) = (x / x_max)^alpha, capped at 1 (the paper: 100)")
    alpha: float = Field(0.75, gt=0, description="the paper: 3/4")


class Optim(config.Optim):
    name: str = Field("adagrad", description="the paper: AdaGrad at 0.05")
    lr: float = Field(0.05, gt=0)
    batch_size: int = Field(512, gt=0, description="nonzero entries of X per step")


class Train(config.Train):
    epochs: int = Field(20, gt=0)


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    eval: Eval = Eval()


def objective(x_max: float, alpha: float):
    from practicum.models.glove import glove_loss
    from practicum.train.objective import Objective, Step

    def step(net, batch) -> Step:
        i, j, x = batch  # (B,), (B,), (B,) nonzero entries of X
        pred = net(i, j).float()  # (B,) predicted log x_ij
        return Step(glove_loss(pred, x, x_max, alpha), len(x))

    return Objective(step)


def run(cfg: Config, run) -> dict:
    from practicum.data.arrays import ArrayLoader
    from practicum.data.text import Vocab, cooccurrence, read_ptb
    from practicum.models.glove import GloVe
    from practicum.practicals.word2vec import beside_table, embedding_tables, save_npy
    from practicum.report.glove import COOCCURRENCE, weighting_figure
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import Recorder, fit, summarize
    from practicum.train.optim import build_training

    d, m, t, o = cfg.data, cfg.model, cfg.train, cfg.optim
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    sentences = read_ptb("train")[: d.limit]
    vocab = Vocab(sentences, min_freq=d.min_freq)
    ids = [np.array(vocab[s], dtype=np.int64) for s in sentences]
    ids = [s[s > 0] for s in ids]  # <unk> (index 0) says nothing about its neighbours: dropped, as w2v-ptb does
    rows, cols, x = cooccurrence(ids, len(vocab), d.window, d.distance_weighting)
    if ddp.is_main():
        fileio.write_json(run.dir / "splits.json", {
            "corpus": "ptb.train.txt", "sentences": len(sentences), "tokens": int(sum(map(len, ids))),
            "vocab_size": len(vocab), "nonzeros": len(x), "how": "all of ptb.train.txt (no held-out split)"})

    model = GloVe(len(vocab), m.embed).to(device)  # the same weights on every rank
    gen = torch.Generator().manual_seed(cfg.seed)  # the order of the entries, identical on all ranks
    loader = ArrayLoader({"i": rows, "j": cols, "x": x}, o.batch_size, train=True, generator=gen,
                         rank=ddp.rank(), world=ddp.world_size(), device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = "GloVe"
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, objective(m.x_max, m.alpha), loader, {}, fit_cfg, run, rec)

    W = model.words.detach().float().cpu()  # (V, E)
    summary = {k: v for k, v in summarize(state, model).items() if k.startswith(("train/", "model/"))}
    summary.update({"data/vocab_size": float(len(vocab)), "data/nonzeros": float(len(x)),
                    "data/capped_share": float((x >= m.x_max).float().mean()) if len(x) else 0.0})
    summary.update(embedding_tables(run, cfg.eval, W, vocab))
    if ddp.is_main():
        if cfg.eval.beside:
            beside_table(run, cfg.eval, "GloVe", W, vocab, summary)
        cooccurrence_table(run, model.cpu(), vocab, rows, cols, x, m)
        stats = cooccurrence_stats(x, m)
        fileio.write_json(run.artifact_path(COOCCURRENCE), stats)
        weighting_figure(stats, run.figure_path("weighting.png"))
        save_npy(run.artifact_path("embeddings.npy"), W.numpy().astype(np.float32))
        fileio.write_json(run.artifact_path("vocab.json"), vocab.to_json())
        rec.finish(cfg.hparams(), summary)
    return summary


@torch.no_grad()
def cooccurrence_table(run, model, vocab, rows, cols, x, m: Model, k: int = 8) -> None:
    """``4_cooccurrence``: the largest entries of X and k spread over its sorted values, each with
    its weight h(x) and the trained model's predicted log count beside log x."""
    from practicum.models.glove import weighting

    if not len(x):
        return
    order = x.argsort(descending=True)
    picks = torch.cat([order[:k], order[torch.linspace(k, len(x) - 1, k).long().unique()]])
    pred = model(rows[picks], cols[picks])
    table = [[vocab.to_tokens(int(rows[p])), vocab.to_tokens(int(cols[p])), round(float(x[p]), 3),
              round(float(weighting(x[p], m.x_max, m.alpha)), 4), round(float(x[p].log()), 3), round(float(q), 3)]
             for p, q in zip(picks, pred)]
    run.write_table("4_cooccurrence", ["word i", "word j", "x_ij", "h(x_ij)", "log x_ij", "fitted"], table,
                    f"entries of X ({len(x):,} nonzero of {len(vocab) ** 2:,}): the {k} largest, then {k} "
                    "spread over the rest; fitted = v_i . u_j + b_i + c_j")


def cooccurrence_stats(x: torch.Tensor, m: Model) -> dict:
    """What the weighting figure draws: X's histogram over log-spaced bins, and h on them."""
    if not len(x):
        return {"edges": [], "counts": [], "x_max": m.x_max, "alpha": m.alpha}
    lo, hi = float(x.min()), float(x.max())
    edges = np.geomspace(lo, max(hi, lo * 1.01), 41)
    counts, _ = np.histogram(x.numpy(), bins=edges)
    return {"edges": edges.tolist(), "counts": counts.tolist(), "x_max": m.x_max, "alpha": m.alpha,
            "nonzeros": len(x), "capped": int((x >= m.x_max).sum())}
