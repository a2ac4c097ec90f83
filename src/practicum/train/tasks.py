"""The problem-specific part of the fit loop: the loss, and the metrics to report.

The loop knows nothing about classes or labels; a ``Task`` tells it

    loss(logits, y) -> scalar tensor            what to minimise
    metrics() -> {name: torchmetrics.Metric}    fresh metrics, each updated with (logits, y)
    batch_stats(logits, y) -> {name: sum}       cheap running sums over training batches

Metrics whose result is not a scalar (a confusion matrix) are returned by ``evaluate`` but not
logged as curves. A multi-label task (VOC) is another small function returning a Task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch
from torchmetrics import CatMetric, Metric
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix

from practicum.train.optim import build_loss


@dataclass
class Task:
    loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    metrics: Callable[[], dict[str, Metric]]
    batch_stats: Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]]
    # Which way is better for each metric a config may select the best checkpoint by.
    higher_is_better: Callable[[str], bool] = lambda name: "loss" not in name


class Predictions(CatMetric):
    """The predicted class of every sample, in order (gathered over ranks, whose evaluation
    shards are contiguous, so the concatenation is in data order)."""

    def update(self, logits: torch.Tensor, y: torch.Tensor) -> None:  # noqa: ARG002 - Metric API
        super().update(logits.argmax(1))


def classification(num_classes: int, loss: str = "cross_entropy", label_smoothing: float = 0.0) -> Task:
    """Single-label classification: accuracy (micro: the share of correct predictions), the
    confusion matrix (rows = true class, columns = predicted) and the predictions themselves."""

    def metrics() -> dict[str, Metric]:
        return {"accuracy": MulticlassAccuracy(num_classes, average="micro"),
                "confusion": MulticlassConfusionMatrix(num_classes), "predictions": Predictions()}

    def batch_stats(logits, y):
        return {"accuracy": (logits.argmax(1) == y).sum()}

    return Task(build_loss(loss, label_smoothing), metrics, batch_stats)


def multilabel(num_labels: int, loss: str = "bce", threshold: float = 0.5) -> Task:
    """Multi-label classification (a sigmoid per label, BCE on multi-hot or mixed soft targets):
    exact-match accuracy, per-label accuracy, micro/macro precision, recall, F1 and mAP
    (multilabel_metrics.py). Training batches count exact matches against the rounded targets."""
    from practicum.multilabel_metrics import metric_objects

    def batch_stats(logits, y):
        return {"accuracy": ((logits > 0) == (y > 0.5)).all(1).sum()}

    return Task(build_loss(loss), lambda: metric_objects(num_labels, threshold), batch_stats)
