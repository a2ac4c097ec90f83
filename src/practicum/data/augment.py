"""Batched image augmentation in plain torch: whole-batch ops, no per-image Python, no torchvision.

Every op comes in two parts: a deterministic function taking explicit parameters (what the
tests check on known tensors) and a ``random_*`` function drawing those parameters from a
``torch.Generator`` (whose state the loop checkpoints, so a resumed run draws the same).
The generator is a CPU one (the same draws on every device); what is drawn, and every tensor
an op makes, goes to the images' device, so a batch on a GPU is augmented there.

    x: (B, C, H, W) float; y: (B, K) multi-hot (float after mixing)

    random_shift  translate each image by up to N pixels (pad + crop), one gather
    flip        mirror left-right where mask is set
    resized_crop  crop a box (fractions of the image) and scale it back to H x W (grid_sample)
    jitter      brightness (x * b), contrast (towards the grey mean), saturation (towards grey)
    erase       fill a box with a value (after normalisation 0 = the data set's mean)
    mixup       lam * x + (1 - lam) * x[perm], and the same mix of the targets
    cutmix      paste a box of x[perm]; targets mixed by the pasted area

Mixing makes soft multi-label targets (y in [0, 1]): the BCE loss takes them as they are.

Detection moves the boxes with the pixels. Labels are (B, M, 5) rows ``(class, x1, y1, x2, y2)``
normalised to the image, class -1 = a padding row:

    flip_boxes           mirror the boxes of the flipped images
    crop_boxes           boxes in a crop window's coordinates (the crop is ``resized_crop``):
                         a box whose centre is outside the window becomes padding, the rest are clipped
    random_square_crops  per-image square windows that keep at least one box centre, else the whole image
    brightness_contrast  additive brightness, contrast about the image's mean (SSD's photometric jitter)
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor



def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                 shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Translate each image by (dy, dx) in [-pad, pad], filling with zeros: pad + random crop.

    x: (B, C, H, W), any dtype. One gather for the whole batch: the crop windows are index
    grids offset per sample. ``shifts`` (B, 2) in [0, 2*pad] may be given (e.g. drawn for a
    larger global batch); otherwise they are drawn from ``generator``.
    """
    if pad <= 0:
        return x
    B, C, H, W = x.shape
    if shifts is None:
        shifts = torch.randint(0, 2 * pad + 1, (B, 2), generator=generator)
    shifts = shifts.to(x.device)
    padded = F.pad(x, (pad, pad, pad, pad))  # (B, C, H+2p, W+2p), zeros = black background
    rows = (shifts[:, 0:1] + torch.arange(H, device=x.device)).view(B, 1, H, 1)  # (B, 1, H, 1) source rows
    cols = (shifts[:, 1:2] + torch.arange(W, device=x.device)).view(B, 1, 1, W)  # (B, 1, 1, W) source columns
    flat = rows * (W + 2 * pad) + cols  # (B, 1, H, W) index into each padded image
    return padded.flatten(2).gather(2, flat.flatten(2).expand(B, C, H * W)).view(B, C, H, W)


def flip(x: Tensor, mask: Tensor) -> Tensor:
    """Mirror the images where ``mask`` (B,) bool is set."""
    return torch.where(mask.to(x.device).view(-1, 1, 1, 1), x.flip(-1), x)


def random_flip(x: Tensor, p: float, gen: torch.Generator) -> Tensor:
    return flip(x, torch.rand(len(x), generator=gen) < p)


def resized_crop(x: Tensor, boxes: Tensor) -> Tensor:
    """Crop each image to ``boxes`` (B, 4) = (x0, y0, x1, y1) as fractions of its width/height and
    resize the crop back to (H, W), bilinear: one affine ``grid_sample`` for the batch."""
    x0, y0, x1, y1 = boxes.to(x.device, x.dtype).unbind(1)
    theta = torch.zeros(len(x), 2, 3, dtype=x.dtype, device=x.device)
    theta[:, 0, 0], theta[:, 0, 2] = x1 - x0, x0 + x1 - 1  # output [-1, 1] -> input [2 x0 - 1, 2 x1 - 1]
    theta[:, 1, 1], theta[:, 1, 2] = y1 - y0, y0 + y1 - 1
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def random_boxes(n: int, scale: tuple[float, float], ratio: tuple[float, float], gen: torch.Generator) -> Tensor:
    """(n, 4) boxes with area fraction in ``scale``, aspect w/h log-uniform in ``ratio``, inside the image."""
    area = torch.empty(n).uniform_(scale[0], scale[1], generator=gen)
    log_r = torch.empty(n).uniform_(math.log(ratio[0]), math.log(ratio[1]), generator=gen)
    w = (area * log_r.exp()).sqrt().clamp(max=1.0)
    h = (area / log_r.exp()).sqrt().clamp(max=1.0)
    x0 = torch.rand(n, generator=gen) * (1 - w)
    y0 = torch.rand(n, generator=gen) * (1 - h)
    return torch.stack([x0, y0, x0 + w, y0 + h], 1)


