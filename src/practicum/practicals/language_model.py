"""Seed 003, d2l chapter 8/9: character language models on the Jay Chou lyrics or The Time Machine.

Several models are trained one after the other on the same data, the same batches, the same
optimizer and the same number of epochs (their order is ``model.names``), each by one call of
the shared fit loop (train/loop.py) on ``run.scope(name)``:

- ``rnn_scratch``: the RNN written out (one-hot input, explicit tanh update, d2l's clipping);
- ``rnn`` / ``gru`` / ``lstm``: ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` with a linear read-out.

With ``model.equal_params`` the plain RNN has ``model.hidden`` units and every other model gets
the width that gives it the same number of parameters, so "gated beats plain" is a comparison at
equal parameters (the table shows widths and counts).

Data: the corpus as one id tensor; the *last* ``val_fraction`` of it is held out as a contiguous
validation text (a language model must not see the middle of a held-out passage), recorded in
``splits.json``. Batches come from data/lm.py: d2l's sequential or random order of windows. In
the sequential order row b of a batch continues row b of the previous one, so the step carries
the hidden state (detached: truncated BPTT) in ``objective.memory``, which the loop checkpoints:
a run killed mid-epoch resumes with the very state it had. The epoch's first batch starts afresh.

Perplexity = exp(mean token cross-entropy), logged for training (the epoch's own batches) and for
``val``: the held-out text read sequentially in ``train.eval_batch_size`` rows, the state
carried. The best checkpoint (``checkpoints/<model>/best.pt``) is the lowest validation
perplexity, the number the report and the summary give per model.

Clipping: ``optim.grad_clip`` bounds the global gradient norm of every model. For
``rnn_scratch`` it is d2l's ``grad_clipping`` (models/rnn.py), run as the optimizer's step
pre-hook, so after backward and DDP's all-reduce and before the update, where the loop would
clip; the library models use the loop's ``clip_grad_norm_``. Both compute the same rescaling
(tests/test_seq_models.py holds them equal).

Samples: at the epochs in ``sample.epochs`` (after the epoch's last step) every model continues
each prefix greedily (d2l's ``predict``) and by sampling at ``sample.temperature`` from a
generator seeded with (seed, epoch, prefix), so the same seed gives the same text. They are kept
in the objective's memory, so a resumed run has them too.
"""

from __future__ import annotations

from statistics import fmean
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, ValidationInfo, field_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.lm import LMLoader
from practicum.data.text import Vocab, lm_corpus
from practicum.errors import UsageError
from practicum.metrics.perplexity import Perplexity, PerplexityRecorder, perplexity
from practicum.models import count_parameters
from practicum.registry import nearest
from practicum.models.rnn import (MODELS, build_lm, detach_state, grad_clipping, hidden_for_budget, lm_parameters,
                                  predict)
from practicum.train import checkpoint, config, ddp
from practicum.train.device import resolve_device
from practicum.train.loop import fit
from practicum.train.objective import Objective, Step
from practicum.train.optim import build_training

DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Data(Section):
    corpus: Literal["jaychou", "timemachine"] = "timemachine"
    token: Literal["char", "word"] = "char"
    max_tokens: int | None = Field(None, gt=0, description="use the first N tokens (d2l: 10000)")
    val_fraction: float = Field(0.1, gt=0, lt=1, description="the corpus' tail held out as split 'val'")
    sampler: Literal["sequential", "random"] = "sequential"
    num_steps: int = Field(35, gt=0, description="BPTT length")


