"""The config sections every torch practical shares, so one concept has one key everywhere.

    [optim]   name, lr, batch_size, momentum, nesterov, weight_decay, betas, eps, grad_clip, [optim.schedule]
    [train]   epochs, device, threads, precision, channels_last, and the fit loop's settings
              (log_steps, eval_steps, eval_epochs, checkpoint_steps, best_metric, early stopping)
    Policy    an automatic augmentation policy (AutoAugment, RandAugment, AugMix) for image
              practicals: classify's ``data.policy``, multilabel's ``augment.policy``

The practicals that keep their own loop (the loop is the lesson: the GANs, style transfer,
activations, linear regression, the 2-D optimizer walks) subclass ``Compute``, the device,
threads and precision keys alone, and add the loop settings they honour under the same names.

A sweep axis such as ``optim.lr``, ``optim.batch_size`` or ``train.precision`` is written once for
every practical. A practical subclasses a section to add what only it has (classify's loss) or to
change a default (the language model's learning rate).

Names are checked when the file is loaded: an unknown optimizer, schedule or loss is a config
error naming the key and the nearest valid name, before any run directory exists.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from practicum.config import Section


def check_name(kind: str, name: str) -> str:
    """``name`` if the registry of ``kind`` holds it, else a ValueError naming the nearest one."""
    from practicum.train import optim  # the registries (imports torch: only when a file is loaded)

    registry = {"optimizer": optim.OPTIMIZERS, "schedule": optim.SCHEDULES, "loss": optim.LOSSES}[kind]
    return in_registry(registry, name)


def in_registry(registry, name: str) -> str:
    """``name``, or the registry's error (with the nearest valid name) as a ValueError, which the
    config loader reports with the file and the key."""
    from practicum.errors import UsageError

    try:
        registry[name]
    except UsageError as e:
        raise ValueError(str(e)) from None
    return name


class Schedule(Section):
    name: str = Field("constant", description="constant | step | cosine | onecycle")
    warmup_epochs: float = Field(0.0, ge=0, description="linear warm-up (combines with any schedule)")
    warmup_steps: int | None = Field(None, ge=0, description="warm-up in steps (overrides warmup_epochs)")
    step_epochs: float = Field(1.0, gt=0, description="step: multiply by gamma every N epochs")
    gamma: float = Field(0.1, gt=0)
    final: float | None = Field(None, ge=0, description="cosine/onecycle: final multiplier of lr")
    pct_start: float | None = Field(None, gt=0, lt=1, description="onecycle: share of steps going up")
    start: float | None = Field(None, gt=0, description="onecycle: starting multiplier of lr")

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_name("schedule", name)


class Optim(Section):
    name: str = Field("adam", description="sgd | adam | adamw | adagrad | adadelta | rmsprop, or the "
                      "from-scratch scratch-{sgd,momentum,adagrad,rmsprop,adadelta,adam}")
    lr: float = Field(1e-3, gt=0)
    batch_size: int = Field(64, gt=0)
    momentum: float = Field(0.0, ge=0, lt=1, description="sgd, rmsprop")
    nesterov: bool = False
    weight_decay: float | None = Field(None, ge=0, description="default: the optimizer's own")
    betas: tuple[float, float] | None = None
    eps: float | None = None
    grad_clip: float | None = Field(None, gt=0, description="max global gradient norm")
    schedule: Schedule = Schedule()

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        return check_name("optimizer", name)


class Compute(Section):
    """Where and how a torch practical computes: the ``[train]`` keys every one of them shares."""

    device: Literal["auto", "cpu", "cuda", "mps"] = Field("auto", description="auto: the GPU when one is present")
    threads: int = Field(0, ge=0, description="torch threads per process; 0: torch's own count (all cores), "
                         "divided among the sweep workers and DDP processes of this host")
    precision: Literal["fp32", "bf16", "auto"] = Field(
        "fp32", description="bf16: bfloat16 autocast; auto: bf16 on a GPU of compute capability >= 8.0 "
        "or a CPU with native bf16, else fp32")


class Train(Compute):
    """How to train: length, hardware and the fit loop's evaluation and checkpoint cadence."""

    epochs: int = Field(10, gt=0)
    eval_batch_size: int = Field(1000, gt=0)
    log_steps: int | None = Field(None, ge=0, description="log training metrics every N steps; default: "
                                  "about 60 points over the run; 0: at epoch ends only")
    eval_steps: int = Field(0, ge=0, description="evaluate every N steps, besides every epoch end")
    eval_epochs: int = Field(1, gt=0, description="evaluate at the end of every N-th epoch (and the last)")
    checkpoint_steps: int = Field(0, ge=0, description="checkpoint every N steps, besides epoch ends")
    best_metric: str | None = Field(None, description="split/metric for checkpoints/best.pt, e.g. "
                                    "'val/accuracy' (a validation split, never test)")
    early_stop_patience: int | None = Field(None, gt=0, description="evaluations without a new best")
    restore_best: bool = Field(False, description="final metrics of the best checkpoint, not the last")
    channels_last: bool = Field(False, description="NHWC memory layout for convolutions")
    tensorboard: bool = True
    progress: bool = True

    @field_validator("best_metric")
    @classmethod
    def _validation_split(cls, metric: str | None) -> str | None:
        if not metric:
            return None
        split = metric.split("/", 1)[0]
        if "/" not in metric:
            raise ValueError(f"'{metric}': expected split/metric, e.g. 'val/accuracy'")
        if split == "test":
            raise ValueError(f"'{metric}': model selection must not look at the test split; hold out a "
                             "validation split of the training data (e.g. data.val_size) and name it ('val/...')")
        return metric

    def fit_config(self, grad_clip: float | None = None):
        """The fit loop's settings (train/loop.py) from this section."""
        from practicum.train.loop import FitConfig

        return FitConfig(epochs=self.epochs, log_steps=self.log_steps, eval_steps=self.eval_steps,
                         eval_epochs=self.eval_epochs, checkpoint_steps=self.checkpoint_steps,
                         best_metric=self.best_metric, early_stop_patience=self.early_stop_patience,
                         restore_best=self.restore_best, grad_clip=grad_clip, precision=self.precision,
                         progress=self.progress, tensorboard=self.tensorboard)


