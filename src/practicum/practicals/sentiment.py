"""Seed 003, d2l 16.1-16.3: sentiment classification with a BiLSTM and a TextCNN (Kim 2014).

Variants ``<arch>-<init>`` are trained one after the other on the same split, each by the shared
fit loop (train/loop.py) on ``run.scope(variant)``: metric splits ``train-<variant>``,
``val-<variant>``, ``test-<variant>``, checkpoints in ``checkpoints/<variant>/``, TensorBoard in
``tb/<variant>/``; a resumed run skips the variants already done and resumes the one it was in
at the step of its last checkpoint. ``arch`` is ``textcnn`` or ``bilstm``; ``init`` is ``random``
(U[-0.25, 0.25] rows, Kim's CNN-rand) or ``w2v`` (rows of the words a word2vec run knows are
copied from its saved ``embeddings.npy``, rescaled to the standard deviation of the random rows;
the other rows stay random). Both inits of one architecture start from the same random weights
and see the same batches, so the comparison isolates the embeddings.

``embed.w2v_run`` names the word2vec run: a run id (or unique prefix) or ``latest:<experiment>``
(the latest finished run of that experiment in this run store); the id used is recorded.

Data: each split is mapped to ids and padded once, into ids (N, T) (T = its longest text, at
most ``data.max_len``), lengths (N,) and labels (N,) tensors on the device; a batch is an index
gather of those rows (data/arrays.py) cut to the batch's longest text, so no Python runs per
sample while training.

- ``rt-polarity``: 10,662 snippets; one stratified split drawn with the seed -- test 10 %,
  validation ``val`` 10 %, train 80 % (Kim's 10-fold CV also held 10 % of each training fold out
  as his dev set); recorded in ``splits.json``. The catalog entry keeps the weights of the best
  ``val/accuracy`` (``train.best_metric``, ``train.restore_best``) and measures the test split
  once, on those weights.
- ``aclimdb-tiny``: d2l's 20 train / 20 test reviews (the files' own split; no validation split):
  the last epoch's weights, the test split measured at every epoch end.

Kim's max-norm constraint, ``optim.max_norm`` = s: after every optimizer step each class's row
of the output weights is rescaled to L2 norm s when it is longer (the objective's ``after_step``;
not gradient clipping, which is ``optim.grad_clip``).

Writes ``tables/1_accuracy.json``, ``tables/2_w2v_init.json``, ``splits.json`` and
``w2v_source.json``; the final (selected) weights of each variant are the ``model`` of
``checkpoints/<variant>/last.pt``.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.data.text import Vocab, pad_batch, read_imdb_tiny, read_rt_polarity, split_indices, splits_record
from practicum.errors import PracticumError, UsageError
from practicum.registry import nearest
from practicum.train import config

VARIANTS = ("textcnn-random", "textcnn-w2v", "bilstm-random", "bilstm-w2v")


class Data(Section):
    dataset: Literal["rt-polarity", "aclimdb-tiny"] = "rt-polarity"
    test_fraction: float = Field(0.1, gt=0, lt=1, description="rt-polarity: held-out test share")
    val_fraction: float = Field(0.1, ge=0, lt=1, description="rt-polarity: share held out as split 'val' "
                                "(for train.best_metric); 0: none")
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


class Optim(config.Optim):
    batch_size: int = Field(50, gt=0)
    max_norm: float | None = Field(3.0, gt=0, description="Kim's cap on the L2 norm of each class's output-"
                                   "weight row, applied after every step (not gradient clipping: grad_clip)")


class Train(config.Train):
    variants: list[str] = Field(list(VARIANTS), min_length=1, description="<arch>-<init>: arch textcnn, bilstm "
                                "or custom ([custom], your own), init random or w2v")

    @field_validator("variants")
    @classmethod
    def _known(cls, names):
        valid = [*VARIANTS, "custom-random", "custom-w2v"]
        for n in names:
            if n not in valid:
                raise ValueError(f"unknown variant '{n}'{nearest(n, valid)}: use {', '.join(valid)}")
        if len(set(names)) != len(names):
            raise ValueError("a variant is listed twice")
        return names


class Custom(Section):
    """Your own text classifier, trained as the ``custom-random`` / ``custom-w2v`` variants.

    Built as ``Class(vocab_size=V, embed=E, pad=index of <pad>, **options)``; it has an
    ``embedding`` (``nn.Embedding(V, E)``, which a w2v variant initialises) and ``forward(ids (B, T),
    lengths (B,))`` returns logits (B, 2). Kim's max-norm applies to its ``out`` Linear if it has one."""

    name: str | None = Field(None, description="'my_text.py:MyNet' (beside the experiment file) or 'module:MyNet'")
    options: dict[str, Any] = Field(default_factory=dict, description="keyword arguments of its constructor")

    @field_validator("name")
    @classmethod
    def _found(cls, name: str | None, info: ValidationInfo) -> str | None:
        from practicum.models import user
        from practicum.practicals.classify import base_dirs

        return None if name is None else user.resolve(name, base_dirs(info)).name  # the file, absolute

    @model_validator(mode="after")
    def _options_fit(self):
        from practicum.models import user

        if self.name:
            user.resolve(self.name, []).check_options(contract=("vocab_size", "embed", "pad"), key="custom.options",
                                                      vocab_size=2, embed=2, pad=0, **self.options)
        return self

    def resolved(self) -> dict:
        from practicum.models import user

        return user.resolve(self.name, []).identity() if self.name else {}


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