class Model(Section):
    names: list[str] = Field(list(MODELS), min_length=1)
    hidden: int = Field(256, gt=0, description="width of the plain RNN (of every model without equal_params)")
    equal_params: bool = Field(True, description="give every model the parameter count of an 'rnn' of width hidden")
    layers: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1, description="between stacked layers")

    @field_validator("names")
    @classmethod
    def _known(cls, names: list[str], info: ValidationInfo) -> list[str]:
        from practicum.models import user
        from practicum.practicals.classify import base_dirs

        out = []
        for n in names:
            if user.is_user_model(n):  # your own: see USER_CONTRACT
                model = user.resolve(n, base_dirs(info))
                model.check_options(contract=USER_CONTRACT, key="model.names", methods=("begin_state",),
                                    vocab_size=2, hidden=2, layers=1, dropout=0.0)
                n = model.name
            elif n not in MODELS:
                raise ValueError(f"unknown model '{n}'{nearest(n, MODELS)}: use {', '.join(MODELS)} or 'file.py:Class'")
            out.append(n)
        if len(set(out)) != len(out):
            raise ValueError("a model is listed twice")
        return out

    def resolved(self) -> dict:
        from practicum.models import user

        return {n: user.resolve(n, []).identity() for n in self.names if user.is_user_model(n)}


# Your own language model in model.names ("my_lm.py:MyLM"): built as
# MyLM(vocab_size=V, hidden=H, layers=L, dropout=p); forward(X (B, T) ids, state or None) returns
# (logits (B, T, V), state); begin_state(batch_size) gives the zero state (for the samples).
USER_CONTRACT = ("vocab_size", "hidden", "layers", "dropout")


class Optim(config.Optim):
    lr: float = Field(0.002, gt=0)
    batch_size: int = Field(32, gt=0, description="rows of a batch (each num_steps tokens)")
    grad_clip: float | None = Field(1.0, gt=0, description="max global gradient norm (rnn_scratch: d2l's "
                                    "grad_clipping; the others: the loop's clip_grad_norm_)")


class Train(config.Train):
    epochs: int = Field(30, gt=0)
    threads: int = Field(1, ge=0, description="torch threads (small recurrent batches gain nothing from more "
                         "on a shared CPU); 0: torch's own count")
    eval_batch_size: int = Field(32, gt=0, description="rows the held-out text is cut into (read in order, "
                                 "the state carried; fewer when the text is short)")
    best_metric: str | None = Field("val/perplexity", description="split/metric for checkpoints/<model>/best.pt")


class Sample(Section):
    prefixes: list[str] = ["time traveller"]
    length: int = Field(50, gt=0, description="tokens generated after the prefix")
    epochs: list[int] = Field([], description="epochs to sample at; [] = 4 evenly spaced, the last included")
    temperature: float = Field(0.8, gt=0, description="for the sampled column (the greedy one is argmax)")


class Config(Experiment):
    version = 2  # on the fit loop: torch-generator batches, best checkpoint on val/perplexity

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
    return {n: m.hidden if n not in MODELS  # your own model: its width as given
            else hidden_for_budget(n, vocab_size, budget, 1 if n == "rnn_scratch" else m.layers) for n in m.names}


def check_model(cfg: Config) -> None:
    """Your own language models are built (a 28-token vocabulary, the width given) and run on a
    dummy (2, 5) batch before the run is claimed (execute.start): a constructor or forward that
    raises is a one-line UsageError and leaves no run."""
    from practicum.models import user

    m = cfg.model
    for name in (n for n in m.names if user.is_user_model(n)):
        user.resolve(name, []).check_build(dict(vocab_size=28, hidden=m.hidden, layers=m.layers, dropout=m.dropout),
                                           inputs=(torch.zeros(2, 5, dtype=torch.long), None))


def build(name: str, vocab_size: int, width: int, m) -> torch.nn.Module:
    from practicum.models import user

    if user.is_user_model(name):
        return user.resolve(name, []).build(vocab_size=vocab_size, hidden=width, layers=m.layers, dropout=m.dropout)
    return build_lm(name, vocab_size, width, m.layers, m.dropout)


def sample_epochs(cfg: Config) -> list[int]:
    if cfg.sample.epochs:
        return sorted(e for e in set(cfg.sample.epochs) if 1 <= e <= cfg.train.epochs)
    E = cfg.train.epochs
    return sorted({max(1, round(E * k / 4)) for k in range(1, 5)})


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


