"""A small single-shot multibox detector (D2L 14.7, "TinySSD").

A base network of down-sampling blocks, then more blocks that halve the feature map until a
global max-pool; each of the ``len(sizes)`` feature maps gets anchors (``multibox_prior``) and two
3x3 convolutions predicting, per anchor, class scores (background + classes) and four box offsets.
Small maps carry large anchors: the scales grow from ``sizes[0]`` to ``sizes[-1]``.

Presets:

    tiny-ssd        D2L's network: base 16-32-64, then 128 x 3, five scales, 256x256 input
    tiny-ssd-128    the same layers on 128x128 input (a quarter of the compute): maps 16, 8, 4, 2, 1
    tiny-ssd-fruit  tiny-ssd-128 with anchor sizes for large objects (FRUIT_SIZES)

Anchor sizes are the part of an SSD one fits to the data. D2L's suit its banana set (objects
about a fifth of the image). In the fruit set the boxes' side, sqrt(w h), has median 0.49 of the
image, 5th percentile 0.26 and 95th 0.81: with D2L's sizes nearly every object matches only the
few anchors of the 1x1 and 2x2 maps. FRUIT_SIZES spread 0.25 .. 0.96 over the five maps instead.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from practicum.detection.anchors import anchors_per_pixel, multibox_prior

# D2L's anchor scales (linearly spaced 0.2 .. 0.88, plus sqrt(s_i s_{i+1})) and aspect ratios
D2L_SIZES = [[0.2, 0.272], [0.37, 0.447], [0.54, 0.619], [0.71, 0.79], [0.88, 0.961]]
D2L_RATIOS = [[1, 2, 0.5]] * 5
FRUIT_SIZES = [[0.25, 0.32], [0.4, 0.48], [0.56, 0.64], [0.72, 0.8], [0.88, 0.96]]


def down_sample_blk(in_channels: int, out_channels: int) -> nn.Sequential:
    """Two 3x3 conv-BN-ReLU and a 2x2 max-pool: (B, in, H, W) -> (B, out, H/2, W/2)."""
    layers = []
    for _ in range(2):
        layers += [nn.Conv2d(in_channels, out_channels, 3, padding=1), nn.BatchNorm2d(out_channels), nn.ReLU()]
        in_channels = out_channels
    return nn.Sequential(*layers, nn.MaxPool2d(2))


class TinySSD(nn.Module):
    def __init__(self, num_classes: int, base: tuple[int, ...] = (16, 32, 64), extra: int = 128,
                 sizes=D2L_SIZES, ratios=D2L_RATIOS, image_size: int = 256):
        super().__init__()
        if len(sizes) != len(ratios) or len(sizes) < 2:
            raise ValueError("sizes and ratios need one entry per scale (at least two scales)")
        self.num_classes, self.sizes, self.ratios, self.image_size = num_classes, sizes, ratios, image_size
        base_layers, c = [], 3
        for out in base:
            base_layers.append(down_sample_blk(c, out))
            c = out
        blocks = [nn.Sequential(*base_layers)]  # (B, 3, S, S) -> (B, base[-1], S / 2^len(base), ...)
        for i in range(1, len(sizes)):
            if i == len(sizes) - 1:
                blocks.append(nn.AdaptiveMaxPool2d((1, 1)))  # last scale: one pixel, the whole image
            else:
                blocks.append(down_sample_blk(c, extra))
                c = extra
        self.blocks = nn.ModuleList(blocks)
        channels = [base[-1]] + [extra] * (len(sizes) - 1)
        k = [anchors_per_pixel(s, r) for s, r in zip(sizes, ratios)]
        # per pixel, n anchors x (classes + background) scores and n x 4 offsets
        self.cls_heads = nn.ModuleList(nn.Conv2d(ch, n * (num_classes + 1), 3, padding=1)
                                       for ch, n in zip(channels, k))
        self.box_heads = nn.ModuleList(nn.Conv2d(ch, n * 4, 3, padding=1) for ch, n in zip(channels, k))
        self._anchors: dict[tuple, Tensor] = {}

    def anchors_for(self, shapes: list[tuple[int, int]], device: torch.device | str = "cpu") -> Tensor:
        """All anchors, scale by scale, for feature maps of the given (H, W): (A, 4) on ``device``
        (built once per input size and device)."""
        key = (tuple(shapes), str(device))
        if key not in self._anchors:
            self._anchors[key] = torch.cat([multibox_prior(h, w, s, r)
                                            for (h, w), s, r in zip(shapes, self.sizes, self.ratios)]).to(device)
        return self._anchors[key]

    def forward(self, x: Tensor):
        """(B, 3, S, S) -> anchors (A, 4), class logits (B, A, C + 1), offsets (B, A * 4)."""
        cls_preds, box_preds, shapes = [], [], []
        for block, cls_head, box_head in zip(self.blocks, self.cls_heads, self.box_heads):
            x = block(x)  # (B, ch, h, w)
            shapes.append(tuple(x.shape[-2:]))
            # channels last, so a pixel's k anchors are adjacent, matching multibox_prior's order
            cls_preds.append(cls_head(x).permute(0, 2, 3, 1).flatten(1))  # (B, h * w * k * (C + 1))
            box_preds.append(box_head(x).permute(0, 2, 3, 1).flatten(1))  # (B, h * w * k * 4)
        cls = torch.cat(cls_preds, 1).reshape(x.shape[0], -1, self.num_classes + 1)
        return self.anchors_for(shapes, x.device), cls, torch.cat(box_preds, 1)


PRESETS = {
    "tiny-ssd": dict(base=(16, 32, 64), extra=128, image_size=256),
    "tiny-ssd-128": dict(base=(16, 32, 64), extra=128, image_size=128),
    "tiny-ssd-fruit": dict(base=(16, 32, 64), extra=128, image_size=128, sizes=FRUIT_SIZES),
}


def build_ssd(name: str, num_classes: int, **overrides) -> TinySSD:
    from practicum.errors import UsageError
    from practicum.registry import nearest

    if name not in PRESETS:
        raise UsageError(f"unknown detector '{name}'{nearest(name, PRESETS)}; valid: {', '.join(PRESETS)}")
    return TinySSD(num_classes, **{**PRESETS[name], **overrides})
