"""ResNet-18 (He et al. 2015; D2L 8.6) with the two stems the seeds use.

Four stages of two BasicBlocks at widths 64, 128, 256, 512; stages 2-4 halve the size with a
stride-2 first conv, and a block whose shape changes gets a 1x1 conv + BN shortcut (seed 004's
ResBlock). Then global average pooling and one fc, so any input size works.

Stems:
    "small"     3x3 conv stride 1 + BN + act, no max-pool: for 28x28 / 32x32 (the CIFAR-style
                ResNet-18: 11,173,962 parameters for 3 channels, 10 classes)
    "imagenet"  seed 004's 7x7 conv stride 2 + BN + act + 3x3 max-pool stride 2: for 224x224.
                The seed's 7x7 conv keeps its bias (redundant before BN; torchvision drops it),
                so this is torchvision's resnet18 plus 64 parameters.

D2L's ResNet-18 (8.6) is the "imagenet" stem (without the 7x7 conv's bias) on 96x96 images:
``resnet18-d2l``.

``width`` multiplies every channel count (0.25 gives 16, 32, 64, 128: ``resnet18-slim``).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from practicum.errors import UsageError
from practicum.models.layers import make_activation


class BasicBlock(nn.Module):
    """x -> conv3x3 -> BN -> act -> conv3x3 -> BN, plus the shortcut, then act."""

    def __init__(self, c_in: int, c_out: int, stride: int, activation: str):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.act1 = make_activation(activation)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.act2 = make_activation(activation)
        self.shortcut = nn.Identity()
        if stride != 1 or c_in != c_out:  # the shapes differ: project x with a 1x1 conv
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, c_in, H, W)
        y = self.act1(self.bn1(self.conv1(x)))  # (B, c_out, H/stride, W/stride)
        y = self.bn2(self.conv2(y))
        return self.act2(y + self.shortcut(x))


def make_stem(stem: str, c_in: int, c_out: int, activation: str) -> nn.Sequential:
    if stem == "small":
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            make_activation(activation),
        )
    if stem == "imagenet":
        return nn.Sequential(
            nn.Conv2d(c_in, c_out, 7, stride=2, padding=3),  # bias kept, as in seed 004
            nn.BatchNorm2d(c_out),
            make_activation(activation),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
    raise UsageError(f"resnet: unknown stem '{stem}'; valid: small, imagenet")


class ResNet(nn.Module):
    """stem -> 4 stages of BasicBlocks -> global average pool -> fc."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 28,  # recorded only: the global pool makes the net size-agnostic
        blocks: Sequence[int] = (2, 2, 2, 2),
        width: float = 1.0,
        stem: str = "small",
        activation: str = "relu",
    ):
        super().__init__()
        widths = [max(1, round(64 * width * 2**i)) for i in range(len(blocks))]  # 64, 128, 256, 512
        self.stem = make_stem(stem, in_channels, widths[0], activation)
        stages, c_in = [], widths[0]
        for i, (n, c_out) in enumerate(zip(blocks, widths)):
            stride = 1 if i == 0 else 2
            layer = [BasicBlock(c_in, c_out, stride, activation)]
            layer += [BasicBlock(c_out, c_out, 1, activation) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layer))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(c_in, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W)
        x = self.stem(x)  # (B, 64, H, W) small stem; (B, 64, H/4, W/4) imagenet stem
        x = self.stages(x)  # (B, 512, H/8, W/8) small stem; (B, 512, H/32, W/32) imagenet stem
        x = self.pool(x).flatten(1)  # (B, 512)
        return self.fc(x)  # (B, num_classes)


PRESETS = {
    "resnet18": dict(),  # small stem, for MNIST / CIFAR sizes (seed 000's ResNet-18 on MNIST)
    "resnet18-imagenet": dict(image_size=224, stem="imagenet"),  # seed 004: 224x224 input
    "resnet18-slim": dict(width=0.25),  # small stem, channels / 4, for the CPU
    "resnet18-d2l": dict(image_size=96, stem="imagenet"),  # D2L 8.6: Fashion-MNIST resized to 96x96
}
