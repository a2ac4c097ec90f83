"""AlexNet (Krizhevsky et al. 2012; D2L 8.1 / 7.1), one-channel as D2L trains it on Fashion-MNIST.

D2L's AlexNet on a 224x224 input (sizes for one image):

    conv 11x11 s4 p1 x96    224 -> 54     max-pool 3 s2   54 -> 26
    conv 5x5 p2 x256         26 -> 26     max-pool 3 s2   26 -> 12
    conv 3x3 p1 x384, x384, x256  12      max-pool 3 s2   12 -> 5
    fc 256*5*5 -> 4096 -> 4096 -> classes, dropout 0.5 before each of the last two
    (46,764,746 parameters for 1 channel, 10 classes)

The CPU preset ``alexnet-slim`` keeps the layer sequence but sizes it for 28x28: a 3x3 stride-1
stem instead of 11x11 stride 4 (28 -> 28 -> 13 -> 13 -> 6 -> 6 -> 2), every conv width / 4 and
fc width 1024. The first fc is sized from ``image_size``.
"""

from __future__ import annotations

import torch
from torch import nn

from practicum.models.layers import check_feature_size, make_activation, xavier_init


def _conv_out(size: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    return (size + 2 * padding - kernel) // stride + 1


class AlexNet(nn.Module):
    """5 convs (3 max-pools) -> flatten -> fc hidden -> fc hidden -> fc classes."""

    def __init__(
        self,
        num_classes: int = 10,
        in_channels: int = 1,
        image_size: int = 224,
        stem: tuple[int, int, int] = (11, 4, 1),  # first conv's kernel, stride, padding
        width_div: int = 1,
        hidden: int = 4096,
        dropout: float = 0.5,
        activation: str = "relu",
    ):
        super().__init__()
        c1, c2, c3, c4, c5 = (max(1, c // width_div) for c in (96, 256, 384, 384, 256))
        k, s, p = stem
        act = lambda: make_activation(activation)  # a fresh module per use
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, c1, kernel_size=k, stride=s, padding=p), act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c1, c2, kernel_size=5, padding=2), act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
            nn.Conv2d(c2, c3, kernel_size=3, padding=1), act(),
            nn.Conv2d(c3, c4, kernel_size=3, padding=1), act(),
            nn.Conv2d(c4, c5, kernel_size=3, padding=1), act(),
            nn.MaxPool2d(kernel_size=3, stride=2),
        )
        size = _conv_out(image_size, k, s, p)
        for _ in range(3):  # the three 3x3 stride-2 pools; the other convs keep the size
            size = _conv_out(size, 3, 2)
        check_feature_size(size, "alexnet", image_size)
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c5 * size * size, hidden), act(), nn.Dropout(dropout),  # 6400 -> 4096 at 224
            nn.Linear(hidden, hidden), act(), nn.Dropout(dropout),
            nn.Linear(hidden, num_classes),
        )

        xavier_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, 224, 224)
        x = self.features(x)  # (B, 256, 5, 5)
        return self.classifier(x)  # (B, num_classes)


PRESETS = {
    "alexnet": dict(image_size=224),  # D2L's AlexNet, Fashion-MNIST resized to 224x224
    "alexnet-slim": dict(image_size=28, stem=(3, 1, 1), width_div=4, hidden=1024),  # for the CPU
}
