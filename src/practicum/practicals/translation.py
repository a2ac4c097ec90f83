"""Seed 003, d2l chapters 10-11: English -> French translation on Tatoeba's fra-eng pairs.

Three models, trained one after the other on the same pairs and batches, each by one call of the
shared fit loop (train/loop.py) on ``run.scope(name)``:

- ``seq2seq``: GRU encoder-decoder, one context vector for the whole sentence (d2l 10.7);
- ``bahdanau``: the same with additive attention over the encoder outputs (d2l 11.4);
- ``transformer``: multi-head attention, positional encoding, add & norm (d2l 11.7).

Every model learns with teacher forcing (``model(src, src_valid, dec_in)``: the decoder reads
<bos> y1 .. y_{T-1} and must predict y1 .. y_T) and a cross-entropy masked to the real target
tokens, weighted by their number. Batches (data/arrays.py's ArrayLoader) are cut to their longest
source and target, and bucketed as d2l does: the shuffled pairs sorted by length within windows
of 50 batches, then the batches shuffled, so a batch holds sentences of similar length.

Learning rate and epochs: ``optim.lr`` and ``train.epochs`` for every model, unless the model's
section sets its own ``lr`` / ``epochs`` (the Transformer wants a smaller rate than the GRUs).

Held out: ``data.test_size`` distinct English sentences (never seen in training; *all* their
translations in the pool are references) and ``data.val_size`` for the validation loss, on
which the best checkpoint is kept (``checkpoints/<model>/best.pt``, ``train.best_metric``).
Decoding and BLEU use those kept weights: corpus BLEU-4 (torchmetrics) with greedy and with beam
search, d2l's per-sentence BLEU (k=2, best over references) averaged, d2l's four sentences with
greedy and beam translations, attention heat-maps for them (report/translation.py, from
``attention.json``), and a few held-out examples side by side.
"""

from __future__ import annotations

import time
from statistics import fmean
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.arrays import ArrayLoader, trim_padding
from practicum.data.text import TranslationData, build_array_nmt, load_translation
from practicum.metrics.bleu import bleu_d2l, corpus_bleu
from practicum.metrics.perplexity import Perplexity, PerplexityRecorder
from practicum.models import count_parameters
from practicum.models.masking import masked_ce
from practicum.models.seq2seq import beam_search, build_translator, greedy
from practicum.report.translation import ATTENTION, attention_figures
from practicum.train import checkpoint, config, ddp
from practicum.train.device import resolve_device
from practicum.train.loop import evaluate_once, fit
from practicum.train.objective import Objective, Step
from practicum.train.optim import build_training

DDP = True  # on the shared fit loop: runs under --nproc N and torchrun

MODEL_NAMES = ("seq2seq", "bahdanau", "transformer")
D2L_SENTENCES = ["go .", "i lost .", "he's calm .", "i'm home ."]
D2L_REFERENCES = ["va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."]
LENGTH_BUCKETS = [(1, 3), (4, 4), (5, 99)]
BUCKET_WINDOW = 50  # batches sorted by length together


class Data(Section):
    num_pairs: int | None = Field(30000, gt=0, description="the first N pairs of fra.txt (d2l: 600)")
    num_steps: int = Field(10, gt=1, description="tokens per sentence incl. <eos> (d2l: 10)")
    drop_longer: bool = Field(True, description="drop pairs longer than num_steps (false: truncate, as d2l)")
    test_size: int = Field(1500, ge=1, description="held-out distinct English sentences")
    val_size: int = Field(500, ge=1, description="held-out distinct English sentences for split 'val'")
    min_freq: int = Field(2, ge=0, description="rarer words become <unk> (d2l: 2)")


