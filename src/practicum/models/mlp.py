"""Softmax regression and multilayer perceptrons (D2L ch. 3; seed 003's Fashion-MNIST nets).

The image is flattened, so the first layer sees in_channels * image_size**2 inputs (784 for
28x28 grey images). ``hidden=[]`` is softmax regression: one Linear layer, with the softmax
left to the cross-entropy loss.

``init`` chooses the Linear weights' initialisation (models/layers.py ``INITS``): torch's
``default`` (uniform with variance 1/(3 fan_in)), ``xavier`` (variance 2/(fan_in + fan_out),
Glorot & Bengio) or ``kaiming`` (variance 2/fan_in, He et al., for ReLU). ``mlp-deep`` has ten
Linear layers, deep enough for D2L 5.4's vanishing gradients (the study-init-stability study).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from practicum.models.layers import init_weights, make_activation


class MLP(nn.Module):
    """Flatten -> [Linear -> activation -> Dropout] per hidden width -> Linear to the classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        hidden: Sequence[int] = (256,),
        activation: str = "relu",
        dropout: float = 0.0,
        init: str = "default",
    ):
        super().__init__()
        widths = [in_channels * image_size * image_size, *hidden]
        layers = []
        for d_in, d_out in zip(widths[:-1], widths[1:]):
            # Dropout is always there (p=0 is the identity) so the state-dict keys don't
            # depend on it: a checkpoint trained with dropout loads into a model without.
            layers += [nn.Linear(d_in, d_out), make_activation(activation), nn.Dropout(dropout)]
        self.hidden = nn.Sequential(*layers)
        self.head = nn.Linear(widths[-1], num_classes)
        init_weights(self, init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = x.flatten(1)  # (B, C*H*W); reshape copes with channels_last
        return self.head(self.hidden(x))  # (B, num_classes)


# name -> constructor defaults; image_size is the natural input size of the preset.
PRESETS = {
    "softmax": dict(hidden=[]),  # 784 -> 10
    "mlp": dict(hidden=[256]),  # 784 -> 256 -> 10, D2L's MLP (203,530 parameters)
    "mlp2": dict(hidden=[256, 128]),  # 784 -> 256 -> 128 -> 10, seed 003's deeper MLP
    "mlp-deep": dict(hidden=[256] * 9),  # 784 -> 9 x 256 -> 10: ten Linear layers (D2L 5.4's depth)
}
