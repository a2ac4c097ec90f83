"""Losses on raw class scores, each returning ``(mean_loss, d mean_loss / d scores)``.

``scores`` is (N, C) float, ``y`` is (N,) integer class labels. The gradient has the scores'
dtype and shape; the loss is a Python float. Every loss is a mean over the batch, so the
learning rate does not depend on the batch size.
"""

from __future__ import annotations

import numpy as np

from practicum.registry import Registry

LOSSES: Registry = Registry("loss")


@LOSSES.register("ce")
def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """``mean_i -log softmax(s_i)[y_i]``, as ``torch.nn.functional.cross_entropy``.

    Stable: scores are shifted by their row max before ``exp``, so nothing overflows.
    Gradient: ``(softmax(s) - onehot(y)) / N``.
    """
    n = scores.shape[0]
    rows = np.arange(n)
    shifted = scores - scores.max(axis=1, keepdims=True)  # (N, C), max entry 0 per row
    exp = np.exp(shifted)
    sum_exp = exp.sum(axis=1)  # (N,), >= 1
    loss = float(np.mean(np.log(sum_exp) - shifted[rows, y]))
    grad = exp
    grad /= sum_exp[:, None]  # softmax, in place
    grad[rows, y] -= 1
    grad /= n
    return loss, grad


@LOSSES.register("mse")
def mse_onehot(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error between the raw scores and one-hot targets, averaged over all N*C
    entries: exactly ``torch.nn.functional.mse_loss(scores, one_hot(y))`` (its default 'mean')."""
    diff = scores.copy()  # (N, C): s - onehot
    diff[np.arange(scores.shape[0]), y] -= 1
    loss = float(np.vdot(diff, diff)) / diff.size
    diff *= 2 / diff.size
    return loss, diff


@LOSSES.register("svm")
def svm_hinge(scores: np.ndarray, y: np.ndarray, margin: float = 1.0) -> tuple[float, np.ndarray]:
    """Multiclass SVM (Weston-Watkins, the CS231n form):
    ``mean_i sum_{j != y_i} max(0, s_ij - s_iy_i + margin)``.

    ``torch.nn.functional.multi_margin_loss`` is the same sum divided by C. Gradient (a
    subgradient at the hinge): +1 for each wrong class with a positive margin, minus their
    count at the true class, all / N.
    """
    n = scores.shape[0]
    rows = np.arange(n)
    margins = scores - scores[rows, y][:, None]  # (N, C): s_ij - s_iy
    margins += margin
    np.maximum(margins, 0, out=margins)
    margins[rows, y] = 0  # the true class contributes nothing
    loss = float(margins.sum()) / n
    grad = (margins > 0).astype(scores.dtype)  # (N, C) indicator of active hinges
    grad[rows, y] = -grad.sum(axis=1)
    grad /= n
    return loss, grad


def l2_penalty(params: dict[str, np.ndarray], lam: float,
               grads: dict[str, np.ndarray] | None = None) -> tuple[float, dict[str, np.ndarray]]:
    """L2 regularisation ``0.5 * lam * sum ||W||^2`` over the weight matrices only.

    Convention: the penalty covers every parameter with two or more dimensions (the ``W`` of each
    Linear); biases are not penalised, since shrinking them does not limit the model's capacity.
    The 0.5 makes the gradient ``lam * W``, so ``lam`` equals torch's SGD ``weight_decay`` applied to
    the weights alone.

    Returns ``(penalty, {name: lam * W})``. With ``grads`` (e.g. ``model.grads()``), ``lam * W`` is
    instead added in place to those buffers and the same dict is returned: no new arrays.
    """
    weights = {k: p for k, p in params.items() if p.ndim >= 2}
    penalty = 0.5 * lam * sum(float(np.vdot(w, w)) for w in weights.values())
    if grads is None:
        return penalty, {k: w * lam for k, w in weights.items()}
    for k, w in weights.items():
        grads[k] += w * lam
    return penalty, grads