def check_model(cfg: "Config") -> None:
    """Your own text classifier (``custom.name``) is built (a 100-word vocabulary, the embedding
    width given) and run on a dummy (2, 8) batch before the run is claimed (execute.start): a
    constructor or forward that raises is a one-line UsageError and leaves no run."""
    if not cfg.custom.name or not any(v.startswith("custom-") for v in cfg.train.variants):
        return
    import torch

    from practicum.models import user

    user.resolve(cfg.custom.name, []).check_build(
        dict(vocab_size=100, embed=cfg.embed.dim, pad=0, **cfg.custom.options),
        inputs=(torch.ones(2, 8, dtype=torch.long), torch.full((2,), 8)))


class Config(Experiment):
    version = 2  # the fit loop: torch-drawn batches, step-exact resume, test on the selected weights

    data: Data = Data()
    embed: Embed = Embed()
    textcnn: TextCNNSpec = TextCNNSpec()
    bilstm: BiLSTMSpec = BiLSTMSpec()
    custom: Custom = Custom()
    optim: Optim = Optim()
    train: Train = Train()

    @model_validator(mode="after")
    def _custom_named(self):
        if any(v.startswith("custom-") for v in self.train.variants) and not self.custom.name:
            raise ValueError("train.variants has a custom variant: name your model in custom.name ('my_text.py:MyNet')")
        return self


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
    sizes = {"test": d.test_fraction, "val": d.val_fraction, "train": -1}
    if d.val_fraction == 0:
        sizes.pop("val")
    parts = split_indices(len(pool), sizes, cfg.seed, labels[pool])
    parts = {k: pool[v] for k, v in parts.items()}
    record = splits_record(parts, seed=cfg.seed, how="stratified random split of rt-polarity.pos + .neg "
                           "(index = line in .pos, then 5,331 + line in .neg)")
    return {k: ([texts[i] for i in v], labels[v]) for k, v in parts.items()}, record


def encode(texts: list[list[str]], labels: np.ndarray, vocab: Vocab, max_len: int | None, device) -> dict:
    """One split as tensors on ``device``, padded once: ids (N, T), lengths (N,), labels (N,)."""
    import torch

    ids, lengths = pad_batch([vocab[t] for t in texts], vocab["<pad>"], max_len)  # (N, T), (N,) >= 1
    return {"ids": torch.from_numpy(ids).to(device), "lengths": torch.from_numpy(lengths).to(device),
            "labels": torch.from_numpy(labels).to(device)}


def trim(batch: tuple) -> tuple:
    """(ids (B, T), lengths, labels) -> ids cut to (B, the batch's longest text)."""
    from practicum.data.arrays import trim_padding

    ids, lengths, labels = batch
    return trim_padding(ids, lengths), lengths, labels


def find_w2v(run, ref: str) -> tuple[str, Path]:
    """(run id, run directory) of the word2vec run ``ref`` in this run store."""
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
    return record.id, d