class RNNSpec(Section):
    embed: int = Field(256, gt=0)
    hidden: int = Field(256, gt=0)
    layers: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    bidirectional: bool = Field(False, description="bidirectional encoder (Bahdanau et al.; d2l: false)")
    deep_output: bool = Field(False, description="the output layer also reads the context and the previous "
                              "word (Cho et al., Bahdanau et al.; d2l: false)")
    lr: float | None = Field(None, gt=0, description="this model's rate; default: optim.lr")
    epochs: int | None = Field(None, gt=0, description="this model's epochs; default: train.epochs")


class TransformerSpec(Section):
    d_model: int = Field(256, gt=0)
    heads: int = Field(4, gt=0)
    ffn_hidden: int = Field(512, gt=0)
    blocks: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float | None = Field(None, gt=0, description="this model's rate; default: optim.lr")
    epochs: int | None = Field(None, gt=0, description="this model's epochs; default: train.epochs")

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


class Optim(config.Optim):
    lr: float = Field(0.005, gt=0, description="every model's rate, unless its section sets one")
    batch_size: int = Field(128, gt=0)
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm")


class Train(config.Train):
    models: list[Literal["seq2seq", "bahdanau", "transformer"]] = Field(list(MODEL_NAMES), min_length=1)
    epochs: int = Field(15, gt=0, description="every model's epochs, unless its section sets them")
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="training loss only; the same for every model")
    threads: int = Field(1, ge=0, description="torch threads; 0: torch's own count")
    eval_batch_size: int = Field(512, gt=0)
    best_metric: str | None = Field("val/loss", description="split/metric for checkpoints/<model>/best.pt, "
                                    "whose weights are decoded")

    @field_validator("models")
    @classmethod
    def _unique(cls, names):
        if len(set(names)) != len(names):
            raise ValueError("a model is listed twice")
        return names


class Decode(Section):
    beam_size: int = Field(4, gt=0)
    alpha: float = Field(0.75, ge=0, description="length penalty: score = log P / L^alpha")
    beam_limit: int | None = Field(None, gt=0, description="beam-search only the first N test sentences")
    examples: int = Field(12, ge=0, description="held-out sentences shown side by side")


class Config(Experiment):
    version = 2  # on the fit loop: torch-generator buckets, per-model lr/epochs as overrides, best weights decoded

    data: Data = Data()
    optim: Optim = Optim()
    train: Train = Train()
    seq2seq: RNNSpec = RNNSpec()
    bahdanau: RNNSpec = RNNSpec()
    transformer: TransformerSpec = TransformerSpec()
    decode: Decode = Decode()


# ---------------------------------------------------------------------------------------------
# Batches and the objective


def model_kwargs(cfg: Config, name: str) -> dict:
    return getattr(cfg, name).model_dump(exclude={"lr", "epochs"})


def tensors(arrays: tuple, device) -> dict[str, torch.Tensor]:
    """A split's (src, src_valid, tgt, tgt_valid) arrays as tensors on the device."""
    return {k: torch.from_numpy(a).to(device) for k, a in zip(("src", "src_valid", "tgt", "tgt_valid"), arrays)}


def trim(batch: tuple) -> tuple:
    """Cut a batch to its longest source and target (padding columns cost as much as real ones)."""
    src, src_valid, tgt, tgt_valid = batch  # (B, S), (B,), (B, T), (B,)
    return trim_padding(src, src_valid), src_valid, trim_padding(tgt, tgt_valid), tgt_valid


