"""Multi-label metrics through torchmetrics, on sigmoid probabilities and 0/1 targets.

    probs  (N, K) float in [0, 1]; target (N, K) multi-hot

- ``accuracy``: exact match -- the share of images whose whole predicted label set is right.
  (Seed 000's "TestAcc" is higher than its precision and recall, which exact match cannot be
  unless most images are all-negative; per-label accuracy can, so it is reported beside it.)
- ``label_accuracy``: the share of (image, class) decisions that are right (Hamming accuracy).
- ``precision``, ``recall``, ``f1``: micro (pooled over every decision); ``*_macro``: the mean of
  the per-class values.
- ``map``: mean over classes of the average precision (area under the step PR curve).

Probabilities are passed explicitly: torchmetrics applies a sigmoid to float predictions only
when some value lies outside [0, 1], so logits that happen to be small would be taken as
probabilities.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.classification import (
    MultilabelAccuracy,
    MultilabelAveragePrecision,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
)
from torchmetrics.functional.classification import (
    binary_precision_recall_curve,
    multilabel_precision_recall_curve,
)
from torchmetrics.wrappers import LambdaInputTransformer

NAMES = ("accuracy", "label_accuracy", "precision", "recall", "f1", "precision_macro", "recall_macro",
         "f1_macro", "map")


def metric_objects(num_labels: int, threshold: float = 0.5, logits: bool = True) -> dict[str, Metric]:
    """Fresh torchmetrics objects, updated with (logits, target) -- or (probs, target) when
    ``logits`` is False -- and computing on probabilities."""
    to_probs = torch.sigmoid if logits else (lambda p: p)
    kw = dict(num_labels=num_labels, threshold=threshold)
    raw = {
        "accuracy": MultilabelExactMatch(**kw),
        "label_accuracy": MultilabelAccuracy(**kw, average="micro"),
        "precision": MultilabelPrecision(**kw, average="micro"),
        "recall": MultilabelRecall(**kw, average="micro"),
        "f1": MultilabelF1Score(**kw, average="micro"),
        "precision_macro": MultilabelPrecision(**kw, average="macro"),
        "recall_macro": MultilabelRecall(**kw, average="macro"),
        "f1_macro": MultilabelF1Score(**kw, average="macro"),
        "map": MultilabelAveragePrecision(num_labels, average="macro", thresholds=None),
    }
    return {name: LambdaInputTransformer(m, transform_pred=to_probs, transform_target=lambda t: t.round().long())
            for name, m in raw.items()}


def summarize(probs: Tensor, target: Tensor, threshold: float = 0.5) -> dict[str, float]:
    """Every metric of ``NAMES`` for one split, as floats."""
    out = {}
    for name, m in metric_objects(probs.shape[1], threshold, logits=False).items():
        m.update(probs, target)
        out[name] = float(m.compute())
    return out


def per_class(probs: Tensor, target: Tensor, classes: list[str], threshold: float = 0.5) -> list[list]:
    """Rows [class, positives, precision, recall, F1, AP] for a table."""
    k, kw = len(classes), dict(num_labels=len(classes), threshold=threshold, average="none")
    cols = [MultilabelPrecision(**kw), MultilabelRecall(**kw), MultilabelF1Score(**kw),
            MultilabelAveragePrecision(k, average="none", thresholds=None)]
    values = []
    for m in cols:
        m.update(probs, target.long())
        values.append(m.compute().tolist())
    support = target.long().sum(0).tolist()
    return [[c, int(support[i]), *(round(float(v[i]), 4) for v in values)] for i, c in enumerate(classes)]


def pr_curves(probs: Tensor, target: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
    """{"micro" or class index as str: (precision, recall)} over every threshold."""
    target = target.long()
    p, r, _ = multilabel_precision_recall_curve(probs, target, num_labels=probs.shape[1], thresholds=None)
    curves = {str(i): (p[i], r[i]) for i in range(probs.shape[1])}
    mp, mr, _ = binary_precision_recall_curve(probs.flatten(), target.flatten(), thresholds=None)
    curves["micro"] = (mp, mr)
    return curves