def load_w2v(cfg: Config, run) -> tuple[str, np.ndarray, Vocab]:
    """(run id, embeddings (V, E), vocab) of ``embed.w2v_run``: rank 0 looks it up in the index
    (the other ranks have none) and tells the others where it is."""
    from practicum.train import ddp

    found = find_w2v(run, cfg.embed.w2v_run) if ddp.is_main() else None
    w2v_id, d = ddp.broadcast_object(found)
    W = np.load(d / "embeddings.npy", allow_pickle=False)
    if W.shape[1] != cfg.embed.dim:
        raise UsageError(f"embed.dim = {cfg.embed.dim} but word2vec run {w2v_id} has {W.shape[1]}-d vectors")
    return w2v_id, W, Vocab.from_json(fileio.read_json(d / "vocab.json"))


def init_embedding(model, vocab: Vocab, w2v: tuple[np.ndarray, Vocab] | None) -> float:
    """Copy word2vec rows into the model's embedding; returns the share of vocabulary covered."""
    import torch

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


def objective(max_norm: float | None):
    """Cross-entropy on (ids, lengths, labels) batches, accuracy; Kim's max-norm after each step."""
    import torch
    import torch.nn.functional as F
    from torchmetrics.classification import MulticlassAccuracy

    from practicum.train.objective import Objective, Step

    def step(net, batch) -> Step:
        ids, lengths, y = batch  # (B, T), (B,), (B,)
        logits = net(ids, lengths).float()  # (B, 2)
        correct = (logits.detach().argmax(1) == y).sum()
        return Step(F.cross_entropy(logits, y), len(y), (logits, y), {"accuracy": correct})

    @torch.no_grad()
    def renorm(model) -> None:  # each class's weight row (2, F) back to norm <= s
        if isinstance(getattr(model, "out", None), torch.nn.Linear):  # your own model may have none
            model.out.weight.renorm_(2, 0, max_norm)

    return Objective(step, lambda: {"accuracy": MulticlassAccuracy(2, average="micro")},
                     after_step=renorm if max_norm else None)


def train_variant(variant: str, cfg: Config, arrays: dict, vocab: Vocab, w2v, run, device) -> dict:
    """One fit of one variant on ``run`` (its scope); test measured on the final weights."""
    import torch

    from practicum.data.arrays import ArrayLoader
    from practicum.models.textclass import build_classifier
    from practicum.train import ddp
    from practicum.train.loop import Recorder, evaluate_once, fit
    from practicum.train.optim import build_training

    arch, init = variant.split("-")
    t, o = cfg.train, cfg.optim
    world, rank = ddp.world_size(), ddp.rank()
    torch.manual_seed(cfg.seed)  # the same start for both inits of an architecture
    if arch == "custom":
        from practicum.models import user

        model = user.resolve(cfg.custom.name, []).build(vocab_size=len(vocab), embed=cfg.embed.dim, pad=vocab["<pad>"],
                                                        **cfg.custom.options)
    else:
        model = build_classifier(arch, len(vocab), cfg.embed.dim, pad=vocab["<pad>"], **getattr(cfg, arch).model_dump())
    coverage = init_embedding(model, vocab, w2v if init == "w2v" else None)
    model.embedding.weight.requires_grad_(not cfg.embed.freeze)
    model = model.to(device)
    if rank:
        torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout: a different stream per rank

    gen = torch.Generator().manual_seed(cfg.seed)  # the same batches for every variant, on every rank
    loader = ArrayLoader(arrays["train"], o.batch_size, train=True, generator=gen, collate=trim,
                         rank=rank, world=world, device=device)
    shard = dict(train=False, collate=trim, rank=rank, world=world, device=device)  # a contiguous shard per rank
    evals = {"val": ArrayLoader(arrays["val"], t.eval_batch_size, **shard)} if "val" in arrays else {}
    test = ArrayLoader(arrays["test"], t.eval_batch_size, **shard)
    selects = bool(t.best_metric or t.early_stop_patience)
    if not selects:  # no model selection: the test curve may be drawn as it trains
        evals["test"] = test

    opt, sched = build_training(o, [p for p in model.parameters() if p.requires_grad], loader.steps_per_epoch,
                                t.epochs)
    obj = objective(o.max_norm)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = variant
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, obj, loader, evals, fit_cfg, run, rec)
    if selects:  # measured once, on the selected weights (logged by ``run`` after the last variant)
        state.last_eval["test"] = evaluate_once(model, test, obj, fit_cfg.precision)
    best = t.restore_best and state.best_step is not None
    return {"variant": variant, "arch": arch, "init": init, "coverage": coverage, "model": model, "state": state,
            "rec": rec, "epoch": state.best_step / loader.steps_per_epoch if best else float(state.epoch)}