def length_buckets(src_valid: torch.Tensor, tgt_valid: torch.Tensor, batch_size: int):
    """d2l-style bucketing as the loader's ``order_fn``: a permutation, sorted by (target, source)
    length within each window of ``BUCKET_WINDOW`` batches, cut into batches that are shuffled.
    A short last batch stays last (the loader cuts the order into equal slices)."""
    src_valid, tgt_valid = src_valid.cpu(), tgt_valid.cpu()  # the order is drawn on the CPU
    key = tgt_valid * (int(src_valid.max()) + 1) + src_valid  # (N,): target length first
    span = int(key.max()) + 1

    def order(generator: torch.Generator, epoch: int, n: int) -> torch.Tensor:  # noqa: ARG001
        perm = torch.randperm(n, generator=generator)
        window = torch.arange(n) // (BUCKET_WINDOW * batch_size)  # (N,) window of each position
        perm = perm[torch.argsort(window * span + key[perm], stable=True)]  # by length inside each window
        full = n // batch_size * batch_size
        batches = perm[:full].reshape(-1, batch_size)[torch.randperm(full // batch_size, generator=generator)]
        return torch.cat([batches.reshape(-1), perm[full:]])

    return order


def translation_objective(bos: int, label_smoothing: float) -> Objective:
    """Teacher forcing, cross-entropy over the real target tokens, weighted by their count."""

    def step(net, batch) -> Step:
        src, src_valid, tgt, tgt_valid = batch  # (B, S), (B,), (B, T), (B,)
        dec_in = torch.cat([torch.full_like(tgt[:, :1], bos), tgt[:, :-1]], 1)  # <bos> y1 .. y_{T-1}
        logits = net(src, src_valid, dec_in).float()  # (B, T, V)
        smoothing = label_smoothing if net.training else 0.0  # validation: the plain cross-entropy
        loss = masked_ce(logits, tgt, tgt_valid, "mean", smoothing)
        n = tgt_valid.sum()  # () int64, left on the device: int() here would wait for the GPU every step
        return Step(loss, n, (loss.detach(), n))

    return Objective(step, lambda: {"perplexity": Perplexity()})


def train_model(name: str, cfg: Config, data: TranslationData, arrays: dict, run, device):
    """One model, one ``fit`` on its scope of the run; returns it with the kept (best) weights,
    the loop's state and the validation results of those weights."""
    t, spec = cfg.train, getattr(cfg, name)
    o = cfg.optim if spec.lr is None else cfg.optim.model_copy(update={"lr": spec.lr})
    epochs = spec.epochs or t.epochs
    world, rank = ddp.world_size(), ddp.rank()
    checkpoint.seed_everything(cfg.seed)  # every model starts from the seed and sees the same batches
    model = build_translator(name, len(data.src_vocab), len(data.tgt_vocab), **model_kwargs(cfg, name)).to(device)
    if rank:
        torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout: a different stream per rank
    train, val = arrays["train"], arrays["val"]
    loader = ArrayLoader(train, o.batch_size, train=True, generator=torch.Generator().manual_seed(cfg.seed),
                         collate=trim, order_fn=length_buckets(train["src_valid"], train["tgt_valid"], o.batch_size),
                         rank=rank, world=world, device=device)
    val_loader = ArrayLoader(val, t.eval_batch_size, train=False, collate=trim, rank=rank, world=world, device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, epochs)
    objective = translation_objective(data.tgt_vocab["<bos>"], t.label_smoothing)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.epochs, fit_cfg.label = epochs, name
    rec = PerplexityRecorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, objective, loader, {"val": val_loader}, fit_cfg, run, rec)
    best = run.checkpoint_path("best.pt")
    if t.best_metric and best.exists():
        model.load_state_dict(checkpoint.load(best)["model"])
    kept = evaluate_once(model, val_loader, objective, fit_cfg.precision)  # every rank: metrics sync
    if ddp.is_main():
        rec.finish(cfg.hparams(), {f"val/{k}": float(v) for k, v in kept.items()})
    model.eval()
    return model, state, kept, loader.steps_per_epoch


# ---------------------------------------------------------------------------------------------
# Decoding the kept weights


def encode_sources(sentences: list[list[str]], data: TranslationData, device):
    src, src_valid = build_array_nmt(sentences, data.src_vocab, data.num_steps)
    return torch.from_numpy(src).to(device), torch.from_numpy(src_valid).to(device)


def translate_greedy(model, sentences, data: TranslationData, with_attention=False, chunk: int = 256):
    bos, eos = data.tgt_vocab["<bos>"], data.tgt_vocab["<eos>"]
    device = next(model.parameters()).device
    out, attn = [], []
    for i in range(0, len(sentences), chunk):
        src, src_valid = encode_sources(sentences[i: i + chunk], data, device)
        res = greedy(model, src, src_valid, bos, eos, data.num_steps + 2, with_attention)
        if with_attention:
            out += res[0]
            attn += res[1]
        else:
            out += res
    tokens = [data.tgt_vocab.to_tokens(ids) for ids in out]
    return (tokens, attn) if with_attention else tokens


def translate_beam(model, sentences, data: TranslationData, cfg: Config):
    bos, eos = data.tgt_vocab["<bos>"], data.tgt_vocab["<eos>"]
    device = next(model.parameters()).device
    out = []
    for s in sentences:
        src, src_valid = encode_sources([s], data, device)
        ids, _ = beam_search(model, src, src_valid, bos, eos, data.num_steps + 2, cfg.decode.beam_size,
                             cfg.decode.alpha)
        out.append(data.tgt_vocab.to_tokens(ids))
    return out


def best_d2l_bleu(pred, refs, k=2) -> float:
    return max(bleu_d2l(pred, r, k) for r in refs)


def run(cfg: Config, run) -> dict:
    d, t = cfg.data, cfg.train
    device = resolve_device(t.device)
    data = load_translation(d.num_pairs, d.num_steps, d.test_size, d.val_size, cfg.seed, d.min_freq,
                            d.drop_longer)
    if ddp.is_main():
        fileio.write_json(run.dir / "splits.json", data.record)

    examples = [s.split() for s in D2L_SENTENCES]
    rng = np.random.default_rng(cfg.seed + 1)
    shown = sorted(rng.choice(len(data.test_sources), min(cfg.decode.examples, len(data.test_sources)),
                              replace=False).tolist())
    beam_n = min(cfg.decode.beam_limit or len(data.test_sources), len(data.test_sources))
    results, sentence_rows, example_cols, outputs, by_length, attention = [], [], {}, {}, {}, {}
    summary = {"data/train_pairs": float(len(data.arrays["train"][0])),
               "data/test_sentences": float(len(data.test_sources)),
               "data/test_references": float(sum(map(len, data.test_references))),
               "train/processes": float(ddp.world_size())}
    arrays = {split: tensors(data.arrays[split], device) for split in ("train", "val")}  # on the device, once
    for name in t.models:
        model, state, kept, steps = train_model(name, cfg, data, arrays, run.scope(name), device)
        if not ddp.is_main():  # the other ranks only train
            continue
        t0 = time.perf_counter()
        hyps = translate_greedy(model, data.test_sources, data)
        beams = translate_beam(model, data.test_sources[:beam_n], data, cfg)
        bleu = corpus_bleu(hyps, data.test_references)
        bleu_beam = corpus_bleu(beams, data.test_references[:beam_n])
        bleu_d2l_mean = float(np.mean([best_d2l_bleu(h, r) for h, r in zip(hyps, data.test_references)]))
        eval_seconds = time.perf_counter() - t0
        val_ppl = float(kept["perplexity"])
        best_epoch = state.best_step / steps if state.best_step is not None else float(state.epoch)
        results.append([name, count_parameters(model), state.epoch, fmean(state.epoch_seconds or [float("nan")]),
                        val_ppl, bleu, bleu_beam, bleu_d2l_mean, best_epoch, eval_seconds])
        summary.update({f"test/bleu_{name}": bleu, f"test/bleu_beam_{name}": bleu_beam,
                        f"test/bleu_d2l_{name}": bleu_d2l_mean, f"val/perplexity_{name}": val_ppl,
                        f"model/parameters_{name}": float(count_parameters(model)),
                        f"train/seconds_{name}": float(sum(state.epoch_seconds))})

        # d2l's four sentences, greedy and beam, and the attention behind the greedy ones
        attends = name != "seq2seq"
        if attends:
            ex_greedy, ex_attn = translate_greedy(model, examples, data, with_attention=True)
            attention[name] = [{"source": s, "translation": g, "weights": a.tolist()}
                               for s, g, a in zip(examples, ex_greedy, ex_attn)]
        else:
            ex_greedy = translate_greedy(model, examples, data)
        ex_beam = translate_beam(model, examples, data, cfg)
        for s, ref, g, b in zip(D2L_SENTENCES, D2L_REFERENCES, ex_greedy, ex_beam):
            sentence_rows.append([s, data.split_of.get(s, "not in the pool"), ref, name,
                                  " ".join(g), bleu_d2l(g, ref.split()), " ".join(b), bleu_d2l(b, ref.split())])
        example_cols[name] = [" ".join(hyps[i]) for i in shown]
        outputs[name] = {"greedy": [" ".join(h) for h in hyps], "beam": [" ".join(b) for b in beams]}
        for lo, hi in LENGTH_BUCKETS:
            idx = [i for i, s in enumerate(data.test_sources) if lo <= len(s) <= hi]
            by_length.setdefault((lo, hi), [len(idx)]).append(
                corpus_bleu([hyps[i] for i in idx], [data.test_references[i] for i in idx]) if idx else None)
        del model
    if not ddp.is_main():
        return summary

    run.write_table("1_bleu", ["model", "parameters", "epochs", "s/epoch", "val ppl (kept weights)",
                               "corpus BLEU (greedy)", f"corpus BLEU (beam {cfg.decode.beam_size})",
                               "mean d2l BLEU k=2 (greedy)", "kept epoch", "eval s"], results,
                    f"held-out test: {len(data.test_sources)} English sentences never seen in training, "
                    f"{summary['data/test_references']:.0f} references; beam on {beam_n}; trained on "
                    f"{len(data.arrays['train'][0]):,} pairs (first {d.num_pairs} of fra.txt, <= {d.num_steps} "
                    f"tokens); decoded with the weights of the best {t.best_metric or 'last epoch'}")
    run.write_table("2_d2l_sentences", ["english", "split", "reference", "model", "greedy", "d2l BLEU",
                                        f"beam {cfg.decode.beam_size}", "d2l BLEU (beam)"], sentence_rows,
                    "d2l's four sentences (BLEU k=2 against d2l's reference; 'split' = where the sentence fell)")
    run.write_table("4_bleu_by_length", ["english tokens", "sentences", *t.models],
                    [[f">= {lo}" if hi == 99 else str(lo) if lo == hi else f"{lo}-{hi}", *v]
                     for (lo, hi), v in by_length.items()],
                    "greedy corpus BLEU by source length (tokens incl. punctuation): attention should matter more "
                    "for longer sentences")
    fileio.write_json(run.artifact_path("translations.json"), {
        "source": [" ".join(s) for s in data.test_sources],
        "references": [[" ".join(r) for r in refs] for refs in data.test_references], "models": outputs})
    rows = [[" ".join(data.test_sources[i]), " | ".join(" ".join(r) for r in data.test_references[i][:3]),
             *[example_cols[n][j] for n in t.models]] for j, i in enumerate(shown)]
    run.write_table("3_test_examples", ["english", "references", *t.models], rows,
                    "held-out sentences, greedy translations")
    if attention:
        fileio.write_json(run.artifact_path(ATTENTION), attention)
        attention_figures(run.dir)

    bleus = {n: summary[f"test/bleu_{n}"] for n in t.models}
    if all(n in bleus for n in MODEL_NAMES):
        # > 0 when attention beats plain seq2seq and the Transformer beats both (the bar)
        summary["test/bleu_margin"] = min(bleus["bahdanau"] - bleus["seq2seq"],
                                          bleus["transformer"] - max(bleus["bahdanau"], bleus["seq2seq"]))
    summary["test/bleu"] = max(bleus.values())
    return summary
