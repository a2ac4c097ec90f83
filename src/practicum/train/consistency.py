"""AugMix's Jensen-Shannon consistency loss (Hendrycks et al. 2020), as an Objective.

A training batch holds three images per sample, x (B, 3, C, H, W): the clean image and two AugMix
views (data/autoaugment.py). One forward pass over the 3B images (as the AugMix reference code
does, so BatchNorm sees all three; DDP wants one forward per step) gives three predictions; the
loss is the usual one on the clean image plus

    weight * JS(p_clean, p_1, p_2) = weight * (KL(p_clean || M) + KL(p_1 || M) + KL(p_2 || M)) / 3,
    M = (p_clean + p_1 + p_2) / 3

which asks the model to answer the same whatever AugMix did to the image. Single-label: p is the
softmax over the classes. Multi-label: each label is a yes/no question, so p is the Bernoulli
distribution (sigmoid, 1 - sigmoid) of each label, and the JS is averaged over the labels (a
sigmoid-based consistency: the labels are not one distribution). Evaluation batches (B, C, H, W)
go through the base objective unchanged, as do training batches of one view.
"""

from __future__ import annotations

import torch
from torch import Tensor

from practicum.train.objective import Objective, Step


def js_divergence(p: Tensor) -> Tensor:
    """p (V, N, K): V views of N distributions over K outcomes -> the mean over N of
    (1/V) sum_v KL(p_v || M), M = the views' mean; M clamped at 1e-7 as the reference does."""
    log_m = p.mean(0).clamp(1e-7, 1).log()  # (N, K)
    kl = (p * (p.clamp(min=1e-12).log() - log_m)).sum(-1)  # (V, N); 0 log 0 = 0
    return kl.mean()


def softmax_js(logits: Tensor) -> Tensor:
    """logits (3, B, K) of one image's three views -> JS of the class distributions."""
    return js_divergence(logits.softmax(-1))


def sigmoid_js(logits: Tensor) -> Tensor:
    """logits (3, B, K) -> JS of each label's (q, 1 - q), averaged over B and the K labels."""
    q = torch.sigmoid(logits)
    return js_divergence(torch.stack([q, 1 - q], -1).flatten(1, 2))  # (3, B K, 2)


def with_consistency(base: Objective, weight: float, multilabel: bool = False) -> Objective:
    """``base`` (classification() or multilabel()) plus the JS term on three-view training batches;
    the training sums gain ``consistency`` (the JS, per sample)."""
    js = sigmoid_js if multilabel else softmax_js

    def step(net, batch) -> Step:
        x, y = batch
        if x.ndim == 4:  # an evaluation batch, or a single view
            return base.step(net, batch)
        B = len(x)
        logits = net(x.transpose(0, 1).flatten(0, 1)).float()  # (3B, K): clean, view 1, view 2
        clean = logits[:B]
        s = base.step(lambda _: clean, (x[:, 0], y))  # the base loss, sums and metric inputs of the clean images
        consistency = js(logits.view(3, B, -1))
        return Step(s.loss + weight * consistency, s.n, s.out, {**s.sums, "consistency": consistency.detach() * s.n})

    return Objective(step, base.metrics, base.after_step, base.memory, base.higher_is_better)
