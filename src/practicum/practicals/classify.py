"""Image classification in torch: seeds 000 (§3), 002, 003 and 004 on MNIST and Fashion-MNIST.

One task for every model of the zoo: the data set as uint8 tensors in memory, the model by preset
name, the optimizer/schedule/loss by registry name, and the shared fit loop (train/loop.py) with
its evaluation, best checkpoint, early stopping, exact resume, TensorBoard and DDP.

Writes, besides metrics.jsonl and tb/: ``model.pt`` (final weights), ``predictions.npz``
(test ``y_true``, ``y_pred``, ``mis_index`` of the misclassified, the first 32 of them as
``mis_images``, ``classes``, ``confusion``), ``tables/confusion.json``,
and checkpoints/last.pt, checkpoints/best.pt.

k-fold cross-validation (D2L 5.7): ``data.folds = K`` cuts the training set into K contiguous
folds and ``data.fold = k`` makes fold k the split 'val' and the other K - 1 the training data.
Such a run never loads the test set: a hyper-parameter chosen on the folds is then trained on all
the training data (folds off) and measured once on test. ``practicum run ENTRY --folds K`` runs the
K folds and reports mean ± std over them (sweeps.py, report/study.py); the run writes
``splits.json`` (the folds' or the held-out split's index ranges and the class counts of both).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, ValidationInfo, field_validator, model_validator

from practicum import fileio
from practicum.config import Experiment, Section
from practicum.errors import UsageError
from practicum.train import config


class Data(Section):
    name: Literal["mnist", "fashion-mnist"] = "mnist"
    train_limit: int | None = Field(None, gt=0, description="use the first N training images")
    test_limit: int | None = Field(None, gt=0, description="use the first N test images")
    val_size: int = Field(0, ge=0, description="hold out the last N training images as split 'val'")
    image_size: int | None = Field(None, gt=0, description="model input size (resized per batch); "
                                   "default: the model preset's own size")
    normalize: bool = Field(True, description="subtract the training set's mean, divide by its std")
    shift: int = Field(0, ge=0, description="training augmentation: random translation up to N pixels")
    policy: config.Policy = Field(config.Policy(), description="training augmentation after the shift: "
                                  "autoaugment | randaugment | augmix (data/autoaugment.py); none by default")
    folds: int = Field(0, ge=0, description="k-fold cross-validation: cut the training set (after "
                       "train_limit) into K contiguous folds; 0: no cross-validation. The test set is "
                       "not loaded")
    fold: int = Field(0, ge=0, description="with folds: the fold held out as split 'val' (0 .. K-1)")

    @model_validator(mode="after")
    def _folds_fit(self):
        if self.folds == 1:
            raise ValueError("data.folds = 1 leaves nothing to validate on: use 2 or more (0: no folds)")
        if self.folds and self.fold >= self.folds:
            raise ValueError(f"data.fold = {self.fold}: the folds are numbered 0 .. {self.folds - 1}")
        if not self.folds and self.fold:
            raise ValueError(f"data.fold = {self.fold} without data.folds: set data.folds = K too")
        if self.folds and self.val_size:
            raise ValueError("data.folds replaces data.val_size (the held-out fold is the split 'val'): "
                             "set data.val_size = 0")
        return self


class Model(Section):
    name: str = Field("lenet5", description="a preset of practicum.models (see 'practicum list')")
    options: dict[str, Any] = Field(default_factory=dict,
                                    description="family options for build_model (hidden, activation, ...)")
    init_from: str | None = Field(None, description="start from another run's weights: run id, id prefix, "
                                  "run directory, or experiment name (its latest finished run)")
    init_weights: Literal["final", "best"] = Field("final", description="init_from: the run's final "
                                                   "weights (model.pt) or its checkpoints/best.pt")
    new_head: bool = Field(False, description="init_from: start the head fresh (always when the class "
                           "counts differ)")
    freeze_body: bool = Field(False, description="train the head only (the rest keeps its weights)")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str, info: ValidationInfo) -> str:
        from practicum.models import MODELS, user  # imports torch: only when a file is loaded

        if not user.is_user_model(name):
            return config.in_registry(MODELS, name)
        model = user.resolve(name, base_dirs(info))
        return model.name  # a file as an absolute path: the run's config.toml runs from anywhere

    @model_validator(mode="after")
    def _options_fit(self):
        from practicum.models import MODELS, user

        kwargs = dict(num_classes=10, in_channels=1, image_size=28, **self.options)
        if user.is_user_model(self.name):
            user.resolve(self.name, []).check_options(**kwargs)
        else:
            MODELS[self.name].check(self.options)
        return self

    def resolved(self) -> dict:
        from practicum.models import MODELS, user

        if user.is_user_model(self.name):
            return user.resolve(self.name, []).identity()
        return MODELS[self.name].identity()


def base_dirs(info: ValidationInfo) -> list[Path]:
    """Where a relative model file is looked for: beside the experiment file, then here."""
    here = [Path(info.context["base_dir"])] if info.context and info.context.get("base_dir") else []
    return [*here, Path.cwd()]


class Optim(config.Optim):
    head_lr_mult: float = Field(1.0, gt=0, description="the head's lr is lr times this (D2L fine-tuning: 10)")


class Train(config.Train):
    loss: str = Field("cross_entropy", description="cross_entropy | nll | label_smoothing")
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    drop_last: bool = False

    @field_validator("loss")
    @classmethod
    def _known_loss(cls, name: str) -> str:
        return config.check_name("loss", name)


DDP = True  # on the shared fit loop: runs under --nproc N and torchrun


class Config(Experiment):
    data: Data = Data()
    model: Model = Model()
    optim: Optim = Optim()
    train: Train = Train()


# The batch each data set feeds a model: (channels, side, classes).
INPUTS = {"mnist": (1, 28, 10), "fashion-mnist": (1, 28, 10), "cifar10-kaggle-tiny": (3, 32, 10)}


def check_model(cfg: Config) -> None:
    """Your own model is built as ``fit_classifier`` builds it and run on a dummy (2, C, S, S)
    batch before the run is claimed (execute.start): a constructor or forward that raises is a
    one-line UsageError and leaves no run."""
    from practicum.models import user

    if not user.is_user_model(cfg.model.name):
        return
    import torch

    channels, side, classes = INPUTS[cfg.data.name]
    side = cfg.data.image_size or side
    user.resolve(cfg.model.name, []).check_build(
        dict(num_classes=classes, in_channels=channels, image_size=side, **cfg.model.options),
        inputs=(torch.zeros(2, channels, side, side),))


# ---------------------------------------------------------------------------------------------


def fold_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """K contiguous [start, stop) ranges covering 0 .. n-1, sizes n // k or n // k + 1.

    Contiguous, as D2L's ``get_k_fold_data``, rather than a seeded shuffle: the MNIST and
    Fashion-MNIST training files are already in random order (every fifth of either holds each
    class within a few percent), so the folds need no permutation to be balanced, and they stay
    the same for every seed: seeds then vary the training, not the partition.
    """
    return [(i * n // k, (i + 1) * n // k) for i in range(k)]


def load_data(cfg: Data):
    """(train, val or None, test or None) TensorSets of uint8 images; test is None with folds."""
    from practicum.data.tensors import TensorSet
    from practicum.data.vision import load_mnist

    d = load_mnist(cfg.name)
    train = TensorSet.from_arrays(d.train_x[: cfg.train_limit], d.train_y[: cfg.train_limit], d.classes)
    if cfg.folds:  # cross-validation looks at the training set only
        if cfg.folds > len(train):
            raise UsageError(f"data.folds {cfg.folds}: more folds than training images ({len(train)})")
        start, stop = fold_bounds(len(train), cfg.folds)[cfg.fold]
        rest = without_range(len(train), start, stop)
        return train.subset(rest), train.subset(slice(start, stop)), None
    test = TensorSet.from_arrays(d.test_x[: cfg.test_limit], d.test_y[: cfg.test_limit], d.classes)
    val = None
    if cfg.val_size:
        if cfg.val_size >= len(train):
            raise UsageError(f"data.val_size {cfg.val_size} leaves no training images (have {len(train)})")
        cut = len(train) - cfg.val_size
        train, val = train.subset(slice(0, cut)), train.subset(slice(cut, None))
    return train, val, test


def without_range(n: int, start: int, stop: int):
    """The indices 0 .. n-1 without [start, stop), in order: (n - (stop - start),) int64."""
    import torch

    return torch.cat([torch.arange(0, start), torch.arange(stop, n)])


def splits_record(cfg: Data, train_set, val_set) -> dict:
    """What splits.json says about a run with a validation split (folds or ``val_size``): how
    the training images were partitioned and the class counts of the two parts."""
    import torch

    n = len(train_set) + len(val_set)
    counts = lambda s: dict(zip(s.classes, torch.bincount(s.y, minlength=len(s.classes)).tolist()))
    if cfg.folds:
        how = {"how": "contiguous folds of the first N training images (after data.train_limit); fold "
               "data.fold is 'val', the others 'train'; the test set is not loaded",
               "folds": cfg.folds, "fold": cfg.fold, "bounds": fold_bounds(n, cfg.folds)}
    else:
        how = {"how": "the last data.val_size of the first N training images (after data.train_limit) are "
               "'val', held out of training; model selection looks only at them",
               "bounds": {"train": [0, n - len(val_set)], "val": [n - len(val_set), n]}}
    return {"dataset": cfg.name, "n": n, **how, "sizes": {"train": len(train_set), "val": len(val_set)},
            "class_counts": {"train": counts(train_set), "val": counts(val_set)}}


def run(cfg: Config, run) -> dict:
    from practicum.train import ddp

    train_set, val_set, test_set = load_data(cfg.data)
    if val_set is not None and ddp.is_main():
        fileio.write_json(run.dir / "splits.json", splits_record(cfg.data, train_set, val_set))
    return fit_classifier(cfg, run, train_set, val_set, test_set)


def fit_classifier(cfg: Config, run, train_set, val_set, test_set, extra_outputs=None) -> dict:
    """Train and evaluate ``cfg.model`` on TensorSets (``val_set``/``test_set`` may be None).

    ``extra_outputs(model, pipeline)``, if given, writes further artifacts before the run is
    marked finished (the Kaggle practical's submission.csv).
    """
    import torch

    from practicum.data.autoaugment import policy_transform
    from practicum.data.tensors import AugmentLoader, Loader, Pipeline
    from practicum.models import MODELS, build_model, user
    from practicum.report.augment import save_examples
    from practicum.train import checkpoint, ddp
    from practicum.train.device import resolve_device
    from practicum.train.loop import Recorder, evaluate_once, fit, scalars, summarize
    from practicum.train.consistency import with_consistency
    from practicum.train.objective import classification
    from practicum.train.optim import build_training

    t, world, rank = cfg.train, ddp.world_size(), ddp.rank()
    device = resolve_device(t.device)
    checkpoint.seed_everything(cfg.seed)
    natural = train_set.x.shape[-1] if user.is_user_model(cfg.model.name) else MODELS[cfg.model.name].image_size
    image_size = cfg.data.image_size or natural  # a preset's own size, or the data's for your own model
    mean, std = train_set.mean_std() if cfg.data.normalize else (None, None)
    flip = getattr(cfg.data, "flip", False)  # cifar_kaggle's Data has one
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
    policy = policy_augment(cfg.data.policy, pipe)
    if policy is None:
        loader = Loader(train_set, cfg.optim.batch_size, pipe, train=True, generator=data_gen,
                        drop_last=t.drop_last, rank=rank, world=world, device=device)
    else:  # a policy draws per image from the same generator, on the [0, 1] batch
        loader = AugmentLoader(train_set, cfg.optim.batch_size, policy, generator=data_gen, drop_last=t.drop_last,
                               rank=rank, world=world, device=device)
        if ddp.is_main():  # figures/augment_examples.png: what the policy does to six training images
            save_examples(run, policy_transform(cfg.data.policy), train_set.x[:6], cfg.data.policy, cfg.seed)
    shard = dict(train=False, rank=rank, world=world, device=device)  # evaluation: a contiguous shard per rank
    evals = {"val": Loader(val_set, t.eval_batch_size, eval_pipe, **shard)} if val_set is not None else {}
    test = Loader(test_set, t.eval_batch_size, eval_pipe, **shard) if test_set is not None else None
    selects = bool(t.best_metric or t.early_stop_patience)
    if test is not None and not selects:  # no model selection: the test curve may be drawn as it trains
        evals["test"] = test

    # Two parameter groups, body and head, so the head can learn faster (D2L fine-tuning: x10);
    # frozen parameters are left out. One group when they share a rate.
    o = cfg.optim
    body = [p for n, p in model.named_parameters() if p.requires_grad and not n.startswith(head + ".")]
    top = [p for n, p in model.named_parameters() if p.requires_grad and n.startswith(head + ".")]
    groups = [g for g in ({"params": body, "lr": o.lr}, {"params": top, "lr": o.lr * o.head_lr_mult})
              if g["params"]]
    opt, sched = build_training(o, groups, loader.steps_per_epoch, t.epochs)
    objective = classification(len(train_set.classes), t.loss, t.label_smoothing)
    if cfg.data.policy.views == 3:  # AugMix's clean image and two views: + the Jensen-Shannon consistency
        objective = with_consistency(objective, cfg.data.policy.jsd)

    rec = Recorder(run, tensorboard=t.tensorboard)
    fit_cfg = t.fit_config(o.grad_clip)
    fit_cfg.label = cfg.model.name
    state = fit(model, opt, sched, objective, loader, evals, fit_cfg, run, rec)
    if test is not None and selects:  # measured once, on the selected weights
        state.last_eval["test"] = evaluate_once(model, test, objective, fit_cfg.precision)
        rec.log(scalars(state.last_eval["test"]), split="test", step=state.step, epoch=float(state.epoch))

    summary = summarize(state, model, t.best_metric)
    if ddp.is_main():
        if test_set is not None:
            save_outputs(run, model, test_set, state.last_eval["test"])
        else:
            checkpoint.save(run.artifact_path("model.pt"), {"model": model.state_dict()})
        if extra_outputs is not None:
            extra_outputs(model, eval_pipe)
        rec.finish(cfg.hparams(), summary)
    return summary


def policy_augment(p: config.Policy, pipe):
    """An augmentation policy as ``AugmentLoader``'s transform, or None (the plain ``Loader``):
    (x in [0, 1], y, generator) -> the pipeline's shift and flip, the policy, then its resize
    and normalisation of every view (AugMix with its consistency loss: x (B, 3, C, H, W))."""
    from practicum.data.augment import random_flip, random_shift
    from practicum.data.autoaugment import policy_transform

    transform = policy_transform(p)
    if transform is None:
        return None

    def apply(x, y, gen):  # x (B, C, H, W) float in [0, 1]
        if pipe.shift:
            x = random_shift(x, pipe.shift, gen)
        if pipe.flip:
            x = random_flip(x, 0.5, gen)
        x = transform(x, gen)
        if x.ndim == 5:  # (B, 3, C, H, W): the views resized and normalised as one batch
            flat = pipe.finish(x.flatten(0, 1).contiguous())
            return flat.view(*x.shape[:2], *flat.shape[1:]), y
        return pipe.finish(x), y

    return apply


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
    run.write_table("confusion", ["true \\ predicted", *classes],
                    [[name, *map(int, row)] for name, row in zip(classes, confusion)],
                    "Confusion matrix on the test set (rows: true class, columns: predicted class)")
