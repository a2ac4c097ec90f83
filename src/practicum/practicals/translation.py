"""Seed 003, d2l chapters 10-11: English -> French translation on Tatoeba's fra-eng pairs.

Three models, trained one after the other on the same pairs, batches and epochs budget:

- ``seq2seq``: GRU encoder-decoder, one context vector for the whole sentence (d2l 10.7);
- ``bahdanau``: the same with additive attention over the encoder outputs (d2l 11.4);
- ``transformer``: multi-head attention, positional encoding, add & norm (d2l 11.7).

Every model learns with teacher forcing and a cross-entropy masked to the real target tokens.
Held out: ``data.test_size`` distinct English sentences (never seen in training; *all* their
translations in the pool are references) and ``data.valid_size`` for the validation loss.
Reported per model: corpus BLEU-4 with greedy and with beam search, d2l's per-sentence BLEU
(k=2, best over references) averaged, d2l's four sentences with greedy and beam translations,
attention heat-maps for them, and a few held-out examples side by side.

Resume: a checkpoint per model at each epoch end; a model whose epochs are done is only evaluated.
"""

from __future__ import annotations

import math
import time
from typing import Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.text import TranslationData, build_array_nmt, load_translation
from practicum.models.masking import masked_ce
from practicum.models.seq2seq import beam_search, build_translator, greedy
from practicum.practicals.textkit import checkpoint, count_parameters, restore, write_table
from practicum.runs import Run
from practicum.metrics.bleu import bleu_d2l, corpus_bleu

MODEL_NAMES = ("seq2seq", "bahdanau", "transformer")
D2L_SENTENCES = ["go .", "i lost .", "he's calm .", "i'm home ."]
D2L_REFERENCES = ["va !", "j'ai perdu .", "il est calme .", "je suis chez moi ."]
LENGTH_BUCKETS = [(1, 3), (4, 4), (5, 99)]


class Data(Section):
    num_pairs: int | None = Field(30000, gt=0, description="the first N pairs of fra.txt (d2l: 600)")
    num_steps: int = Field(10, gt=1, description="tokens per sentence incl. <eos> (d2l: 10)")
    drop_longer: bool = Field(True, description="drop pairs longer than num_steps (false: truncate, as d2l)")
    test_size: int = Field(1500, ge=1, description="held-out distinct English sentences")
    valid_size: int = Field(500, ge=1)
    min_freq: int = Field(2, ge=0, description="rarer words become <unk> (d2l: 2)")


class RNNSpec(Section):
    embed: int = Field(256, gt=0)
    hidden: int = Field(256, gt=0)
    layers: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(0.005, gt=0)
    epochs: int = Field(15, gt=0)