def random_resized_crop(x: Tensor, p: float, scale: tuple[float, float], gen: torch.Generator,
                        ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> Tensor:
    boxes = random_boxes(len(x), scale, ratio, gen)
    keep = torch.rand(len(x), generator=gen) >= p
    boxes[keep] = torch.tensor([0.0, 0.0, 1.0, 1.0])  # the whole image: identity
    return resized_crop(x, boxes)


def jitter(x: Tensor, brightness: Tensor, contrast: Tensor, saturation: Tensor) -> Tensor:
    """Colour jitter of images in [0, 1] with per-image factors (B,) (1 = unchanged), clamped."""
    b, c, s = (f.view(-1, 1, 1, 1).to(x.device, x.dtype) for f in (brightness, contrast, saturation))
    x = x * b
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x  # (B, 1, H, W)
    x = grey.mean((2, 3), keepdim=True) + (x - grey.mean((2, 3), keepdim=True)) * c
    grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x
    x = grey + (x - grey) * s
    return x.clamp(0, 1)


def random_jitter(x: Tensor, strength: float, gen: torch.Generator) -> Tensor:
    f = 1 + (torch.rand(3, len(x), generator=gen) * 2 - 1) * strength  # (3, B) in [1-s, 1+s]
    return jitter(x, f[0], f[1], f[2])


def erase(x: Tensor, boxes: Tensor, value: float = 0.0) -> Tensor:
    """Fill ``boxes`` (B, 4) fractions (an empty box erases nothing) with ``value``."""
    H, W = x.shape[-2:]
    boxes = boxes.to(x.device)
    rows = (torch.arange(H, device=x.device) + 0.5) / H  # pixel centres as fractions
    cols = (torch.arange(W, device=x.device) + 0.5) / W
    inside = ((rows.view(1, H, 1) >= boxes[:, 1, None, None]) & (rows.view(1, H, 1) < boxes[:, 3, None, None])
              & (cols.view(1, 1, W) >= boxes[:, 0, None, None]) & (cols.view(1, 1, W) < boxes[:, 2, None, None]))
    return x.masked_fill(inside.unsqueeze(1), value)  # (B, 1, H, W) mask over every channel


def random_erase(x: Tensor, p: float, gen: torch.Generator, scale: tuple[float, float] = (0.02, 0.25),
                 ratio: tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> Tensor:
    boxes = random_boxes(len(x), scale, ratio, gen)
    boxes[torch.rand(len(x), generator=gen) >= p] = 0.0  # empty box: no erasing
    return erase(x, boxes, value)


def mixup(x: Tensor, y: Tensor, perm: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Blend every image with its partner ``x[perm]``; the targets blend the same way."""
    y, perm = y.to(x.device, x.dtype), perm.to(x.device)
    return lam * x + (1 - lam) * x[perm], lam * y + (1 - lam) * y[perm]


def cutmix(x: Tensor, y: Tensor, perm: Tensor, box: tuple[int, int, int, int]) -> tuple[Tensor, Tensor]:
    """Paste ``box`` = (top, left, height, width) pixels of ``x[perm]`` into every image; targets
    mix by area: lam = the share of each image left unchanged."""
    top, left, h, w = box
    H, W = x.shape[-2:]
    out, perm = x.clone(), perm.to(x.device)
    out[..., top:top + h, left:left + w] = x[perm][..., top:top + h, left:left + w]
    lam = 1 - h * w / (H * W)
    y = y.to(x.device, x.dtype)
    return out, lam * y + (1 - lam) * y[perm]


def beta(alpha: float, gen: torch.Generator) -> float:
    """A Beta(alpha, alpha) draw seeded from ``gen`` (torch's Beta takes no generator)."""
    seed = int(torch.randint(0, 2**31 - 1, (1,), generator=gen))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def random_mix(x: Tensor, y: Tensor, mixup_alpha: float, cutmix_alpha: float, p: float,
               gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """With probability ``p``, mixup or cutmix (an even choice when both are on) of the batch."""
    y = y.to(x.device, x.dtype)
    if not (mixup_alpha or cutmix_alpha) or float(torch.rand(1, generator=gen)) >= p:
        return x, y
    perm = torch.randperm(len(x), generator=gen)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or float(torch.rand(1, generator=gen)) < 0.5)
    if not use_cutmix:
        return mixup(x, y, perm, beta(mixup_alpha, gen))
    H, W = x.shape[-2:]
    cut = math.sqrt(1 - beta(cutmix_alpha, gen))  # side fraction of the pasted box
    h, w = round(H * cut), round(W * cut)
    top = int(torch.randint(0, H - h + 1, (1,), generator=gen))
    left = int(torch.randint(0, W - w + 1, (1,), generator=gen))
    return cutmix(x, y, perm, (top, left, h, w))


# ---------------------------------------------------------------------------------------------
# Boxes: labels (B, M, 5) rows (class, x1, y1, x2, y2) in 0..1, class -1 = padding


def flip_boxes(labels: Tensor, mask: Tensor) -> Tensor:
    """The boxes of the images ``flip(x, mask)`` mirrors: x1, x2 -> 1 - x2, 1 - x1 (padding stays)."""
    mirrored = torch.stack([labels[..., 0], 1 - labels[..., 3], labels[..., 2], 1 - labels[..., 1],
                            labels[..., 4]], -1)
    change = mask.to(labels.device)[:, None] & (labels[..., 0] >= 0)  # (B, M)
    return torch.where(change[..., None], mirrored, labels)


def crop_boxes(labels: Tensor, windows: Tensor) -> Tensor:
    """The boxes of ``resized_crop(x, windows)``: windows (B, 4) = (x0, y0, x1, y1) fractions of
    the image. A box whose centre lies inside its window is shifted and scaled into the window's
    coordinates and clipped to it; any other box becomes a padding row (all -1)."""
    x0, y0, x1, y1 = windows.to(labels.device, labels.dtype)[:, None].unbind(-1)  # (B, 1) each
    cx, cy = (labels[..., 1] + labels[..., 3]) / 2, (labels[..., 2] + labels[..., 4]) / 2  # (B, M)
    inside = (labels[..., 0] >= 0) & (cx > x0) & (cx < x1) & (cy > y0) & (cy < y1)
    origin = torch.stack([x0, y0, x0, y0], -1)  # (B, 1, 4)
    size = torch.stack([x1 - x0, y1 - y0, x1 - x0, y1 - y0], -1)
    moved = torch.cat([labels[..., :1], ((labels[..., 1:] - origin) / size).clamp(0, 1)], -1)
    return torch.where(inside[..., None], moved, torch.full_like(labels, -1.0))


def random_square_crops(labels: Tensor, p: float, min_side: float, gen: torch.Generator) -> Tensor:
    """(B, 4) crop windows: with probability ``p`` a square of side U(min_side, 1) (a fraction of
    the image) at a uniform position, else the whole image; a window that would keep no box
    centre is the whole image too (the image is left alone rather than emptied)."""
    B = len(labels)
    crop = torch.rand(B, generator=gen) < p
    side = min_side + (1 - min_side) * torch.rand(B, 1, generator=gen)  # (B, 1)
    origin = torch.rand(B, 2, generator=gen) * (1 - side)  # (B, 2) top-left corner
    windows = torch.cat([origin, origin + side], 1).to(labels.device)
    keeps_one = (crop_boxes(labels, windows)[..., 0] >= 0).any(1)  # (B,)
    whole = torch.tensor([0.0, 0.0, 1.0, 1.0], device=labels.device)
    return torch.where((crop.to(labels.device) & keeps_one)[:, None], windows, whole)


def brightness_contrast(x: Tensor, brightness: Tensor, contrast: Tensor) -> Tensor:
    """Per-image (B,) jitter: ``(x - m) * contrast + m + brightness`` with m the image's mean over
    channels and pixels; brightness is in the units of x. Not clamped (the model sees normalised
    values, and SSD's photometric distortion lets them overshoot too)."""
    b, c = (f.to(x.device, x.dtype).view(-1, 1, 1, 1) for f in (brightness, contrast))
    mean = x.mean(dim=(1, 2, 3), keepdim=True)  # (B, 1, 1, 1)
    return (x - mean) * c + mean + b
