"""LeNet-5, as seed 004 builds it, and D2L's sigmoid/average-pool version.

Seed 004 on a 32x32 input (LeCun's layer names on the right):

    conv 5x5 x6     32 -> 28    C1        max-pool 2   28 -> 14    S2
    conv 5x5 x16    14 -> 10    C3        avg-pool 2   10 -> 5     S4
    conv 5x5 x120    5 -> 1     C5        fc 120 -> 84             F6
    fc 84 -> classes                      (61,706 parameters for 1 channel, 10 classes)

``lenet5-28`` pads the first conv by 2 so a 28x28 image gives the same 28x28 C1 map.
``lenet-d2l`` is D2L's LeNet (padding 2, sigmoid, average pooling both times). D2L writes C5 as
Flatten + Linear(400, 120); a 5x5 conv over a 5x5 map is the same function with the same
parameters, so we keep the conv's parameters and compute it as that matrix product (FullConv2d).

``lenet-bn`` is D2L's LeNet with batch normalisation (D2L 8.5 / 7.5): a BatchNorm after every
conv and after F6, before the sigmoid. D2L's BN-LeNet drops the first conv's padding (its C5 is
Linear(256, 120) on a 4x4 map); ours keeps lenet-d2l's layout, so C5 sees 5x5 (Linear(400, 120)
as a conv) and the BatchNorm on C5's (B, 120, 1, 1) output is D2L's BatchNorm1d(120).

``lenet-bn-scratch`` is the same network with the batch normalisation written out
(models/batchnorm.py, d2l's ``BatchNorm(num_features, num_dims)``): DIDL-PT 5.10's scratch BN-LeNet.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from practicum.errors import UsageError
from practicum.models.batchnorm import BatchNorm
from practicum.models.layers import check_feature_size, make_activation

POOLS = {"max": nn.MaxPool2d, "avg": nn.AvgPool2d}


def make_pool(name: str) -> nn.Module:
    if name not in POOLS:
        raise UsageError(f"lenet: unknown pool '{name}'; valid: {', '.join(POOLS)}")
    return POOLS[name](kernel_size=2, stride=2)


class FullConv2d(nn.Conv2d):
    """A conv that, when its kernel covers the whole input (LeNet's C5 on the 5x5 map), computes
    the same function as a matrix product with its own weights (D2L's Linear(400, 120)): ~7 % of
    a LeNet step faster than mkldnn's conv on this CPU. Same parameters, same hooks."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, k, k) -> (B, out, 1, 1)
        if x.shape[-2:] != self.kernel_size or self.padding != (0, 0) or self.groups != 1:
            return super().forward(x)
        out = F.linear(x.flatten(1), self.weight.flatten(1), self.bias)  # (B, out)
        return out[:, :, None, None]


class LeNet(nn.Module):
    """conv5 x6 -> pool -> conv5 x16 -> pool -> conv5 x120 -> fc 84 -> fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 32,
        activation: str = "relu",
        padding: int = 0,
        pools: Sequence[str] = ("max", "avg"),
        batch_norm: bool | Literal["scratch"] = False,
    ):
        super().__init__()
        if len(pools) != 2:
            raise UsageError(f"lenet: pools needs two names (S2, S4), got {list(pools)}")
        self.conv1 = nn.Conv2d(in_channels, 6, kernel_size=5, padding=padding)  # C1
        self.pool1 = make_pool(pools[0])  # S2
        self.conv2 = nn.Conv2d(6, 16, kernel_size=5)  # C3
        self.pool2 = make_pool(pools[1])  # S4
        self.conv3 = FullConv2d(16, 120, kernel_size=5)  # C5
        self.fc1 = nn.Linear(120 * self._c5_size(image_size, padding) ** 2, 84)  # F6
        self.fc2 = nn.Linear(84, num_classes)
        # BatchNorm before each activation (D2L 8.5): torch's (True) or the scratch one ("scratch");
        # Identity without it, so the plain presets' state dicts keep their keys.
        if batch_norm not in (False, True, "scratch"):
            raise UsageError(f"lenet: batch_norm is true, false or 'scratch', got {batch_norm!r}")

        def norm(c: int, dims: int) -> nn.Module:  # dims 4 after a conv, 2 after a Linear
            if batch_norm == "scratch":
                return BatchNorm(c, num_dims=dims)
            return (nn.BatchNorm2d if dims == 4 else nn.BatchNorm1d)(c) if batch_norm else nn.Identity()

        self.bn1, self.bn2 = norm(6, 4), norm(16, 4)
        self.bn3, self.bn4 = norm(120, 4), norm(84, 2)
        # One module per use, so hooks and printouts show every activation.
        self.act1, self.act2, self.act3, self.act4 = (make_activation(activation) for _ in range(4))

    @staticmethod
    def _c5_size(image_size: int, padding: int) -> int:
        size = (image_size + 2 * padding - 4) // 2  # C1, S2
        size = (size - 4) // 2  # C3, S4
        size = size - 4  # C5
        check_feature_size(size, "lenet", image_size)
        return size  # 1 for the classic 32x32 input

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 32, 32)
        x = self.pool1(self.act1(self.bn1(self.conv1(x))))  # (B, 6, 14, 14)
        x = self.pool2(self.act2(self.bn2(self.conv2(x))))  # (B, 16, 5, 5)
        x = self.act3(self.bn3(self.conv3(x)))  # (B, 120, 1, 1)
        x = self.act4(self.bn4(self.fc1(x.flatten(1))))  # (B, 84)
        return self.fc2(x)  # (B, num_classes)


PRESETS = {
    "lenet5": dict(image_size=32),  # seed 004, images resized to 32x32
    "lenet5-28": dict(image_size=28, padding=2),  # same layers, MNIST's own 28x28
    "lenet-d2l": dict(image_size=28, padding=2, activation="sigmoid", pools=["avg", "avg"]),
    "lenet-bn": dict(image_size=28, padding=2, activation="sigmoid", pools=["avg", "avg"], batch_norm=True),
    "lenet-bn-scratch": dict(image_size=28, padding=2, activation="sigmoid", pools=["avg", "avg"],
                             batch_norm="scratch"),
}