class TransformerSpec(Section):
    d_model: int = Field(256, gt=0)
    heads: int = Field(4, gt=0)
    ffn_hidden: int = Field(512, gt=0)
    blocks: int = Field(2, gt=0)
    dropout: float = Field(0.2, ge=0, lt=1)
    lr: float = Field(0.001, gt=0)
    epochs: int = Field(15, gt=0)

    @model_validator(mode="after")
    def _heads_divide(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model {self.d_model} is not divisible by heads {self.heads}")
        return self


class Train(Section):
    models: list[Literal["seq2seq", "bahdanau", "transformer"]] = Field(list(MODEL_NAMES), min_length=1)
    batch_size: int = Field(128, gt=0)
    clip: float = Field(1.0, gt=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1, description="same for every model")
    threads: int = Field(1, gt=0, description="torch threads")

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
    data: Data = Data()
    train: Train = Train()
    seq2seq: RNNSpec = RNNSpec()
    bahdanau: RNNSpec = RNNSpec()
    transformer: TransformerSpec = TransformerSpec()
    decode: Decode = Decode()


# ---------------------------------------------------------------------------------------------


def model_kwargs(cfg: Config, name: str) -> dict:
    spec = getattr(cfg, name).model_dump()
    spec.pop("lr"), spec.pop("epochs")
    return spec


def batches(arrays, idx: np.ndarray, batch_size: int, rng: np.random.Generator | None = None):
    """Mini-batches over ``idx``, each cut to its longest source and target (padding columns cost
    as much as real ones). With ``rng`` (training) the order is bucketed: the shuffled indices are
    sorted by length within windows of 50 batches, and the batches shuffled again, so a batch
    holds sentences of similar length."""
    src, src_valid, tgt, tgt_valid = arrays
    chunks = [idx[i: i + batch_size] for i in range(0, len(idx), batch_size)]
    if rng is not None:
        window = 50 * batch_size
        chunks = []
        for w in range(0, len(idx), window):
            part = idx[w: w + window]
            part = part[np.argsort(tgt_valid[part] * 100 + src_valid[part], kind="stable")]
            chunks += [part[i: i + batch_size] for i in range(0, len(part), batch_size)]
        chunks = [chunks[i] for i in rng.permutation(len(chunks))]
    for b in chunks:
        S, T = int(src_valid[b].max()), int(tgt_valid[b].max())
        yield (torch.from_numpy(src[b, :S]), torch.from_numpy(src_valid[b]), torch.from_numpy(tgt[b, :T]),
               torch.from_numpy(tgt_valid[b]))


def loss_on(model, src, src_valid, tgt, tgt_valid, bos: int, label_smoothing: float = 0.0, reduction="mean"):
    """Teacher forcing: the decoder reads <bos> y1 .. y_{T-1} and must predict y1 .. y_T."""
    dec_in = torch.cat([torch.full((tgt.shape[0], 1), bos, dtype=torch.long), tgt[:, :-1]], 1)
    logits, _ = model.decode(dec_in, model.encode(src, src_valid))  # (B, T, V)
    return masked_ce(logits, tgt, tgt_valid, reduction, label_smoothing)


@torch.no_grad()
def valid_loss(model, arrays, bos: int, batch_size: int) -> float:
    model.eval()
    total, count = 0.0, 0
    for src, src_valid, tgt, tgt_valid in batches(arrays, np.arange(len(arrays[0])), batch_size):
        total += float(loss_on(model, src, src_valid, tgt, tgt_valid, bos, reduction="sum"))
        count += int(tgt_valid.sum())
    model.train()
    return total / max(count, 1)


def train_model(name: str, cfg: Config, data: TranslationData, run: Run, start: int):
    spec = getattr(cfg, name)
    ckpt = run.checkpoint_path(f"{name}.pt")
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    model = build_translator(name, len(data.src_vocab), len(data.tgt_vocab), **model_kwargs(cfg, name))
    opt = torch.optim.Adam(model.parameters(), lr=spec.lr)
    bos = data.tgt_vocab["<bos>"]
    hist = restore(run, ckpt, model, opt, rng, spec.epochs, start) or {
        "epoch": 0, "steps": 0, "seconds": [], "valid_loss": [], "metrics_position": start}
    train = data.arrays["train"]
    for epoch in range(hist["epoch"] + 1, spec.epochs + 1):
        t0 = time.perf_counter()
        model.train()
        total, count = 0.0, 0
        for src, src_valid, tgt, tgt_valid in batches(train, rng.permutation(len(train[0])), cfg.train.batch_size,
                                                      rng):
            loss = loss_on(model, src, src_valid, tgt, tgt_valid, bos, cfg.train.label_smoothing)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.train.clip)
            opt.step()
            n = int(tgt_valid.sum())
            total, count = total + loss.item() * n, count + n
            hist["steps"] += 1
        hist["seconds"].append(time.perf_counter() - t0)
        v = valid_loss(model, data.arrays["valid"], bos, 512)
        hist["valid_loss"].append(v)
        run.log({"loss": total / count, "perplexity": math.exp(total / count)}, split=f"train-{name}",
                step=hist["steps"], epoch=epoch)
        run.log({"loss": v, "perplexity": math.exp(v)}, split=f"valid-{name}", step=hist["steps"], epoch=epoch)
        hist["epoch"] = epoch
        checkpoint(run, ckpt, hist, model, opt, rng)
    model.eval()
    return model, hist


