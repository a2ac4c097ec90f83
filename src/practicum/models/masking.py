"""Masks as valid lengths, for the translation models (d2l 10.7, 11.1): the padding of a batch
must neither be attended to nor counted in the loss.

    sequence_mask(X (B, T, ...), valid_len (B,))   positions t >= valid_len[b] set to a value
    masked_softmax(scores (B, Q, K), valid_lens)   softmax over the valid keys only
    masked_ce(logits (B, T, V), labels, valid_len) cross-entropy over the real tokens only

seq2seq.py and transformer.py both import this module; it imports neither.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def sequence_mask(X: Tensor, valid_len: Tensor, value: float = 0.0) -> Tensor:
    """X (B, T, ...) with positions t >= valid_len[b] set to ``value``."""
    keep = torch.arange(X.shape[1], device=X.device)[None, :] < valid_len[:, None]  # (B, T)
    return X.masked_fill(~keep.reshape(*keep.shape, *([1] * (X.dim() - 2))), value)


def masked_softmax(X: Tensor, valid_lens: Tensor | None) -> Tensor:
    """Softmax over the last axis of X (B, Q, K) that ignores keys k >= valid length.

    ``valid_lens`` is (B,) (one length per example) or (B, Q) (one per query, e.g. causal). Masked
    scores become -1e6 rather than -inf, so a row with no valid key is uniform, not NaN (d2l)."""
    if valid_lens is None:
        return F.softmax(X, dim=-1)
    B, Q, K = X.shape
    lens = valid_lens.repeat_interleave(Q) if valid_lens.dim() == 1 else valid_lens.reshape(-1)
    X = sequence_mask(X.reshape(-1, K), lens, value=-1e6)  # (B*Q, K)
    return F.softmax(X.reshape(B, Q, K), dim=-1)


def masked_ce(logits: Tensor, labels: Tensor, valid_len: Tensor, reduction: str = "mean",
              label_smoothing: float = 0.0) -> Tensor:
    """Cross-entropy over the valid tokens only: logits (B, T, V), labels (B, T), valid_len (B,).

    ``mean`` divides by the number of valid tokens (every real token weighs the same, however
    long its sentence); ``sum`` returns the total, for accumulating over an epoch."""
    B, T, V = logits.shape
    per_token = F.cross_entropy(logits.reshape(B * T, V), labels.reshape(B * T), reduction="none",
                                label_smoothing=label_smoothing).reshape(B, T)  # rows kept contiguous: fast
    weights = sequence_mask(torch.ones_like(per_token), valid_len)
    total = (per_token * weights).sum()
    return total if reduction == "sum" else total / weights.sum().clamp(min=1)
