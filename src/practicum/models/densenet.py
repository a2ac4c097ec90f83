"""DenseNet (Huang et al. 2017; D2L 8.7 / 7.7): each conv sees every earlier map of its block.

A dense block is ``num_convs`` units of BN -> ReLU -> 3x3 conv (``growth`` channels), each
unit's output concatenated to its input, so the block adds ``num_convs * growth`` channels. A
transition block (BN -> ReLU -> 1x1 conv halving the channels -> 2x2 average pool) follows every
dense block but the last.

D2L's net on a 96x96 input (sizes for one image):

    stem  conv 7x7 s2 x64, BN, ReLU, max-pool 3 s2        96 -> 48 -> 24
    dense 4 x 32 -> 192, transition -> 96, avg-pool      24 -> 12
    dense -> 224, transition -> 112                      12 -> 6
    dense -> 240, transition -> 120                       6 -> 3
    dense -> 248, BN, ReLU, global average pool, fc 248 -> classes
    (758,226 parameters for 1 channel, 10 classes)

The CPU preset ``densenet-slim`` halves the stem width and the growth rate and uses a 3x3
stride-1 stem for 28x28 (28 -> 14 -> 7 -> 3 -> 1).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from practicum.models.layers import make_activation


def conv_unit(c_in: int, c_out: int, activation: str) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), make_activation(activation),
                         nn.Conv2d(c_in, c_out, kernel_size=3, padding=1))


class DenseBlock(nn.Module):
    def __init__(self, num_convs: int, c_in: int, growth: int, activation: str):
        super().__init__()
        self.units = nn.ModuleList(conv_unit(c_in + i * growth, growth, activation) for i in range(num_convs))
        self.out_channels = c_in + num_convs * growth

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        for unit in self.units:
            x = torch.cat([x, unit(x)], dim=1)  # (B, c + growth, H, W)
        return x  # (B, out_channels, H, W)


def transition(c_in: int, c_out: int, activation: str) -> nn.Sequential:
    return nn.Sequential(nn.BatchNorm2d(c_in), make_activation(activation),
                         nn.Conv2d(c_in, c_out, kernel_size=1), nn.AvgPool2d(kernel_size=2, stride=2))


class DenseNet(nn.Module):
    """stem -> (dense block -> transition) x 3 -> dense block -> BN, act, global pool -> fc."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 96,  # recorded only: the global pool makes the net size-agnostic
        stem: tuple[int, int, int] = (7, 2, 3),  # first conv's kernel, stride, padding
        width: int = 64,  # stem channels
        growth: int = 32,
        blocks: Sequence[int] = (4, 4, 4, 4),  # convs per dense block
        activation: str = "relu",
    ):
        super().__init__()
        k, s, p = stem
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, k, stride=s, padding=p), nn.BatchNorm2d(width),
                                  make_activation(activation), nn.MaxPool2d(3, stride=2, padding=1))
        layers, c = [], width
        for i, n in enumerate(blocks):
            block = DenseBlock(n, c, growth, activation)
            layers.append(block)
            c = block.out_channels
            if i != len(blocks) - 1:
                layers.append(transition(c, c // 2, activation))
                c //= 2
        self.features = nn.Sequential(*layers, nn.BatchNorm2d(c), make_activation(activation),
                                      nn.AdaptiveAvgPool2d(1))
        self.fc = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 96, 96)
        x = self.stem(x)  # (B, 64, 24, 24)
        x = self.features(x).flatten(1)  # (B, 248)
        return self.fc(x)  # (B, num_classes)


PRESETS = {
    "densenet": dict(image_size=96),  # D2L's DenseNet, Fashion-MNIST resized to 96x96
    "densenet-slim": dict(image_size=28, stem=(3, 1, 1), width=32, growth=16),  # for the CPU
}
