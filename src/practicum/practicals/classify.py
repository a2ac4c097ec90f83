"""Image classification in torch: seeds 000 (§3), 002, 003 and 004 on MNIST and Fashion-MNIST.

One task for every model of the zoo: the data set as uint8 tensors in memory, the model by preset
name, the optimizer/schedule/loss by registry name, and the shared fit loop (train/loop.py) with
its evaluation, best checkpoint, early stopping, exact resume, TensorBoard and DDP.

Writes, besides metrics.jsonl and tb/: ``model.pt`` (final weights), ``predictions.npz``
(test ``y_true``, ``y_pred``, ``mis_index`` of the misclassified, the first 32 of them as
``mis_images``, ``classes``, ``confusion``), ``tables/confusion.json``,
and checkpoints/last.pt, checkpoints/best.pt.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError


class Data(Section):
    name: Literal["mnist", "fashion-mnist"] = "mnist"
    train_limit: int | None = Field(None, gt=0, description="use the first N training images")
    test_limit: int | None = Field(None, gt=0, description="use the first N test images")
    val_size: int = Field(0, ge=0, description="hold out the last N training images as split 'val'")
    image_size: int | None = Field(None, gt=0, description="model input size (resized per batch); "
                                   "default: the model preset's own size")
    normalize: bool = Field(True, description="subtract the training set's mean, divide by its std")
    shift: int = Field(0, ge=0, description="training augmentation: random translation up to N pixels")


class Model(Section):
    name: str = "lenet5"
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="family options for build_model (hidden, activation, ...)")
    init_from: str | None = Field(None, description="start from another run's weights: run id, id prefix, "
                                  "run directory, or experiment name (its latest finished run)")
    init_weights: Literal["final", "best"] = Field("final", description="init_from: the run's final "
                                                   "weights (model.pt) or its checkpoints/best.pt")
    new_head: bool = Field(False, description="init_from: start the head fresh (always when the class "
                           "counts differ)")
    freeze_body: bool = Field(False, description="train the head only (the rest keeps its weights)")

    def resolved(self) -> dict:
        from practicum.models import MODELS  # imports torch: only when an identity is asked for

        if self.name not in MODELS:
            return {}  # build_model names the valid presets when the run starts
        preset = MODELS[self.name]
        return {"class": f"{preset.cls.__module__}.{preset.cls.__qualname__}", "preset": preset.defaults}


class Schedule(Section):
    name: str = Field("constant", description="constant | step | cosine | onecycle")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up (combines with any schedule)")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up in steps (overrides warmup_epochs)")
    step_epochs: float = Field(1.0, gt=0, description="step: multiply by gamma every N epochs")
    gamma: float = Field(0.1, gt=0)
    final: float | None = Field(None, ge=0, description="cosine/onecycle: final multiplier of lr")
    pct_start: float | None = Field(None, gt=0, lt=1, description="onecycle: share of steps going up")
    start: float | None = Field(None, gt=0, description="onecycle: starting multiplier of lr")


class Optim(Section):
    name: str = Field("adam", description="sgd | adam | adamw | adagrad | adadelta | rmsprop, or the "
                      "from-scratch scratch-{sgd,momentum,adagrad,rmsprop,adadelta,adam}")
    lr: float = Field(1e-3, gt=0)
    head_lr_mult: float = Field(1.0, gt=0, description="the head's lr is lr times this (D2L fine-tuning: 10)")
    batch_size: int = Field(64, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd, rmsprop")
    nesterov: bool = False
    weight_decay: float | None = Field(None, ge=0, description="default: the optimizer's own")
    betas: tuple[float, float] | None = None
    eps: float | None = None
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    schedule: Schedule = Schedule()


class Train(Section):
    epochs: int = Field(10, gt=0)
    loss: str = Field("cross_entropy", description="cross_entropy | nll | label_smoothing")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    eval_batch_size: int = Field(1000, gt=0)
    drop_last: bool = False
    log_steps: int = Field(0, ge=0, description="log training metrics every N steps (0: per epoch)")
    eval_steps: int = Field(0, ge=0, description="evaluate every N steps, besides every epoch end")
    eval_epochs: int = Field(1, gt=0, description="evaluate at the end of every N-th epoch (and the last)")
    checkpoint_steps: int = Field(0, ge=0, description="checkpoint every N steps, besides epoch ends")
    best_metric: str | None = Field("test/accuracy", description="split/metric for checkpoints/best.pt "
                                    "('' for none)")
    early_stop_patience: int | None = Field(None, gt=0, description="evaluations without a new best")
    restore_best: bool = Field(False, description="final metrics of the best checkpoint, not the last")
    bf16: bool = Field(False, description="bfloat16 autocast (slow on CPUs without native bf16)")
    channels_last: bool = False
    threads: int = Field(1, ge=0, description="torch threads per process; 0: torch's own (OMP_NUM_THREADS "
                         "or all cores, divided among DDP processes). 1 by default: on a 2-core machine "
                         "shared with other jobs, 2 OpenMP threads spin-wait and run up to 20x slower")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    tensorboard: bool = True
    progress: bool = True


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()


# ---------------------------------------------------------------------------------------------


def load_data(cfg: Data):
    """(train, val or None, test) TensorSets of uint8 images."""
    from practicum.data.tensors import TensorSet
    from practicum.data.vision import load_mnist

    d = load_mnist(cfg.name)
    train = TensorSet.from_arrays(d.train_x[: cfg.train_limit], d.train_y[: cfg.train_limit], d.classes)
    test = TensorSet.from_arrays(d.test_x[: cfg.test_limit], d.test_y[: cfg.test_limit], d.classes)
    val = None
    if cfg.val_size:
        if cfg.val_size >= len(train):
            raise UsageError(f"data.val_size {cfg.val_size} leaves no training images (have {len(train)})")
        cut = len(train) - cfg.val_size
        train, val = train.subset(slice(0, cut)), train.subset(slice(cut, None))
    return train, val, test


def run(cfg: Config, run) -> dict:
    train_set, val_set, test_set = load_data(cfg.data)
    return fit_classifier(cfg, run, train_set, val_set, test_set)


def fit_classifier(cfg: Config, run, train_set, val_set, test_set, extra_outputs=None) -> dict:
    """Train and evaluate ``cfg.model`` on TensorSets (``val_set``/``test_set`` may be None).

    ``extra_outputs(model, pipeline)``, if given, writes further artifacts before the run is
    marked finished (the Kaggle practical's submission.csv).
    """
    import torch

    from practicum.data.tensors import Loader, Pipeline
    from practicum.models import MODELS, build_model, count_parameters
    from practicum.train import checkpoint, ddp
    from practicum.train.loop import FitConfig, Recorder, fit, scalars
    from practicum.train.optim import build_optimizer, build_schedule
    from practicum.train.tasks import classification

    t, world, rank = cfg.train, ddp.world_size(), ddp.rank()
    if t.threads or world > 1:
        torch.set_num_threads(t.threads or max(1, torch.get_num_threads() // world))  # before any work
    device = torch.device("cpu") if t.device == "cpu" else ddp.device_for_rank()
    if t.device == "cuda" and device.type != "cuda":
        raise UsageError("train.device = 'cuda' but no GPU is available")

    checkpoint.seed_everything(cfg.seed)
    image_size = cfg.data.image_size or MODELS[cfg.model.name].image_size
    mean, std = train_set.mean_std() if cfg.data.normalize else (None, None)
    flip = getattr(cfg.data, "flip", False)
    pipe = Pipeline(image_size=image_size, mean=mean, std=std, shift=cfg.data.shift, flip=flip,
                    channels_last=t.channels_last)
    eval_pipe = Pipeline(image_size=image_size, mean=mean, std=std, channels_last=t.channels_last)

    # The same initial weights on every rank (DDP would broadcast rank 0's anyway).
    model = build_model(cfg.model.name, num_classes=len(train_set.classes), in_channels=train_set.x.shape[1],
                        image_size=image_size, **cfg.model.options)
    head = head_name(model)
    if cfg.model.init_from:
        init_from_run(model, cfg.model, run.index)
    if cfg.model.freeze_body:
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(head + "."))
    model = model.to(device)
    if t.channels_last:
        model = model.to(memory_format=torch.channels_last)
    if rank:
        torch.manual_seed(cfg.seed + 1_000_003 * rank)  # dropout: a different stream per rank

    data_gen = torch.Generator().manual_seed(cfg.seed)  # permutations and shifts, identical on all ranks
    loader = Loader(train_set, cfg.optim.batch_size, pipe, train=True, generator=data_gen,
                    drop_last=t.drop_last, rank=rank, world=world, device=device)
    shard = dict(train=False, rank=rank, world=world, device=device)  # evaluation: a contiguous shard per rank
    evals = {"val": Loader(val_set, t.eval_batch_size, eval_pipe, **shard)} if val_set is not None else {}
    if test_set is not None:
        evals["test"] = Loader(test_set, t.eval_batch_size, eval_pipe, **shard)

    o, s = cfg.optim, cfg.optim.schedule
    steps = loader.steps_per_epoch
    # Two parameter groups, body and head, so the head can learn faster (D2L fine-tuning: x10);
    # frozen parameters are left out. One group when they share a rate.
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(head + ".")]
    top = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(head + ".")]
    groups = [g for g in ({"params": body, "lr": o.lr}, {"params": top, "lr": o.lr * o.head_lr_mult})
              if g["params"]]
    opt = build_optimizer(o.name, groups, o.lr, momentum=o.momentum, nesterov=o.nesterov,
                          weight_decay=o.weight_decay, betas=o.betas, eps=o.eps)
    warmup = s.warmup_steps if s.warmup_steps is not None else round(s.warmup_epochs * steps)
    sched = build_schedule(opt, s.name, total_steps=t.epochs * steps, warmup_steps=warmup,
                           step_size=max(1, round(s.step_epochs * steps)), gamma=s.gamma, final=s.final,
                           pct_start=s.pct_start, start=s.start)
    task = classification(len(train_set.classes), t.loss, t.label_smoothing)

    fit_cfg = FitConfig(epochs=t.epochs, log_steps=t.log_steps, eval_steps=t.eval_steps, eval_epochs=t.eval_epochs,
                        checkpoint_steps=t.checkpoint_steps, best_metric=t.best_metric or None,
                        early_stop_patience=t.early_stop_patience, restore_best=t.restore_best,
                        grad_clip=o.grad_clip, bf16=t.bf16, progress=t.progress)
    rec = Recorder(run, tensorboard=t.tensorboard)
    state = fit(model, opt, sched, task, loader, evals, fit_cfg, run, rec)

    summary = {f"{split}/{k}": v for split, res in state.last_eval.items() for k, v in scalars(res).items()}
    summary.update({f"train/{k}": float(v) for k, v in state.last_train.items()})
    summary.update({
        "train/seconds_per_epoch": float(np.mean(state.epoch_seconds)) if state.epoch_seconds else float("nan"),
        "train/epochs": float(state.epoch),
        "train/steps": float(state.step),
        "train/stopped_early": float(state.stopped_early),
        "train/processes": float(world),
        "model/parameters": float(count_parameters(model)),
        "model/trainable_parameters": float(count_parameters(model, trainable_only=True)),
    })
    if state.best is not None:
        summary["best/" + t.best_metric] = state.best
        summary["best/step"] = float(state.best_step)
    if ddp.is_main():
        if test_set is not None:
            save_outputs(run, model, test_set, state.last_eval["test"])
        else:
            checkpoint.save(run.artifact_path("model.pt"), {"model": model.state_dict()})
        if extra_outputs is not None:
            extra_outputs(model, eval_pipe)
        rec.finish(cfg.hparams(), summary)
    return summary


# ---------------------------------------------------------------------------------------------
# Starting from another run's weights


def head_name(model) -> str:
    """The classifier head: the last Linear, else the last Conv2d (NiN's class maps)."""
    from torch import nn

    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    names = names or [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    return names[-1]


def find_init_run(ref: str, index):
    """The run ``model.init_from`` names: a run directory, an experiment's latest finished run,
    or a run id / id prefix."""
    from practicum.config import catalog

    if not Path(ref).is_dir():
        finished = [r for r in index.list(experiment=ref) if r.status == "finished"]
        if finished:
            return finished[-1]
    try:
        return index.find(ref)
    except UsageError:
        hint = (f"; run 'practicum run {ref}' first" if ref in catalog()
                else " (see 'practicum runs')")
        raise UsageError(f"model.init_from = '{ref}': no run with that id or directory and no finished run "
                         f"of an experiment of that name in {index.path}{hint}") from None


def init_from_run(model, cfg: Model, index) -> None:
    """Load another run's weights into ``model`` (``torch.load(weights_only=True)``). Tensors whose
    shape differs must all be in the head, which then keeps its fresh initialisation."""
    from practicum.train import checkpoint

    record = find_init_run(cfg.init_from, index)
    path = Path(record.dir) / ("model.pt" if cfg.init_weights == "final" else "checkpoints/best.pt")
    if not path.is_file():
        raise UsageError(f"model.init_from = '{cfg.init_from}': run {record.id} ({record.status}) has no "
                         f"{path.name} at {path} (model.init_weights = '{cfg.init_weights}')")
    state = checkpoint.load(path)["model"]
    head, own = head_name(model), model.state_dict()
    in_head = lambda key: key.startswith(head + ".")
    foreign = sorted(set(state) ^ set(own))
    mismatched = [k for k in state if k in own and state[k].shape != own[k].shape]
    if foreign or any(not in_head(k) for k in mismatched):
        bad = foreign or [k for k in mismatched if not in_head(k)]
        raise UsageError(f"model.init_from = '{cfg.init_from}': run {record.id}'s weights do not fit model "
                         f"'{cfg.name}' ({', '.join(bad[:4])} differ); only the head ({head}) may")
    if mismatched or cfg.new_head:  # a new task: the head keeps its fresh weights
        state = {k: v for k, v in state.items() if not in_head(k)}
    model.load_state_dict(state, strict=False)


def save_outputs(run, model, test_set, results: dict) -> None:
    """Final weights, test predictions and the confusion matrix, for reports to read later."""
    import torch

    from practicum.train import checkpoint

    checkpoint.save(run.artifact_path("model.pt"), {"model": model.state_dict()})
    y_true, y_pred = test_set.y.numpy(), results["predictions"].numpy().astype(np.int64)
    confusion = results["confusion"].numpy()
    classes = test_set.classes
    wrong = np.flatnonzero(y_true != y_pred)
    shown = test_set.x[torch.from_numpy(wrong[:32])].numpy()  # (k, C, H, W) uint8, the report's grid
    shown = shown[:, 0] if shown.shape[1] == 1 else shown.transpose(0, 2, 3, 1)  # (k, H, W[, C])
    fileio.save_npz(run.artifact_path("predictions.npz"), y_true=y_true, y_pred=y_pred,
                    mis_index=wrong, mis_images=shown, classes=np.array(classes), confusion=confusion)
    fileio.write_json(run.dir / "tables" / "confusion.json", {
        "columns": ["true \\ predicted", *classes],
        "rows": [[name, *map(int, row)] for name, row in zip(classes, confusion)],
        "caption": "Confusion matrix on the test set (rows: true class, columns: predicted class)",
    })
