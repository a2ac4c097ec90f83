"""A VGG-shaped feature extractor with *random*, frozen weights, for style transfer.

No pretrained VGG can be downloaded here. Random convolutional features are known to carry
texture statistics well enough for Gatys-style synthesis (Ustyuzhaninov et al., "Texture
synthesis using shallow convolutional networks with random filters", 2016; He, Wang & Hopcroft,
"A powerful generative model using random weights for the deep image representation", NeurIPS
2016): Gram matrices of random ReLU features still constrain colour, edges and blob sizes, and
deeper stages see larger patterns. What they lack is VGG's semantic content features, so the
content term keeps layout and colour more than object identity.

Layers are named VGG-style: ``"2_1"`` is the ReLU after the first conv of stage 2. Stages are
separated by 2x2 average pooling (smoother gradients to the image than max pooling). Weights are
He-normal from a seeded generator, so the "network" is a pure function of its seed.
``SynthesizedImage`` holds the image being optimised as a parameter.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class RandomVGG(nn.Module):
    def __init__(self, channels: tuple[int, ...] = (32, 64, 128, 256), convs_per_stage: int = 2,
                 seed: int = 0):
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        layers: list[nn.Module] = []
        self.layer_index: dict[str, int] = {}  # "stage_conv" -> index of its ReLU in self.features
        c = 3
        for s, ch in enumerate(channels, start=1):
            if s > 1:
                layers.append(nn.AvgPool2d(2))
            for k in range(1, convs_per_stage + 1):
                conv = nn.Conv2d(c, ch, 3, padding=1)
                with torch.no_grad():
                    conv.weight.normal_(0, (2.0 / (c * 9)) ** 0.5, generator=gen)  # He: keeps activations O(1)
                    conv.bias.zero_()
                layers += [conv, nn.ReLU()]
                self.layer_index[f"{s}_{k}"] = len(layers) - 1
                c = ch
        self.features = nn.Sequential(*layers)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: Tensor, names: list[str]) -> dict[str, Tensor]:
        """(1, 3, H, W) -> {name: (1, C, h, w)} for the requested layers, running only as deep as needed."""
        wanted = {self.layer_index[n]: n for n in names}
        out = {}
        for i, layer in enumerate(self.features):
            x = layer(x)
            if i in wanted:
                out[wanted[i]] = x
                if len(out) == len(wanted):
                    break
        return out


def gram(x: Tensor) -> Tensor:
    """(1, C, H, W) -> (C, C) channel correlations, divided by C * H * W (as D2L)."""
    c, n = x.shape[1], x.numel() // x.shape[1]
    x = x.reshape(c, n)
    return x @ x.T / (c * n)


class SynthesizedImage(nn.Module):
    """The image being optimised, as a module whose one parameter is its pixels (D2L 14.12): the
    optimizer, the checkpoint and ``.to(device)`` treat it like any model."""

    def __init__(self, start: Tensor):
        super().__init__()
        self.weight = nn.Parameter(start.detach().clone())  # (1, 3, H, W), normalised pixels

    def forward(self) -> Tensor:
        return self.weight
