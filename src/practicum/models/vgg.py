"""VGG (Simonyan & Zisserman 2014; D2L 7.2), sized for 28x28 and for 224x224 inputs.

A VGG block is ``num_convs`` 3x3 convs (padding 1, so the size is kept) then a 2x2 max-pool.
VGG-11 is five blocks ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512)), then
fc 4096 -> fc 4096 -> fc classes with dropout 0.5.

Small inputs: the pools use ``ceil_mode=True``, so 28 -> 14 -> 7 -> 4 -> 2 -> 1 instead of
dying at 0; on 224 (all even sizes) it changes nothing: 224 -> ... -> 7, and the first fc sees
512*7*7 = 25088 features as in D2L. The first fc is sized from ``image_size``.

``width_div`` divides every conv width, as D2L does for Fashion-MNIST (4 in d2l-zh v2, 8 in
DIDL-PT); the fc width is ``hidden`` (4096) either way, as there.

Weights start with He init (torchvision does the same): with PyTorch's default init the
BatchNorm-free VGG-11 hardly trains.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from practicum.models.layers import make_activation

VGG11 = ((1, 64), (1, 128), (2, 256), (2, 512), (2, 512))


def vgg_block(num_convs: int, c_in: int, c_out: int, batch_norm: bool, activation: str) -> nn.Sequential:
    layers = []
    for _ in range(num_convs):
        # A conv followed by BatchNorm needs no bias: BN subtracts the mean anyway.
        layers.append(nn.Conv2d(c_in, c_out, kernel_size=3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(c_out))
        layers.append(make_activation(activation))
        c_in = c_out
    layers.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """VGG blocks (each halves H and W) -> flatten -> fc hidden -> fc hidden -> fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        arch: Sequence[Sequence[int]] = VGG11,
        width_div: int = 1,
        batch_norm: bool = False,
        hidden: int = 4096,
        dropout: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__()
        blocks, c_in, size = [], in_channels, image_size
        for num_convs, c_out in arch:
            c_out = max(1, c_out // width_div)
            blocks.append(vgg_block(num_convs, c_in, c_out, batch_norm, activation))
            c_in, size = c_out, math.ceil(size / 2)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c_in * size * size, hidden),  # 512*1*1 on 28x28, 512*7*7 on 224x224
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            make_activation(activation),
            nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )
        self._init_weights()

    def _init_weights(self) -> None:
        # Without BatchNorm, PyTorch's default init (weight variance 1/(3 fan_in)) shrinks the
        # signal at each of VGG-11's 10 ReLU layers and the net barely trains. He init (variance
        # 2/fan_in) keeps it; the last layer starts small so the first logits are near 0.
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
        nn.init.normal_(self.classifier[-1].weight, std=0.01)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = self.features(x)  # (B, 512/width_div, ceil(H/32), ceil(W/32))
        return self.classifier(x)  # (B, num_classes)


PRESETS = {
    "vgg11": dict(),  # the original VGG-11 (no BatchNorm), as D2L and seed 000 use it
    "vgg11-bn": dict(batch_norm=True),  # with BatchNorm after every conv (seed 000's VOC advice)
    "vgg11-slim": dict(width_div=4),  # d2l-zh's channels / 4 for the CPU
}