class Policy(Section):
    """An automatic augmentation policy on the [0, 1] training images (data/autoaugment.py)."""

    name: Literal["none", "autoaugment", "randaugment", "augmix"] = "none"
    learned_on: Literal["imagenet", "cifar10", "svhn"] = Field(
        "imagenet", description="autoaugment: the sub-policies searched on this data set")
    num_ops: int = Field(2, ge=1, description="randaugment: N operations per image")
    magnitude: int = Field(9, ge=0, le=30, description="randaugment: M, the magnitude bin of 31 (0..30)")
    severity: int = Field(3, ge=1, le=10, description="augmix: the operations' strength, 1..10")
    width: int = Field(3, ge=1, description="augmix: chains mixed per image")
    depth: int = Field(-1, ge=-1, description="augmix: operations per chain; -1 = 1 to 3 at random")
    alpha: float = Field(1.0, gt=0, description="augmix: Dirichlet(alpha) chain weights, Beta(alpha, alpha) blend")
    jsd: float = Field(12.0, ge=0, description="augmix: weight of the Jensen-Shannon consistency between the "
                       "clean image and two AugMix views (three forward passes); 0 = one view, no consistency")
    cutout: int = Field(0, ge=0, description="after the policy: a square of N pixels filled with grey "
                        "(the AutoAugment paper's CIFAR recipe: 16); 0 = none")
    fill: float = Field(0.0, ge=0, le=1, description="what geometric operations fill with (0 = black)")

    @property
    def views(self) -> int:
        """Images per training sample the loader hands out: 3 for AugMix with its consistency loss."""
        return 3 if self.name == "augmix" and self.jsd > 0 else 1