def to_device(state, device: torch.device):
    if isinstance(state, (tuple, list)):
        return tuple(s.to(device) for s in state)
    return state.to(device)


def lm_objective(after_step=None) -> Objective:
    """Next-token cross-entropy over (X, Y, fresh) batches; the hidden state rides in ``memory``."""
    memory: dict = {}

    def step(net, batch) -> Step:
        X, Y, fresh = batch  # (B, T) ids, (B, T) next ids, True: start from a zero state
        carried = None if fresh or "state" not in memory else to_device(memory["state"], X.device)
        logits, state = net(X, carried)  # (B, T, V); state (B, H), (L, B, H) or an LSTM's pair
        memory["state"] = detach_state(state)  # keep the values, cut the graph (truncated BPTT)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), Y.reshape(-1))  # mean over tokens
        return Step(loss, Y.numel(), (loss.detach(), Y.numel()))

    return Objective(step, lambda: {"perplexity": Perplexity()}, after_step, memory)


def train_model(name: str, width: int, cfg: Config, train_ids, val_ids, vocab: Vocab, run, device) -> dict:
    """One model, one ``fit`` on its scope of the run (resumed, or skipped when it is done)."""
    t, o, d = cfg.train, cfg.optim, cfg.data
    world, rank = ddp.world_size(), ddp.rank()
    from practicum.models.user import short_name

    checkpoint.seed_everything(cfg.seed)  # every model starts from the seed and sees the same batches
    model = build(name, len(vocab), width, cfg.model).to(device)
    name = short_name(name)  # your own model is called by its class from here on
    if rank:
        torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout: a different stream per rank
    gen = torch.Generator().manual_seed(cfg.seed)  # offsets and the random order
    loader = LMLoader(train_ids, o.batch_size, d.num_steps, sampler=d.sampler, train=True, generator=gen,
                      rank=rank, world=world, device=device)
    val = LMLoader(val_ids, t.eval_batch_size, d.num_steps, train=False, rank=rank, world=world, device=device)
    opt, sched = build_training(o, model.parameters(), loader.steps_per_epoch, t.epochs)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = name
    if name == "rnn_scratch" and o.grad_clip:
        def clip_from_scratch(*_) -> None:  # between backward (and DDP's all-reduce) and the update
            grad_clipping(model.parameters(), o.grad_clip)

        opt.register_step_pre_hook(clip_from_scratch)
        fit_cfg.grad_clip = None  # ... instead of the loop's clip_grad_norm_

    at_sample, steps = set(sample_epochs(cfg)), loader.steps_per_epoch

    def sample_at_epoch_end(model) -> None:
        done = sched.last_epoch  # optimizer steps so far: the schedule is stepped once per batch
        if done % steps == 0 and done // steps in at_sample:
            objective.memory.setdefault("samples", []).extend(samples(model, vocab, cfg, done // steps, name))

    objective = lm_objective(sample_at_epoch_end)
    rec = PerplexityRecorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, objective, loader, {"val": val}, fit_cfg, run, rec)
    result = {
        "name": name, "width": width, "params": count_parameters(model),
        "train_ppl": perplexity(state.last_train["loss"]), "val_ppl": float(state.last_eval["val"]["perplexity"]),
        "best_ppl": state.best if state.best is not None else float(state.last_eval["val"]["perplexity"]),
        "best_epoch": state.best_step / steps if state.best_step is not None else float(state.epoch),
        "seconds": fmean(state.epoch_seconds) if state.epoch_seconds else float("nan"),
        "samples": objective.memory.get("samples", []),
    }
    if ddp.is_main():
        rec.finish(cfg.hparams(), {"train/perplexity": result["train_ppl"], "val/perplexity": result["val_ppl"],
                                   "best/val/perplexity": result["best_ppl"]})
    return result


def held_out_cut(n: int, val_fraction: float) -> int:
    """Where the validation tail starts: tokens [0, cut) train, [cut, n) validate (the n-gram
    practical cuts here too, so its perplexities are on the same text)."""
    return int(n * (1 - val_fraction))


def run(cfg: Config, run) -> dict:
    d, o, t = cfg.data, cfg.optim, cfg.train
    device = resolve_device(t.device)
    ids, vocab = lm_corpus(d.corpus, d.token, d.max_tokens)
    cut = held_out_cut(len(ids), d.val_fraction)
    train_ids, val_ids = torch.from_numpy(ids[:cut]).to(device), torch.from_numpy(ids[cut:]).to(device)  # once
    probe = [LMLoader(train_ids, o.batch_size, d.num_steps, train=True), LMLoader(val_ids, 1, d.num_steps, train=False)]
    if not all(len(p) for p in probe):
        raise UsageError(f"data: {len(ids)} tokens are too few for batch_size {o.batch_size} x num_steps "
                         f"{d.num_steps} with val_fraction {d.val_fraction}")
    if ddp.is_main():
        fileio.write_json(run.dir / "splits.json", {
            "corpus": d.corpus, "token": d.token, "tokens": len(ids), "vocab_size": len(vocab),
            "how": "contiguous: the first tokens train, the tail is validation",
            "train": [0, cut], "val": [cut, len(ids)]})
        fileio.write_json(run.artifact_path("vocab.json"), vocab.to_json())

    from practicum.models.user import short_name

    results = [train_model(name, w, cfg, train_ids, val_ids, vocab, run.scope(short_name(name)), device)
               for name, w in widths(cfg, len(vocab)).items()]

    run.write_table("1_models", ["model", "hidden", "parameters", "train ppl (last)", "val ppl (last)",
                                 "val ppl (best)", "best epoch", "s/epoch"],
                    [[r["name"], r["width"], r["params"], r["train_ppl"], r["val_ppl"], r["best_ppl"],
                      r["best_epoch"], r["seconds"]] for r in results],
                    f"{d.corpus}: {len(train_ids):,} train / {len(val_ids):,} validation {d.token}s, vocab "
                    f"{len(vocab)}, {d.sampler} batches {o.batch_size}x{d.num_steps}, {o.name} lr "
                    f"{o.lr}, clip {o.grad_clip}, {t.epochs} epochs"
                    + (" (equal parameter counts)" if cfg.model.equal_params else ""))
    sample_rows = sorted((s for r in results for s in r["samples"]), key=lambda s: (s[0], [short_name(n) for n in cfg.model.names].index(s[1])))
    run.write_table("2_samples", ["epoch", "model", "prefix", "greedy", f"sampled (T={cfg.sample.temperature})"],
                    sample_rows, f"text from fixed prefixes ({cfg.sample.length} {d.token}s; seed {cfg.seed})")
    if ddp.is_main():
        fileio.write_json(run.artifact_path("samples.json"), sample_rows)

    summary = {"data/vocab_size": float(len(vocab)), "data/train_tokens": float(len(train_ids)),
               "train/processes": float(ddp.world_size())}
    for r in results:
        summary[f"val/perplexity_{r['name']}"] = float(r["best_ppl"])
        summary[f"train/perplexity_{r['name']}"] = float(r["train_ppl"])
        summary[f"model/parameters_{r['name']}"] = float(r["params"])
        summary[f"train/seconds_per_epoch_{r['name']}"] = float(r["seconds"])
    best = {r["name"]: r["best_ppl"] for r in results}
    summary["val/perplexity"] = float(min(best.values()))
    plain = [v for k, v in best.items() if k in ("rnn", "rnn_scratch")]
    gated = [v for k, v in best.items() if k in ("gru", "lstm")]
    if plain and gated:
        # relative perplexity gain of the worse gated model over the better plain RNN:
        # > 0 when every gated model beats every plain RNN on held-out perplexity
        summary["val/gated_gain"] = float(1 - max(gated) / min(plain))
    return summary
