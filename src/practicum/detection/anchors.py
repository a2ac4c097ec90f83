"""Anchor boxes (D2L 14.4): several boxes centred on every pixel of a feature map."""

from __future__ import annotations

import math

import torch
from torch import Tensor


def anchors_per_pixel(sizes, ratios) -> int:
    """D2L keeps n + m - 1 of the n * m size/ratio pairs: every size with the first ratio, and
    the first size with every other ratio."""
    return len(sizes) + len(ratios) - 1


def multibox_prior(height: int, width: int, sizes: list[float], ratios: list[float]) -> Tensor:
    """Anchors of a ``height`` x ``width`` feature map: (height * width * k, 4) corner boxes in
    normalised image coordinates, pixel by pixel in row-major order, the k anchors of a pixel
    together (k = ``anchors_per_pixel``).

    An anchor of size s and aspect ratio r (width / height) is ``s sqrt(r)`` wide and
    ``s / sqrt(r)`` high, in units of the image height; widths are multiplied by height / width
    so that ratio 1 is square in pixels on a non-square image too.
    """
    cy = (torch.arange(height) + 0.5) / height  # (H,) pixel centres
    cx = (torch.arange(width) + 0.5) / width  # (W,)
    cy, cx = torch.meshgrid(cy, cx, indexing="ij")  # (H, W) each
    pairs = [(s, ratios[0]) for s in sizes] + [(sizes[0], r) for r in ratios[1:]]
    w = torch.tensor([s * math.sqrt(r) for s, r in pairs]) * height / width  # (k,)
    h = torch.tensor([s / math.sqrt(r) for s, r in pairs])  # (k,)
    half = torch.stack([-w, -h, w, h], dim=1) / 2  # (k, 4) corner offsets from the centre
    centres = torch.stack([cx, cy, cx, cy], dim=-1).reshape(-1, 1, 4)  # (H * W, 1, 4)
    return (centres + half).reshape(-1, 4)  # (H * W * k, 4)
