"""Network in Network (Lin et al. 2013; D2L 8.3 / 7.3): no fc layers at all.

A NiN block is a conv then two 1x1 convs (per-pixel MLPs), each followed by ReLU. D2L's net on
224x224 (sizes for one image):

    nin 11x11 s4 x96    224 -> 54     max-pool 3 s2   54 -> 26
    nin 5x5 p2 x256      26 -> 26     max-pool 3 s2   26 -> 12
    nin 3x3 p1 x384      12 -> 12     max-pool 3 s2   12 -> 5
    dropout 0.5, nin 3x3 p1 x classes, global average pool -> logits
    (1,992,166 parameters for 1 channel, 10 classes)

The last block outputs one channel per class and the global average pool turns each map into
a logit. The CPU preset ``nin-slim`` uses a 3x3 stride-1 stem for 28x28, widths / 4, padded
pools (28 -> 14 -> 7 -> 4) and no ReLU on the class maps. D2L keeps that ReLU, and a class map
can die under it: the class then gets logit 0 for every image and is never predicted again.
Measured on Fashion-MNIST, seed 0, unpadded (2x2 maps): Pullover never predicted after 10 epochs,
0.817; padded, seed 1: Trouser never predicted after 3 epochs, 0.744 (seed 0: 0.835).
"""

from __future__ import annotations

import torch
from torch import nn

from practicum.models.layers import make_activation, xavier_init


def nin_block(
    c_in: int, c_out: int, kernel: int, stride: int, padding: int, activation: str, last_activation: bool = True
) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding), make_activation(activation),
        nn.Conv2d(c_out, c_out, kernel_size=1), make_activation(activation),
        nn.Conv2d(c_out, c_out, kernel_size=1), make_activation(activation) if last_activation else nn.Identity(),
    )


class NiN(nn.Module):
    """4 NiN blocks (3 max-pools between) -> global average pool -> one logit per class map."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 224,  # recorded only: the global pool makes the net size-agnostic
        stem: tuple[int, int, int] = (11, 4, 0),  # first conv's kernel, stride, padding
        width_div: int = 1,
        dropout: float = 0.5,
        activation: str = "relu",
        pool_padding: int = 0,  # 1 keeps small inputs from shrinking to 2x2 class maps
        class_map_activation: bool = True,  # D2L's ReLU on the class maps; a dead map is a class never predicted
    ):
        super().__init__()
        c1, c2, c3 = (max(1, c // width_div) for c in (96, 256, 384))
        self.features = nn.Sequential(
            nin_block(in_channels, c1, *stem, activation),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
            nin_block(c1, c2, 5, 1, 2, activation),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
            nin_block(c2, c3, 3, 1, 1, activation),
            nn.MaxPool2d(3, stride=2, padding=pool_padding),
            nn.Dropout(dropout),
            nin_block(c3, num_classes, 3, 1, 1, activation, last_activation=class_map_activation),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)

        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 224, 224)
        x = self.features(x)  # (B, num_classes, 5, 5)
        return self.pool(x).flatten(1)  # (B, num_classes)


PRESETS = {
    "nin": dict(image_size=224),  # D2L's NiN, Fashion-MNIST resized to 224x224
    "nin-slim": dict(image_size=28, stem=(3, 1, 1), width_div=4, pool_padding=1, class_map_activation=False),
}