def run(cfg: Config, run) -> dict:
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import scalars, summarize

    t = cfg.train
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    data, record = load_splits(cfg)
    if t.best_metric and t.best_metric.split("/")[0] not in data:
        raise UsageError(f"train.best_metric = '{t.best_metric}': {cfg.data.dataset} has no split "
                         f"'{t.best_metric.split('/')[0]}' here (splits: {', '.join(data)})")
    vocab = Vocab(data["train"][0], cfg.data.min_freq, ["<pad>"])
    arrays = {split: encode(texts, y, vocab, cfg.data.max_len, device) for split, (texts, y) in data.items()}
    w2v, w2v_id = None, None
    if any(v.endswith("-w2v") for v in t.variants):
        w2v_id, W, w2v_vocab = load_w2v(cfg, run)
        w2v = (W, w2v_vocab)
    if ddp.is_main():
        fileio.write_json(run.dir / "splits.json", {"dataset": cfg.data.dataset, **record})
        if w2v_id:
            fileio.write_json(run.artifact_path("w2v_source.json"), {"w2v_run": cfg.embed.w2v_run,
                                                                     "resolved_id": w2v_id})

    results = [train_variant(v, cfg, arrays, vocab, w2v, run.scope(v), device) for v in t.variants]

    selects = bool(t.best_metric or t.early_stop_patience)
    if selects:  # the test lines follow the last variant's training: a resumed run writes them anew
        run.rewind_metrics(run.scope_start)
    summary = {}
    for r in results:
        state, v = r["state"], r["variant"]
        if selects:
            r["rec"].log(scalars(state.last_eval["test"]), split="test", step=state.step, epoch=float(state.epoch))
        r["summary"] = summarize(state, r["model"], t.best_metric)
        r["rec"].finish({**cfg.hparams(), "variant": v}, r["summary"])
        for split in ("train", "val", "test"):
            if f"{split}/accuracy" in r["summary"]:
                summary[f"{split}/accuracy_{v}"] = r["summary"][f"{split}/accuracy"]
        summary[f"train/steps_{v}"] = r["summary"]["train/steps"]
    first = results[0]["summary"]
    summary["test/accuracy"], summary["train/accuracy"] = first["test/accuracy"], first["train/accuracy"]
    summary["train/processes"] = float(ddp.world_size())

    n_test = len(data["test"][1])
    picked = (f"the weights of the best {t.best_metric}" if selects and t.restore_best
              else "the last epoch's weights")
    rows = [[r["variant"], int(r["summary"]["model/parameters"]),
             f"{r['coverage']:.1%}" if r["init"] == "w2v" else "-", round(r["epoch"], 2),
             r["summary"]["train/accuracy"], r["summary"].get("val/accuracy"), r["summary"]["test/accuracy"],
             r["summary"]["train/seconds_per_epoch"]] for r in results]
    sizes = ", ".join(f"{k} {len(v[1])}" for k, v in data.items())
    run.write_table("1_accuracy", ["variant", "parameters", "vocab from w2v", "epoch", "train acc", "val acc",
                                   "test acc", "s/epoch"], rows,
                    f"{cfg.data.dataset} ({sizes}; vocab {len(vocab)}): {'val and test' if 'val' in data else 'test'} "
                    f"accuracy of {picked}; "
                    "train acc: mean over the last epoch's batches" + (f"; word2vec run {w2v_id}" if w2v_id else ""))
    se = 2 * math.sqrt(2 * 0.25 / n_test)  # ~2 standard errors of a difference of two accuracies
    verdicts = []
    for arch in ("textcnn", "bilstm", "custom"):
        acc = {r["init"]: r["summary"]["test/accuracy"] for r in results if r["arch"] == arch}
        if {"random", "w2v"} <= set(acc):
            gain = acc["w2v"] - acc["random"]
            summary[f"test/w2v_gain_{arch}"] = gain
            verdict = "helps" if gain > se else "hurts" if gain < -se else "no clear difference"
            verdicts.append([arch, acc["random"], acc["w2v"], gain, f"{verdict} (|gain| vs {se:.3f})"])
    if verdicts:
        run.write_table("2_w2v_init", ["model", "random init", "word2vec init", "gain", "verdict (2 s.e.)"],
                        verdicts, f"does initialising from word2vec (run {w2v_id}) help? test accuracy on {n_test} "
                        "examples")
    return summary
