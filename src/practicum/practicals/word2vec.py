"""Seed 003, d2l 15.1-15.4: word2vec (skip-gram or CBOW, negative sampling) on the Penn Treebank.

    PTB train sentences -> vocabulary (min_freq 10: 6,719 words, d2l's) -> per epoch: subsample
    frequent words, draw a window per center, contexts + K noise words each (unigram^0.75)
    -> skip-gram: scores (B, 60) of the center against its contexts and their noise words
       CBOW:      scores (B, 1 + K) of the mean context vector against the center and K noise words
    -> masked sigmoid BCE -> Adam, by the shared fit loop

``model.kind`` picks the model; both train on the same draw (``cbow_examples`` re-reads a
skip-gram draw: the same windows, the first K of each center's noise words), so the comparison
isolates the model. d2l draws the subsampling and the examples once; here they are redrawn each
epoch (as word2vec's C code does on the fly), as a function of (seed, epoch) only: a NumPy
generator seeded with ``[seed, epoch]`` subsamples, draws the windows and the noise words, so a
run resumed mid-epoch rebuilds that epoch's examples exactly. The batches are slices of a
permutation drawn from the loader's torch generator (checkpointed by the loop). Every epoch
trains on as many examples as epoch 0 drew (the counts of two draws differ by about 0.1 %): a
larger draw leaves a random few out, a smaller one repeats a random few, so every epoch has the
same number of steps. The loss is the from-scratch ``sigmoid_bce`` (tests hold it equal to torch's).

There is no held-out split (the embeddings are judged by their neighbours), so no evaluation
during training and no best checkpoint: the final weights are the result.

Results: nearest neighbours by cosine similarity for ``eval.queries`` (d2l's "chip" first) and
analogies a : b :: c : d by 3CosAdd, as tables; ``embeddings.npy`` (the model's input vectors,
(V, E)) and ``vocab.json`` in the run for reuse (``sentiment`` loads them by run id). With
``eval.beside`` (CBOW's and GloVe's entries: ``latest:w2v-ptb``) the nearest words, analogies
and loss of another embedding run go beside this one's in ``3_beside``.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from typing import Literal

from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.arrays import ArrayLoader
from practicum.data.text import Vocab, cbow_examples, read_ptb, skipgram_examples, subsample
from practicum.train import config


class Data(Section):
    min_freq: int = Field(10, ge=1, description="rarer words are dropped (d2l: 10)")
    subsample_t: float = Field(1e-4, gt=0, description="subsampling threshold t (d2l: 1e-4)")
    max_window: int = Field(5, gt=0)
    num_noise: int = Field(5, gt=0, description="noise words per context word")
    limit: int | None = Field(None, gt=0, description="use the first N training sentences")


class Model(Section):
    kind: Literal["skipgram", "cbow"] = Field("skipgram", description="skipgram: the center predicts each "
                                              "context word; cbow: the mean of the contexts predicts the center")
    embed: int = Field(100, gt=0)


class Optim(config.Optim):
    lr: float = Field(0.002, gt=0, description="d2l: Adam at 0.002")
    batch_size: int = Field(512, gt=0)


class Train(config.Train):
    epochs: int = Field(5, gt=0)


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
    beside: str | None = Field(None, description="another embedding run to compare with, side by side: "
                               "a run id / prefix, or latest:<experiment> (e.g. latest:w2v-ptb)")


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    version = 2  # the fit loop: examples drawn per (seed, epoch), torch-drawn batches, step-exact resume

    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    eval: Eval = Eval()


class SkipGramLoader(ArrayLoader):
    """Training batches of skip-gram (or CBOW) examples redrawn every epoch.

    ``order(epoch)`` is ``{"epoch": e, "perm": (n,) tensor}`` (the loop checkpoints it); the
    epoch's example arrays are rebuilt by ``examples(epoch)``, on the device, when a batch of
    another epoch is asked for (a resumed run's first batch), and a batch is an index gather of
    them. n = the size of epoch 0's draw: every epoch's permutation has n entries. Arrays:
    skip-gram: centers (N,), contexts_negatives (N, L), labels (N, L), mask (N, L);
    CBOW: contexts (N, 2W), context_mask (N, 2W), targets (N, 1 + K), labels (N, 1 + K)."""

    def __init__(self, sentences: list[np.ndarray], counts: np.ndarray, d: Data, seed: int, batch_size: int,
                 kind: str = "skipgram", **kwargs):
        self.sentences, self.counts, self.d, self.seed, self.kind = sentences, counts, d, seed, kind
        self.noise = counts ** 0.75  # word2vec's noise distribution, unnormalised
        self.epoch = 0
        super().__init__(self.examples(0, kwargs.get("device", "cpu")), batch_size, train=True, **kwargs)

    def examples(self, epoch: int, device) -> dict:
        rng = np.random.default_rng([self.seed, epoch])  # this epoch's draws and nothing else's
        kept = subsample(self.sentences, self.counts, rng, self.d.subsample_t)
        ex = skipgram_examples(kept, self.d.max_window, self.d.num_noise, self.noise, rng)
        if self.kind == "cbow":
            ex = cbow_examples(ex, self.d.max_window, self.d.num_noise)
            keys = ("contexts", "context_mask", "targets", "labels")
        else:
            keys = ("centers", "contexts_negatives", "labels", "mask")
        return {k: torch.from_numpy(ex[k]).to(device) for k in keys}

    def order(self, epoch: int = 0) -> dict:
        self.use(epoch)
        drawn = len(next(iter(self.arrays.values())))
        perm = torch.randperm(drawn, generator=self.generator)
        return {"epoch": epoch, "perm": perm.repeat(-(-self.n // drawn))[: self.n]}  # (n,)

    def batch(self, order: dict, step: int) -> tuple:
        self.use(order["epoch"])
        return super().batch(order["perm"], step)  # the arrays above, in that order

    def use(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.arrays, self.epoch = self.examples(epoch, self.device), epoch


def objective(kind: str = "skipgram"):
    from practicum.models.word2vec import sigmoid_bce
    from practicum.train.objective import Objective, Step

    def step(net, batch) -> Step:
        centers, contexts_negatives, labels, mask = batch  # (B,), (B, L), (B, L), (B, L)
        logits = net(centers, contexts_negatives).float()  # (B, L) scores
        return Step(sigmoid_bce(logits, labels, mask), len(centers))

    def cbow_step(net, batch) -> Step:
        contexts, context_mask, targets, labels = batch  # (B, 2W), (B, 2W), (B, 1 + K), (B, 1 + K)
        logits = net(contexts, context_mask, targets).float()  # (B, 1 + K) scores
        return Step(sigmoid_bce(logits, labels, torch.ones_like(labels)), len(targets))

    return Objective(cbow_step if kind == "cbow" else step)


def save_npy(path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    fileio.write_bytes(path, buf.getvalue())


def run(cfg: Config, run) -> dict:
    from practicum.models.word2vec import CBOW, SkipGram
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import Recorder, fit, summarize
    from practicum.train.optim import build_training

    d, t, o = cfg.data, cfg.train, cfg.optim
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    sentences = read_ptb("train")[: d.limit]
    vocab = Vocab(sentences, min_freq=d.min_freq)
    freqs = dict(vocab.token_freqs)
    counts = np.array([0.0] + [freqs[w] for w in vocab.idx_to_token[1:]])  # <unk> (index 0) gets none
    ids = [np.array(vocab[s], dtype=np.int64) for s in sentences]
    if ddp.is_main():
        fileio.write_json(run.dir / "splits.json", {"corpus": "ptb.train.txt", "sentences": len(sentences),
                                                    "tokens": int(sum(map(len, ids))), "vocab_size": len(vocab),
                                                    "how": "all of ptb.train.txt (word2vec has no held-out split)"})

    kind = cfg.model.kind
    model = (CBOW if kind == "cbow" else SkipGram)(len(vocab), cfg.model.embed).to(device)  # same on every rank
    gen = torch.Generator().manual_seed(cfg.seed)  # the permutations, identical on all ranks
    loader = SkipGramLoader(ids, counts, d, cfg.seed, o.batch_size, kind, generator=gen, rank=ddp.rank(),
                            world=ddp.world_size(), device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = {"skipgram": "skip-gram", "cbow": "CBOW"}[kind]
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, objective(kind), loader, {}, fit_cfg, run, rec)

    W = model.words.detach().float().cpu()  # (V, E)
    summary = {k: v for k, v in summarize(state, model).items() if k.startswith(("train/", "model/"))}
    summary.update({"data/vocab_size": float(len(vocab)), "data/examples_per_epoch": float(loader.n)})
    summary.update(embedding_tables(run, cfg.eval, W, vocab))
    if cfg.eval.beside and ddp.is_main():
        beside_table(run, cfg.eval, fit_cfg.label, W, vocab, summary)
    if ddp.is_main():
        save_npy(run.artifact_path("embeddings.npy"), W.numpy().astype(np.float32))
        fileio.write_json(run.artifact_path("vocab.json"), vocab.to_json())
        rec.finish(cfg.hparams(), summary)
    return summary


def embedding_tables(run, ev: Eval, W, vocab: Vocab) -> dict:
    """The nearest-words and analogy tables of the embeddings ``W`` (V, E); returns their summary."""
    from practicum.models.word2vec import analogy, nearest

    summary, rows = {}, []
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
    run.write_table("1_neighbours", ["query", f"{ev.neighbours} nearest by cosine", "expected"], rows,
                    f"nearest words ({len(vocab)} words; d2l's skip-gram: chip -> microprocessor 0.70-0.77)")

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
    run.write_table("2_analogies", ["analogy", "expected", "top 5 (3CosAdd)", "rank of expected"], arows,
                    f"analogies: {top1}/{asked} right at top 1, {top5}/{asked} in the top 5")
    summary["analogy/top1_accuracy"] = top1 / asked if asked else 0.0
    summary["analogy/top5_accuracy"] = top5 / asked if asked else 0.0
    return summary


# ---------------------------------------------------------------------------------------------
# Beside another embedding run (CBOW and GloVe beside skip-gram)

BESIDE_SCORES = [("train/loss", "final training loss (each model's own loss: not comparable across kinds)"),
                 ("neighbours/chip_microprocessor_cosine", "cosine(chip, microprocessor)"),
                 ("neighbours/chip_microprocessor_rank", "rank of microprocessor among chip's neighbours"),
                 ("analogy/top1_accuracy", "analogies right at top 1"),
                 ("analogy/top5_accuracy", "analogies right in the top 5"),
                 ("train/seconds_per_epoch", "seconds per epoch")]


def find_embedding_run(run, ref: str):
    """The finished run ``ref`` names (a run id / prefix, or ``latest:<experiment>``) that saved
    embeddings, or None when ``latest:`` finds none (the table then says how to make one)."""
    from pathlib import Path

    from practicum.errors import PracticumError

    if ref.startswith("latest:"):
        done = [r for r in run.index.list(ref.split(":", 1)[1]) if r.status == "finished" and r.id != run.id
                and (Path(r.dir) / "embeddings.npy").is_file() and (Path(r.dir) / "vocab.json").is_file()]
        return done[-1] if done else None
    record = run.index.find(ref)
    if record.status != "finished" or not (Path(record.dir) / "embeddings.npy").is_file():
        raise PracticumError(f"eval.beside = '{ref}': run {record.id} is {record.status} or saved no embeddings.npy")
    return record


def beside_table(run, ev: Eval, label: str, W, vocab: Vocab, summary: dict) -> None:
    """``3_beside``: each query's nearest words here and in the ``eval.beside`` run, side by side;
    ``4_beside_scores``: the summary numbers of both. Without such a run, a table that says so and
    names the command that makes one."""
    from pathlib import Path

    from practicum.models.word2vec import nearest

    def near(M, voc, q):
        if q not in voc:
            return "(not in the vocabulary)"
        return ", ".join(f"{voc.to_tokens(i)} {s:.3f}" for i, s in nearest(M, voc[q], ev.neighbours))

    record = find_embedding_run(run, ev.beside)
    if record is None:
        experiment = ev.beside.split(":", 1)[1]
        note = (f"no finished run of '{experiment}' in {run.index.path}: run 'practicum run {experiment}', "
                "then this entry again (with --force)")
        run.write_table("3_beside", ["query", f"{label} (this run)", experiment],
                        [[q, near(W, vocab, q), "(no run)"] for q in ev.queries], note)
        return
    other = f"{record.experiment} {record.id}"
    W2 = torch.from_numpy(np.load(Path(record.dir) / "embeddings.npy", allow_pickle=False)).float()
    vocab2 = Vocab.from_json(fileio.read_json(Path(record.dir) / "vocab.json"))
    run.write_table("3_beside", ["query", f"{label} (this run)", other],
                    [[q, near(W, vocab, q), near(W2, vocab2, q)] for q in ev.queries],
                    f"{ev.neighbours} nearest words by cosine: {label} beside {other} ({len(vocab)} and "
                    f"{len(vocab2)} words)")
    rows = [[what, round(summary[k], 4) if k in summary else "", round(record.summary[k], 4)
             if isinstance(record.summary.get(k), (int, float)) else ""] for k, what in BESIDE_SCORES]
    run.write_table("4_beside_scores", ["", f"{label} (this run)", other], rows,
                    f"{label} beside {other} on the same queries and analogies")
    fileio.write_json(run.artifact_path("beside_source.json"), {"beside": ev.beside, "resolved_id": record.id,
                                                                "experiment": record.experiment})