# -- evaluation --------------------------------------------------------------------------------


def encode_sources(sentences: list[list[str]], data: TranslationData):
    src, src_valid = build_array_nmt(sentences, data.src_vocab, data.num_steps)
    return torch.from_numpy(src), torch.from_numpy(src_valid)


def translate_greedy(model, sentences, data: TranslationData, with_attention=False, chunk: int = 256):
    bos, eos = data.tgt_vocab["<bos>"], data.tgt_vocab["<eos>"]
    out, attn = [], []
    for i in range(0, len(sentences), chunk):
        src, src_valid = encode_sources(sentences[i: i + chunk], data)
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
    out = []
    for s in sentences:
        src, src_valid = encode_sources([s], data)
        ids, _ = beam_search(model, src, src_valid, bos, eos, data.num_steps + 2, cfg.decode.beam_size,
                             cfg.decode.alpha)
        out.append(data.tgt_vocab.to_tokens(ids))
    return out


def best_d2l_bleu(pred, refs, k=2) -> float:
    return max(bleu_d2l(pred, r, k) for r in refs)


def attention_figure(sentences, translations, attn, path, title: str) -> None:
    """One heat-map per sentence: rows = emitted target tokens (+ <eos>), columns = source tokens."""
    from practicum.report.plots import plt, save

    fig, axes = plt.subplots(1, len(sentences), figsize=(3.2 * len(sentences), 3.2), squeeze=False)
    for ax, src, tgt, a in zip(axes[0], sentences, translations, attn):
        cols = src + ["<eos>"]
        rows = (tgt + ["<eos>"])[: a.shape[0]]
        ax.imshow(a[:, : len(cols)].numpy(), cmap="Reds", vmin=0, vmax=1)
        ax.set_xticks(range(len(cols)), cols, rotation=60, fontsize=8)
        ax.set_yticks(range(len(rows)), rows, fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    save(fig, path)


def run(cfg: Config, run: Run) -> dict:
    torch.set_num_threads(cfg.train.threads)
    d = cfg.data
    data = load_translation(d.num_pairs, d.num_steps, d.test_size, d.valid_size, cfg.seed, d.min_freq,
                            d.drop_longer)
    fileio.write_json(run.dir / "splits.json", data.record)

    examples = [s.split() for s in D2L_SENTENCES]
    rng = np.random.default_rng(cfg.seed + 1)
    shown = sorted(rng.choice(len(data.test_sources), min(cfg.decode.examples, len(data.test_sources)),
                              replace=False).tolist())
    beam_n = min(cfg.decode.beam_limit or len(data.test_sources), len(data.test_sources))
    results, sentence_rows, example_cols, outputs, by_length = [], [], {}, {}, {}
    summary = {"data/train_pairs": float(len(data.arrays["train"][0])),
               "data/test_sentences": float(len(data.test_sources)),
               "data/test_references": float(sum(map(len, data.test_references)))}
    start = 0  # metrics-file position where the next model's lines begin
    for name in cfg.train.models:
        model, hist = train_model(name, cfg, data, run, start)
        start = hist["metrics_position"]
        t0 = time.perf_counter()
        hyps = translate_greedy(model, data.test_sources, data)
        beams = translate_beam(model, data.test_sources[:beam_n], data, cfg)
        bleu = corpus_bleu(hyps, data.test_references)
        bleu_beam = corpus_bleu(beams, data.test_references[:beam_n])
        bleu_d2l_mean = float(np.mean([best_d2l_bleu(h, r) for h, r in zip(hyps, data.test_references)]))
        eval_seconds = time.perf_counter() - t0
        results.append([name, count_parameters(model), len(hist["seconds"]), float(np.median(hist["seconds"])),
                        math.exp(hist["valid_loss"][-1]), bleu, bleu_beam, bleu_d2l_mean, eval_seconds])
        summary.update({f"test/bleu_{name}": bleu, f"test/bleu_beam_{name}": bleu_beam,
                        f"test/bleu_d2l_{name}": bleu_d2l_mean,
                        f"valid/perplexity_{name}": math.exp(hist["valid_loss"][-1]),
                        f"model/parameters_{name}": float(count_parameters(model)),
                        f"train/seconds_{name}": float(sum(hist["seconds"]))})

        # d2l's four sentences, greedy and beam, and the attention behind the greedy ones
        attends = name != "seq2seq"
        if attends:
            ex_greedy, ex_attn = translate_greedy(model, examples, data, with_attention=True)
        else:
            ex_greedy = translate_greedy(model, examples, data)
        ex_beam = translate_beam(model, examples, data, cfg)
        for s, ref, g, b in zip(D2L_SENTENCES, D2L_REFERENCES, ex_greedy, ex_beam):
            sentence_rows.append([s, data.split_of.get(s, "not in the pool"), ref, name,
                                  " ".join(g), bleu_d2l(g, ref.split()), " ".join(b), bleu_d2l(b, ref.split())])
        if attends:
            attention_figure(examples, ex_greedy, ex_attn, run.figure_path(f"attention_{name}.png"),
                             f"{name}: attention over the source while emitting each token")
        example_cols[name] = [" ".join(hyps[i]) for i in shown]
        outputs[name] = {"greedy": [" ".join(h) for h in hyps], "beam": [" ".join(b) for b in beams]}
        for lo, hi in LENGTH_BUCKETS:
            idx = [i for i, s in enumerate(data.test_sources) if lo <= len(s) <= hi]
            by_length.setdefault((lo, hi), [len(idx)]).append(
                corpus_bleu([hyps[i] for i in idx], [data.test_references[i] for i in idx]) if idx else None)
        del model

    write_table(run, "1_bleu", ["model", "parameters", "epochs", "s/epoch", "valid ppl", "corpus BLEU (greedy)",
                                f"corpus BLEU (beam {cfg.decode.beam_size})", "mean d2l BLEU k=2 (greedy)",
                                "eval s"], results,
                f"held-out test: {len(data.test_sources)} English sentences never seen in training, "
                f"{summary['data/test_references']:.0f} references; beam on {beam_n}; trained on "
                f"{len(data.arrays['train'][0]):,} pairs (first {d.num_pairs} of fra.txt, <= {d.num_steps} tokens)")
    write_table(run, "2_d2l_sentences", ["english", "split", "reference", "model", "greedy", "d2l BLEU",
                                         f"beam {cfg.decode.beam_size}", "d2l BLEU (beam)"], sentence_rows,
                "d2l's four sentences (BLEU k=2 against d2l's reference; 'split' = where the sentence fell)")
    write_table(run, "4_bleu_by_length", ["english tokens", "sentences", *cfg.train.models],
                [[f">= {lo}" if hi == 99 else str(lo) if lo == hi else f"{lo}-{hi}", *v]
                 for (lo, hi), v in by_length.items()],
                "greedy corpus BLEU by source length (tokens incl. punctuation): attention should matter more "
                "for longer sentences")
    fileio.write_json(run.artifact_path("translations.json"), {
        "source": [" ".join(s) for s in data.test_sources],
        "references": [[" ".join(r) for r in refs] for refs in data.test_references], "models": outputs})
    rows = [[" ".join(data.test_sources[i]), " | ".join(" ".join(r) for r in data.test_references[i][:3]),
             *[example_cols[n][j] for n in cfg.train.models]] for j, i in enumerate(shown)]
    write_table(run, "3_test_examples", ["english", "references", *cfg.train.models], rows,
                "held-out sentences, greedy translations")

    bleus = {n: summary[f"test/bleu_{n}"] for n in cfg.train.models}
    if all(n in bleus for n in MODEL_NAMES):
        # > 0 when attention beats plain seq2seq and the Transformer beats both (the bar)
        summary["test/bleu_margin"] = min(bleus["bahdanau"] - bleus["seq2seq"],
                                          bleus["transformer"] - max(bleus["bahdanau"], bleus["seq2seq"]))
    summary["test/bleu"] = max(bleus.values())
    return summary
