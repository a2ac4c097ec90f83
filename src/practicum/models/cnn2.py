"""Seed 002's small CNN for MNIST, and the variants its study compares.

The seed's network (``Net`` in its model.py), for a 28x28 input:

    conv 1->32 3x3   28 -> 26      max-pool 2   26 -> 13
    conv 32->64 3x3  13 -> 11      max-pool 2   11 -> 5
    flatten 64*5*5 = 1600 -> fc 128 -> fc 10

``cnn2-sigmoid`` is the same network with sigmoid activations (the seed's ``NetSigmoid``).
``cnn2-deep`` is our deeper variant (the seed does not print its ``NetDeep``): three conv
blocks 32, 64, 128 with padding 1, so 28 -> 28 -> 14 -> 14 -> 7 -> 7 -> 3 and the fc sees
128*3*3 = 1152 features.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from practicum.models.layers import check_feature_size, make_activation


class CNN2(nn.Module):
    """[conv 3x3 -> activation -> max-pool 2] per channel width, then fc hidden -> fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,
        channels: Sequence[int] = (32, 64),
        padding: int = 0,
        hidden: int = 128,
        activation: str = "relu",
    ):
        super().__init__()
        blocks, c_in, size = [], in_channels, image_size
        for c_out in channels:
            blocks += [
                nn.Conv2d(c_in, c_out, kernel_size=3, padding=padding),
                make_activation(activation),
                nn.MaxPool2d(2),
            ]
            c_in, size = c_out, (size + 2 * padding - 2) // 2  # conv 3x3, then halve (floor)
            check_feature_size(size, "cnn2", image_size)
        self.features = nn.Sequential(*blocks)
        self.fc1 = nn.Linear(c_in * size * size, hidden)  # 1600 -> 128 for the seed's net
        self.act = make_activation(activation)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = self.features(x)  # (B, 64, 5, 5) for the seed's net
        x = self.act(self.fc1(x.flatten(1)))  # (B, hidden)
        return self.fc2(x)  # (B, num_classes)


PRESETS = {
    "cnn2": dict(),  # seed 002's Net: 225,034 parameters
    "cnn2-sigmoid": dict(activation="sigmoid"),  # seed 002's NetSigmoid
    "cnn2-deep": dict(channels=[32, 64, 128], padding=1),  # a third conv block, padded to fit 28x28
}
