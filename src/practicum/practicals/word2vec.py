"""Seed 003, d2l 15.1-15.4: word2vec (skip-gram, negative sampling) on the Penn Treebank.

    PTB train sentences -> vocabulary (min_freq 10: 6,719 words, d2l's) -> per epoch: subsample
    frequent words, draw a window per center, contexts + K noise words each (unigram^0.75)
    -> SkipGram scores (B, 60) -> masked sigmoid BCE -> Adam, by the shared fit loop

d2l draws the subsampling and the examples once; here they are redrawn each epoch (as word2vec's
C code does on the fly), as a function of (seed, epoch) only: a NumPy generator seeded with
``[seed, epoch]`` subsamples, draws the windows and the noise words, so a run resumed mid-epoch
rebuilds that epoch's examples exactly. The batches are slices of a permutation drawn from the
loader's torch generator (checkpointed by the loop). Every epoch trains on as many examples as
epoch 0 drew (the counts of two draws differ by about 0.1 %): a larger draw leaves a random few
out, a smaller one repeats a random few, so every epoch has the same number of steps. The loss
is the from-scratch ``sigmoid_bce`` (tests hold it equal to torch's).

There is no held-out split (the embeddings are judged by their neighbours), so no evaluation
during training and no best checkpoint: the final weights are the result.

Results: nearest neighbours by cosine similarity for ``eval.queries`` (d2l's "chip" first) and
analogies a : b :: c : d by 3CosAdd, as tables; ``embeddings.npy`` (center vectors, (V, E)) and
``vocab.json`` in the run for reuse (``sentiment`` loads them by run id).
"""

from __future__ import annotations

import io

import numpy as np
import torch
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.arrays import ArrayLoader
from practicum.data.text import Vocab, read_ptb, skipgram_examples, subsample
from practicum.train import config


class Data(Section):
    min_freq: int = Field(10, ge=1, description="rarer words are dropped (d2l: 10)")
    subsample_t: float = Field(1e-4, gt=0, description="subsampling threshold t (d2l: 1e-4)")
    max_window: int = Field(5, gt=0)
    num_noise: int = Field(5, gt=0, description="noise words per context word")
    limit: int | None = Field(None, gt=0, description="use the first N training sentences")


class Model(Section):
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


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    version = 2  # the fit loop: examples drawn per (seed, epoch), torch-drawn batches, step-exact resume

    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()
    eval: Eval = Eval()


class SkipGramLoader(ArrayLoader):
    """Training batches of skip-gram examples redrawn every epoch.

    ``order(epoch)`` is ``{"epoch": e, "perm": (n,) tensor}`` (the loop checkpoints it); the
    epoch's example arrays (centers (N,), contexts_negatives (N, L), labels (N, L), mask (N, L))
    are rebuilt by ``examples(epoch)``, on the device, when a batch of another epoch is asked for
    (a resumed run's first batch), and a batch is an index gather of them. n = the size of epoch
    0's draw: every epoch's permutation has n entries."""

    def __init__(self, sentences: list[np.ndarray], counts: np.ndarray, d: Data, seed: int, batch_size: int,
                 **kwargs):
        self.sentences, self.counts, self.d, self.seed = sentences, counts, d, seed
        self.noise = counts ** 0.75  # word2vec's noise distribution, unnormalised
        self.epoch = 0
        super().__init__(self.examples(0, kwargs.get("device", "cpu")), batch_size, train=True, **kwargs)

    def examples(self, epoch: int, device) -> dict:
        rng = np.random.default_rng([self.seed, epoch])  # this epoch's draws and nothing else's
        kept = subsample(self.sentences, self.counts, rng, self.d.subsample_t)
        ex = skipgram_examples(kept, self.d.max_window, self.d.num_noise, self.noise, rng)
        return {k: torch.from_numpy(ex[k]).to(device) for k in ("centers", "contexts_negatives", "labels", "mask")}

    def order(self, epoch: int = 0) -> dict:
        self.use(epoch)
        drawn = len(self.arrays["centers"])
        perm = torch.randperm(drawn, generator=self.generator)
        return {"epoch": epoch, "perm": perm.repeat(-(-self.n // drawn))[: self.n]}  # (n,)

    def batch(self, order: dict, step: int) -> tuple:
        self.use(order["epoch"])
        return super().batch(order["perm"], step)  # centers, contexts_negatives, labels, mask

    def use(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.arrays, self.epoch = self.examples(epoch, self.device), epoch


def objective():
    from practicum.models.word2vec import sigmoid_bce
    from practicum.train.objective import Objective, Step

    def step(net, batch) -> Step:
        centers, contexts_negatives, labels, mask = batch  # (B,), (B, L), (B, L), (B, L)
        logits = net(centers, contexts_negatives).float()  # (B, L) scores
        return Step(sigmoid_bce(logits, labels, mask), len(centers))

    return Objective(step)


def save_npy(path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    fileio.write_bytes(path, buf.getvalue())


def run(cfg: Config, run) -> dict:
    from practicum.models.word2vec import SkipGram
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

    model = SkipGram(len(vocab), cfg.model.embed).to(device)  # the same weights on every rank
    gen = torch.Generator().manual_seed(cfg.seed)  # the permutations, identical on all ranks
    loader = SkipGramLoader(ids, counts, d, cfg.seed, o.batch_size, generator=gen, rank=ddp.rank(),
                            world=ddp.world_size(), device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = "skip-gram"
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, objective(), loader, {}, fit_cfg, run, rec)

    W = model.center.weight.detach().float().cpu()  # (V, E)
    summary = {k: v for k, v in summarize(state, model).items() if k.startswith(("train/", "model/"))}
    summary.update({"data/vocab_size": float(len(vocab)), "data/examples_per_epoch": float(loader.n)})
    summary.update(embedding_tables(run, cfg.eval, W, vocab))
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
    run.write_table("2_analogies", ["analogy", "expected", "top 5 (3CosAdd)", "rank of expected"], arows,
                    f"analogies: {top1}/{asked} right at top 1, {top5}/{asked} in the top 5")
    summary["analogy/top1_accuracy"] = top1 / asked if asked else 0.0
    summary["analogy/top5_accuracy"] = top5 / asked if asked else 0.0
    return summary
