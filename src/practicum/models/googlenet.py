"""GoogLeNet (Szegedy et al. 2014; D2L 8.4 / 7.4): stacks of Inception blocks.

An Inception block runs four paths on the same input and concatenates their channels:
1x1 conv | 1x1 -> 3x3 conv | 1x1 -> 5x5 conv | 3x3 max-pool -> 1x1 conv, each conv + ReLU.

D2L's net on a 96x96 input (sizes for one image; the channels are the blocks' outputs):

    b1  conv 7x7 s2 x64, max-pool 3 s2              96 -> 48 -> 24
    b2  conv 1x1 x64, conv 3x3 x192, max-pool        24 -> 12
    b3  inception 256, 480, max-pool                 12 -> 6
    b4  inception 512, 512, 512, 528, 832, max-pool   6 -> 3
    b5  inception 832, 1024, global average pool      3 -> 1
    fc 1024 -> classes                               (5,977,530 parameters, 1 channel, 10 classes)

The CPU preset ``googlenet-slim`` divides every width by 4 and uses a 3x3 stride-1 stem for
28x28 (28 -> 14 -> 7 -> 4 -> 2 -> 1).
"""

from __future__ import annotations

import torch
from torch import nn

from practicum.models.layers import make_activation, xavier_init

# (1x1, (3x3 reduce, 3x3), (5x5 reduce, 5x5), pool proj) per Inception block, as in D2L
B3 = [(64, (96, 128), (16, 32), 32), (128, (128, 192), (32, 96), 64)]
B4 = [(192, (96, 208), (16, 48), 64), (160, (112, 224), (24, 64), 64), (128, (128, 256), (24, 64), 64),
      (112, (144, 288), (32, 64), 64), (256, (160, 320), (32, 128), 128)]
B5 = [(256, (160, 320), (32, 128), 128), (384, (192, 384), (48, 128), 128)]


class Inception(nn.Module):
    def __init__(self, c_in: int, c1: int, c2: tuple[int, int], c3: tuple[int, int], c4: int, activation: str):
        super().__init__()
        conv = lambda i, o, k: nn.Sequential(
            nn.Conv2d(i, o, k, padding=k // 2), make_activation(activation))
        self.p1 = conv(c_in, c1, 1)
        self.p2 = nn.Sequential(conv(c_in, c2[0], 1), conv(c2[0], c2[1], 3))
        self.p3 = nn.Sequential(conv(c_in, c3[0], 1), conv(c3[0], c3[1], 5))
        self.p4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1), conv(c_in, c4, 1))
        self.out_channels = c1 + c2[1] + c3[1] + c4

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        return torch.cat([self.p1(x), self.p2(x), self.p3(x), self.p4(x)], dim=1)  # (B, out, H, W)


class GoogLeNet(nn.Module):
    """b1 (stem) -> b2 -> b3 -> b4 -> b5 (global average pool) -> fc."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 96,  # recorded only: the global pool makes the net size-agnostic
        stem: tuple[int, int, int] = (7, 2, 3),  # first conv's kernel, stride, padding
        width_div: int = 1,
        activation: str = "relu",
    ):
        super().__init__()
        w = lambda c: max(1, c // width_div)
        act = lambda: make_activation(activation)
        pool = lambda: nn.MaxPool2d(3, stride=2, padding=1)  # halves (rounding up)
        k, s, p = stem
        self.b1 = nn.Sequential(nn.Conv2d(in_channels, w(64), k, stride=s, padding=p), act(), pool())
        self.b2 = nn.Sequential(nn.Conv2d(w(64), w(64), 1), act(),
                                nn.Conv2d(w(64), w(192), 3, padding=1), act(), pool())
        c_in, stages = w(192), []
        for specs, last in ((B3, pool()), (B4, pool()), (B5, nn.AdaptiveAvgPool2d(1))):
            blocks = []
            for c1, c2, c3, c4 in specs:
                blocks.append(Inception(c_in, w(c1), (w(c2[0]), w(c2[1])), (w(c3[0]), w(c3[1])), w(c4),
                                        activation))
                c_in = blocks[-1].out_channels
            stages.append(nn.Sequential(*blocks, last))
        self.b3, self.b4, self.b5 = stages
        self.fc = nn.Linear(c_in, num_classes)

        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 96, 96)
        x = self.b2(self.b1(x))  # (B, 192, 12, 12)
        x = self.b4(self.b3(x))  # (B, 832, 3, 3)
        x = self.b5(x).flatten(1)  # (B, 1024)
        return self.fc(x)  # (B, num_classes)


PRESETS = {
    "googlenet": dict(image_size=96),  # D2L's GoogLeNet, Fashion-MNIST resized to 96x96
    "googlenet-slim": dict(image_size=28, stem=(3, 1, 1), width_div=4),  # for the CPU
}
