"""The problem-specific part of the fit loop: what one batch computes, and what to report.

The loop never unpacks a batch or calls the model itself. An ``Objective`` tells it

    step(net, batch) -> Step          the forward pass and the loss (nanoGPT's model(X, Y),
                                      d2l's training_step), on a training or an evaluation batch
    metrics() -> {name: Metric}       fresh torchmetrics, each updated with ``*step.out``
    after_step(model)                 optional: after each optimizer step (Kim's max-norm)
    memory                            optional: what the step carries from batch to batch (an RNN's
                                      hidden state); saved in checkpoints, so a resume is exact

A ``Step`` holds the scalar loss to minimise, its weight ``n`` in the means (samples, or target
tokens), ``out`` for the metrics, and cheap training ``sums`` (e.g. correct predictions) that the
loop adds up per log window and per epoch. Metrics whose result is not a scalar (a confusion
matrix) are returned by evaluation but not logged as curves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torchmetrics import CatMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from practicum.train.optim import build_loss


@dataclass
class Step:
    loss: torch.Tensor  # scalar, what backward() is called on
    n: int | torch.Tensor  # weight of this batch in the means: samples, or target tokens (a 0-d tensor)
    out: tuple = ()  # arguments of every metric's update(...)
    sums: dict[str, torch.Tensor | float] = field(default_factory=dict)  # training sums, divided by n


@dataclass
class Objective:
    step: Callable[[torch.nn.Module, Any], Step]
    metrics: Callable[[], dict[str, Metric]] = dict
    after_step: Callable[[torch.nn.Module], None] | None = None
    memory: dict[str, Any] = field(default_factory=dict)
    # Which way is better for each metric a config may select the best checkpoint by.
    higher_is_better: Callable[[str], bool] = lambda name: not any(w in name for w in ("loss", "perplexity"))


class Predictions(CatMetric):
    """The predicted class of every sample, in order (gathered over ranks, whose evaluation
    shards are contiguous, so the concatenation is in data order)."""

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:  # noqa: ARG002 - Metric API
        super().update(logits.argmax(1))


def classification(num_classes: int, loss: str = "cross_entropy", label_smoothing: float = 0.0) -> Objective:
    """Single-label classification of ``(x, y)`` batches: accuracy (micro: the share of correct
    predictions), the confusion matrix (rows = true class, columns = predicted) and the
    predictions themselves."""
    loss_fn = build_loss(loss, label_smoothing)

    def step(net, batch) -> Step:
        x, y = batch  # (B, C, H, W), (B,)
        logits = net(x).float()  # (B, K)
        return Step(loss_fn(logits, y), len(y), (logits, y), {"accuracy": (logits.detach().argmax(1) == y).sum()})

    def metrics() -> dict[str, Metric]:
        return {"accuracy": MulticlassAccuracy(num_classes, average="micro"),
                "confusion": MulticlassConfusionMatrix(num_classes), "predictions": Predictions()}

    return Objective(step, metrics)


def multilabel(num_labels: int, loss: str = "bce", threshold: float = 0.5) -> Objective:
    """Multi-label classification (a sigmoid per label, BCE on multi-hot or mixed soft targets):
    exact-match accuracy, per-label accuracy, micro/macro precision, recall, F1 and mAP
    (metrics/multilabel.py). Training batches count exact matches against the rounded targets."""
    from practicum.metrics.multilabel import metric_objects

    loss_fn = build_loss(loss)

    def step(net, batch) -> Step:
        x, y = batch  # (B, 3, S, S), (B, K) multi-hot or soft
        logits = net(x).float()
        exact = ((logits.detach() > 0) == (y > 0.5)).all(1).sum()
        return Step(loss_fn(logits, y), len(y), (logits, y), {"accuracy": exact})

    return Objective(step, lambda: metric_objects(num_labels, threshold))
