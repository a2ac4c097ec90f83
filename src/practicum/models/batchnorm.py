"""Batch normalisation written out (D2L 8.5, DIDL-PT 5.10), beside torch's nn.BatchNorm1d/2d.

    y = gamma * (x - mean) / sqrt(var + eps) + beta

Training mode normalises with the batch's own statistics: per feature over the batch for a
fully-connected layer's (B, C) output, per channel over the batch *and* every position for a
convolution's (B, C, H, W) output (one gamma and beta per channel, so a channel is normalised
alike wherever the feature appears). It also updates the moving statistics,

    moving = (1 - momentum) * moving + momentum * batch statistic      (momentum 0.1, torch's)

which evaluation mode uses instead, so a prediction does not depend on the rest of its batch.

Two choices differ from d2l's code, so the layer equals torch's (tests/test_seed003_a.py checks
outputs, gradients and running statistics against nn.BatchNorm1d/2d):
- the mode is the module's ``training`` flag (d2l asks ``torch.is_grad_enabled()``, which
  would evaluate with batch statistics whenever gradients are on);
- the moving variance takes the *unbiased* batch variance (n / (n - 1) times the biased one that
  normalises), as torch does; d2l averages the biased one.
Statistics are computed in float32 even under bf16 autocast, as torch's own layer does.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def batch_norm(X: Tensor, gamma: Tensor, beta: Tensor, moving_mean: Tensor, moving_var: Tensor,
               eps: float, momentum: float, training: bool) -> tuple[Tensor, Tensor, Tensor]:
    """(Y, new moving mean, new moving var) for X (B, C) or (B, C, H, W); the statistics and
    gamma/beta have X's shape with 1 in every reduced dimension: (1, C) or (1, C, 1, 1)."""
    if X.dtype in (torch.float16, torch.bfloat16):  # autocast's output: statistics in float32
        X = X.float()
    if not training:  # evaluation: the moving statistics
        X_hat = (X - moving_mean) / torch.sqrt(moving_var + eps)
        return gamma * X_hat + beta, moving_mean, moving_var
    if X.ndim not in (2, 4):
        raise ValueError(f"batch_norm: expected (B, C) or (B, C, H, W), got {tuple(X.shape)}")
    dims = (0,) if X.ndim == 2 else (0, 2, 3)  # fully connected: per feature; conv: per channel
    mean = X.mean(dim=dims, keepdim=True)
    var = ((X - mean) ** 2).mean(dim=dims, keepdim=True)  # biased: this one normalises
    X_hat = (X - mean) / torch.sqrt(var + eps)
    n = X.numel() // X.shape[1]  # values per feature in this batch
    with torch.no_grad():  # the moving statistics are no part of the graph
        moving_mean = (1.0 - momentum) * moving_mean + momentum * mean
        moving_var = (1.0 - momentum) * moving_var + momentum * var * (n / max(n - 1, 1))
    return gamma * X_hat + beta, moving_mean, moving_var


class BatchNorm(nn.Module):
    """d2l's ``BatchNorm(num_features, num_dims)``: num_dims 2 after a Linear, 4 after a Conv2d."""

    def __init__(self, num_features: int, num_dims: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        if num_dims not in (2, 4):
            raise ValueError(f"BatchNorm: num_dims is 2 (fully connected) or 4 (convolutional), got {num_dims}")
        shape = (1, num_features) if num_dims == 2 else (1, num_features, 1, 1)
        self.eps, self.momentum = eps, momentum
        self.gamma = nn.Parameter(torch.ones(shape))  # scale, learned
        self.beta = nn.Parameter(torch.zeros(shape))  # shift, learned
        self.register_buffer("moving_mean", torch.zeros(shape))  # buffers: saved, moved, not learned
        self.register_buffer("moving_var", torch.ones(shape))

    def forward(self, X: Tensor) -> Tensor:
        Y, mean, var = batch_norm(X, self.gamma, self.beta, self.moving_mean, self.moving_var,
                                  self.eps, self.momentum, self.training)
        if self.training:
            self.moving_mean.copy_(mean)  # in place: DDP's buffer sync and the state dict see it
            self.moving_var.copy_(var)
        return Y
