"""Perplexity = exp(mean token cross-entropy), for the language models and the translators.

Evaluation: ``Perplexity``, a torchmetric fed each batch's mean cross-entropy and its token
count (``update(loss, n)``), so the mean is over tokens and gathered over DDP ranks like any
metric. Training: the fit loop logs means of per-batch sums, and a perplexity is not one, so
``PerplexityRecorder`` adds exp(mean loss) to every line that has a loss but no perplexity.
"""

from __future__ import annotations

import math

import torch
from torchmetrics import MeanMetric

from practicum.train.loop import Recorder


class Perplexity(MeanMetric):
    def compute(self) -> torch.Tensor:
        return super().compute().exp()


def perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf  # exp(710) overflows a float


class PerplexityRecorder(Recorder):
    def log(self, metrics: dict[str, float], *, split: str, step: int, epoch: float | None = None) -> None:
        if "loss" in metrics and "perplexity" not in metrics:
            metrics = {**metrics, "perplexity": perplexity(metrics["loss"])}
        super().log(metrics, split=split, step=step, epoch=epoch)
