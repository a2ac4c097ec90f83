"""AutoAugment, RandAugment and AugMix in plain torch, batched: whole-batch ops, no PIL, no torchvision.

Every image of a batch draws its own operations and magnitudes, from the loader's ``torch.Generator``
(checkpointed by the fit loop, so a resumed run draws the same). An operation takes the images
and one magnitude per image, in the operation's own units, and is tested on known tensors (and
against PIL, whose definitions AutoAugment's operations are):

    x: (B, C, H, W) float in [0, 1]; m: (B,) float

    ShearX / ShearY          m = shear factor: PIL's affine (1, m, 0, 0, 1, 0), about the top-left corner
    TranslateX / TranslateY  m = pixels (positive: right / down)
    Rotate                   m = degrees, counter-clockwise about the centre
    Brightness, Color, Contrast, Sharpness
                             m = enhancement factor (PIL's ImageEnhance: 1 = unchanged, 0 = the
                                 degenerate image: black, grey, the mean grey, smoothed)
    Posterize                m = bits kept per channel (1..8)
    Solarize                 m = threshold: pixels >= m are inverted
    AutoContrast, Equalize, Invert, Identity     m unused
    cutout (after a policy)  a square of ``size`` pixels at a random centre, filled

Geometric ops sample the nearest pixel (torchvision's AutoAugment default) and fill what comes
from outside the image with ``fill`` (0 = black, torchvision's default).

The policies, each a function (x, generator) -> x:

    autoaugment  one of the 25 sub-policies learned on ImageNet, CIFAR-10 or SVHN (Cubuk et al.
                 2019) per image: two (operation, probability, magnitude bin of 10) steps
    randaugment  N operations drawn uniformly from 14 per image, all at magnitude M of 31 bins,
                 a random sign where the operation has one (Cubuk et al. 2020)
    augmix       ``width`` chains of 1-3 random operations (severity 1..10) mixed with Dirichlet
                 weights, then blended with the original by a Beta draw (Hendrycks et al. 2020);
                 with the Jensen-Shannon loss (train/consistency.py) the clean image and two AugMix
                 views go out together as (B, 3, C, H, W)

The magnitude tables are torchvision's (``_augmentation_space``) for AutoAugment and RandAugment and
the AugMix reference code's (``augmentations.py``) for AugMix.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from practicum.data.augment import erase

# ---------------------------------------------------------------------------------------------
# Operations: (x (B, C, H, W) in [0, 1], m (B,)) -> (B, C, H, W)


def affine(x: Tensor, theta: Tensor, fill: float = 0.0) -> Tensor:
    """Sample x at theta (B, 2, 3) @ (x_out, y_out, 1) in normalised coordinates, nearest pixel;
    points outside the image take ``fill``."""
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)  # (B, H, W, 2)
    return F.grid_sample(x - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False) + fill


def _theta(x: Tensor, a=0.0, b=0.0, c=0.0, d=0.0, e=0.0, f=0.0) -> Tensor:
    """(B, 2, 3) from per-image entries (tensors (B,) or numbers), the identity added."""
    B = len(x)
    rows = [torch.as_tensor(v, dtype=x.dtype).expand(B) for v in (a, b, c, d, e, f)]
    theta = torch.stack(rows, 1).view(B, 2, 3)
    return theta + torch.tensor([[1.0, 0, 0], [0, 1.0, 0]], dtype=x.dtype)


def shear_x(x: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    # x_in = x_out + m y_out in pixels from the top-left corner; in [-1, 1] coordinates the
    # y term is m (H / W) (y_n + 1)
    H, W = x.shape[-2:]
    return affine(x, _theta(x, b=m * H / W, c=m * H / W), fill)


def shear_y(x: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    H, W = x.shape[-2:]
    return affine(x, _theta(x, d=m * W / H, f=m * W / H), fill)


def translate_x(x: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    return affine(x, _theta(x, c=-2 * m / x.shape[-1]), fill)


def translate_y(x: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    return affine(x, _theta(x, f=-2 * m / x.shape[-2]), fill)


def rotate(x: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    # the output pixel at angle phi samples the input at phi - m (y points down); the aspect
    # ratio enters because normalised coordinates stretch a non-square image to a square
    H, W = x.shape[-2:]
    r = torch.as_tensor(m, dtype=x.dtype) * math.pi / 180
    cos, sin = r.cos(), r.sin()
    return affine(x, _theta(x, a=cos - 1, b=-sin * H / W, d=sin * W / H, e=cos - 1), fill)


def grey(x: Tensor) -> Tensor:
    """(B, 1, H, W) luma, ITU-R 601 as PIL's convert("L"); a grey image is its own."""
    return 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3] if x.shape[1] == 3 else x


def blend(degenerate: Tensor, x: Tensor, factor: Tensor) -> Tensor:
    """PIL's ImageEnhance: degenerate + factor (x - degenerate), clamped to [0, 1]."""
    f = torch.as_tensor(factor, dtype=x.dtype).view(-1, 1, 1, 1)
    return (degenerate + f * (x - degenerate)).clamp(0, 1)


def brightness(x: Tensor, m: Tensor) -> Tensor:
    return blend(torch.zeros_like(x), x, m)


def color(x: Tensor, m: Tensor) -> Tensor:
    return blend(grey(x).expand_as(x), x, m)


def contrast(x: Tensor, m: Tensor) -> Tensor:
    return blend(grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), x, m)


def sharpness(x: Tensor, m: Tensor) -> Tensor:
    """Blend with PIL's SMOOTH filter ([[1, 1, 1], [1, 5, 1], [1, 1, 1]] / 13); the border
    pixels of the smoothed image are the original's, as in PIL."""
    C = x.shape[1]
    k = torch.tensor([[1.0, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=x.dtype) / 13
    smooth = F.conv2d(x, k.expand(C, 1, 3, 3), groups=C)  # (B, C, H - 2, W - 2)
    degenerate = x.clone()
    degenerate[..., 1:-1, 1:-1] = smooth
    return blend(degenerate, x, m)


def levels(x: Tensor) -> Tensor:
    """[0, 1] floats -> 0..255 int64 (the images came from uint8: exact)."""
    return (x * 255).round().clamp(0, 255).long()


def posterize(x: Tensor, m: Tensor) -> Tensor:
    bits = torch.as_tensor(m).round().long().clamp(1, 8).view(-1, 1, 1, 1)
    mask = (255 << (8 - bits)) & 255  # (B, 1, 1, 1): the top ``bits`` bits
    return (levels(x) & mask).to(x.dtype) / 255


def solarize(x: Tensor, m: Tensor) -> Tensor:
    t = torch.as_tensor(m, dtype=x.dtype).view(-1, 1, 1, 1)
    return torch.where(x >= t, 1 - x, x)


def invert(x: Tensor, m: Tensor | None = None) -> Tensor:  # noqa: ARG001 - one signature for all ops
    return 1 - x


def autocontrast(x: Tensor, m: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """Stretch each channel of each image to span [0, 1]; a flat channel is left alone."""
    lo, hi = x.amin((2, 3), keepdim=True), x.amax((2, 3), keepdim=True)  # (B, C, 1, 1)
    flat = hi <= lo
    scale = torch.where(flat, torch.ones_like(hi), 1 / (hi - lo).clamp(min=1e-12))
    return torch.where(flat, x, ((x - lo) * scale).clamp(0, 1))


def equalize(x: Tensor, m: Tensor | None = None) -> Tensor:  # noqa: ARG001
    """Histogram equalisation per channel, PIL's (and torchvision's) on the 256 levels:
    lut[i] = (step // 2 + #pixels below level i) // step, step = (#pixels - #in the last used
    level) // 255; a channel with step 0 is left alone. One histogram per (image, channel)."""
    B, C, H, W = x.shape
    lv = levels(x).view(B * C, H * W)
    hist = torch.zeros(B * C, 256, dtype=torch.long).scatter_add_(1, lv, torch.ones_like(lv))  # (BC, 256)
    top = 255 - (hist.flip(1) > 0).long().argmax(1)  # (BC,) the highest level used
    step = (H * W - hist.gather(1, top[:, None]).squeeze(1)) // 255  # (BC,)
    below = F.pad(hist.cumsum(1), (1, 0))[:, :-1]  # (BC, 256) pixels under each level
    lut = ((below + (step // 2)[:, None]) // step.clamp(min=1)[:, None]).clamp(0, 255)
    out = torch.where((step == 0)[:, None], lv, lut.gather(1, lv))
    return out.view(B, C, H, W).to(x.dtype) / 255


def identity(x: Tensor, m: Tensor | None = None) -> Tensor:  # noqa: ARG001
    return x


OPS: dict[str, Callable[..., Tensor]] = {
    "Identity": identity, "ShearX": shear_x, "ShearY": shear_y, "TranslateX": translate_x,
    "TranslateY": translate_y, "Rotate": rotate, "Brightness": brightness, "Color": color,
    "Contrast": contrast, "Sharpness": sharpness, "Posterize": posterize, "Solarize": solarize,
    "AutoContrast": autocontrast, "Equalize": equalize, "Invert": invert,
}
GEOMETRIC = ("ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate")


def apply_ops(x: Tensor, names: tuple[str, ...], which: Tensor, m: Tensor, fill: float = 0.0) -> Tensor:
    """Image b gets ``OPS[names[which[b]]]`` at magnitude m[b]: one call per operation present,
    on the images that drew it."""
    out = x.clone()
    for k, name in enumerate(names):
        idx = (which == k).nonzero().squeeze(1)
        if name == "Identity" or not len(idx):
            continue
        kwargs = {"fill": fill} if name in GEOMETRIC else {}
        out[idx] = OPS[name](x[idx], m[idx], **kwargs)
    return out


def cutout(x: Tensor, centres: Tensor, size: int, fill: float = 0.5) -> Tensor:
    """Fill a size x size square centred on ``centres`` (B, 2) = (row, col) pixels, clipped at the
    border, with ``fill`` (DeVries & Taylor 2017; the AutoAugment paper's CIFAR recipe: 16 px)."""
    H, W = x.shape[-2:]
    top, left = (centres[:, 0] - size // 2).to(x.dtype), (centres[:, 1] - size // 2).to(x.dtype)
    boxes = torch.stack([left / W, top / H, (left + size) / W, (top + size) / H], 1)  # fractions
    return erase(x, boxes, fill)


def random_cutout(x: Tensor, size: int, gen: torch.Generator, fill: float = 0.5) -> Tensor:
    H, W = x.shape[-2:]
    centres = torch.stack([torch.randint(0, H, (len(x),), generator=gen),
                           torch.randint(0, W, (len(x),), generator=gen)], 1)
    return cutout(x, centres, size, fill)


# ---------------------------------------------------------------------------------------------
# Magnitudes: a level f in [0, 1] per image (and a sign) -> the operation's units


def magnitudes(name: str, f: Tensor, sign: Tensor, H: int, W: int) -> Tensor:
    """torchvision's AutoAugment/RandAugment space: f = bin / (bins - 1)."""
    if name in ("ShearX", "ShearY"):
        return 0.3 * f * sign
    if name == "TranslateX":
        return (150 / 331 * W * f).trunc() * sign  # torchvision: int(magnitude) pixels
    if name == "TranslateY":
        return (150 / 331 * H * f).trunc() * sign
    if name == "Rotate":
        return 30 * f * sign
    if name in ("Brightness", "Color", "Contrast", "Sharpness"):
        return 1 + 0.9 * f * sign
    if name == "Posterize":
        return 8 - (4 * f).round()  # 8 bits at f = 0, 4 at f = 1
    if name == "Solarize":
        return 1 - f  # threshold 255 -> 0 (on the 0..255 scale)
    return torch.zeros_like(f)


def augmix_magnitudes(name: str, level: Tensor, sign: Tensor, H: int, W: int) -> Tensor:
    """The AugMix reference's: level in [0.1, severity] of 10, integer parameters truncated."""
    f = level / 10
    if name in ("ShearX", "ShearY"):
        return 0.3 * f * sign
    if name == "TranslateX":
        return (W / 3 * f).trunc() * sign
    if name == "TranslateY":
        return (H / 3 * f).trunc() * sign
    if name == "Rotate":
        return (30 * f).trunc() * sign
    if name == "Posterize":
        return 4 - (4 * f).trunc()  # 4 bits at level 0, 0 -> 1 at level 10 (PIL keeps >= 1)
    if name == "Solarize":
        return (256 - (256 * f).trunc()) / 255  # PIL: 256 inverts nothing
    return torch.zeros_like(f)


def levels_to_args(names: tuple[str, ...], which: Tensor, f: Tensor, sign: Tensor, H: int, W: int,
                   table=magnitudes) -> Tensor:
    m = torch.zeros_like(f)
    for k, name in enumerate(names):
        sel = which == k
        if sel.any():
            m[sel] = table(name, f[sel], sign[sel], H, W)
    return m


# ---------------------------------------------------------------------------------------------
# AutoAugment: the learned sub-policies, ((operation, probability, magnitude bin of 10), (...))

AUTOAUGMENT: dict[str, tuple] = {
    "imagenet": (
        (("Posterize", 0.4, 8), ("Rotate", 0.6, 9)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
        (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)), (("Posterize", 0.6, 7), ("Posterize", 0.6, 6)),
        (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Equalize", 0.4, 0), ("Rotate", 0.8, 8)),
        (("Solarize", 0.6, 3), ("Equalize", 0.6, 0)), (("Posterize", 0.8, 5), ("Equalize", 1.0, 0)),
        (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)), (("Equalize", 0.6, 0), ("Posterize", 0.4, 6)),
        (("Rotate", 0.8, 8), ("Color", 0.4, 0)), (("Rotate", 0.4, 9), ("Equalize", 0.6, 0)),
        (("Equalize", 0.0, 0), ("Equalize", 0.8, 0)), (("Invert", 0.6, 0), ("Equalize", 1.0, 0)),
        (("Color", 0.6, 4), ("Contrast", 1.0, 8)), (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
        (("Color", 0.8, 8), ("Solarize", 0.8, 7)), (("Sharpness", 0.4, 7), ("Invert", 0.6, 0)),
        (("ShearX", 0.6, 5), ("Equalize", 1.0, 0)), (("Color", 0.4, 0), ("Equalize", 0.6, 0)),
        (("Equalize", 0.4, 0), ("Solarize", 0.2, 4)), (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 0)),
        (("Invert", 0.6, 0), ("Equalize", 1.0, 0)), (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
        (("Equalize", 0.8, 0), ("Equalize", 0.6, 0)),
    ),
    "cifar10": (
        (("Invert", 0.1, 0), ("Contrast", 0.2, 6)), (("Rotate", 0.7, 2), ("TranslateX", 0.3, 9)),
        (("Sharpness", 0.8, 1), ("Sharpness", 0.9, 3)), (("ShearY", 0.5, 8), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.5, 0), ("Equalize", 0.9, 0)), (("ShearY", 0.2, 7), ("Posterize", 0.3, 7)),
        (("Color", 0.4, 3), ("Brightness", 0.6, 7)), (("Sharpness", 0.3, 9), ("Brightness", 0.7, 9)),
        (("Equalize", 0.6, 0), ("Equalize", 0.5, 0)), (("Contrast", 0.6, 7), ("Sharpness", 0.6, 5)),
        (("Color", 0.7, 7), ("TranslateX", 0.5, 8)), (("Equalize", 0.3, 0), ("AutoContrast", 0.4, 0)),
        (("TranslateY", 0.4, 3), ("Sharpness", 0.2, 6)), (("Brightness", 0.9, 6), ("Color", 0.2, 8)),
        (("Solarize", 0.5, 2), ("Invert", 0.0, 0)), (("Equalize", 0.2, 0), ("AutoContrast", 0.6, 0)),
        (("Equalize", 0.2, 0), ("Equalize", 0.6, 0)), (("Color", 0.9, 9), ("Equalize", 0.6, 0)),
        (("AutoContrast", 0.8, 0), ("Solarize", 0.2, 8)), (("Brightness", 0.1, 3), ("Color", 0.7, 0)),
        (("Solarize", 0.4, 5), ("AutoContrast", 0.9, 0)), (("TranslateY", 0.9, 9), ("TranslateY", 0.7, 9)),
        (("AutoContrast", 0.9, 0), ("Solarize", 0.8, 3)), (("Equalize", 0.8, 0), ("Invert", 0.1, 0)),
        (("TranslateY", 0.7, 9), ("AutoContrast", 0.9, 0)),
    ),
    "svhn": (
        (("ShearX", 0.9, 4), ("Invert", 0.2, 0)), (("ShearY", 0.9, 8), ("Invert", 0.7, 0)),
        (("Equalize", 0.6, 0), ("Solarize", 0.6, 6)), (("Invert", 0.9, 0), ("Equalize", 0.6, 0)),
        (("Equalize", 0.6, 0), ("Rotate", 0.9, 3)), (("ShearX", 0.9, 4), ("AutoContrast", 0.8, 0)),
        (("ShearY", 0.9, 8), ("Invert", 0.4, 0)), (("ShearY", 0.9, 5), ("Solarize", 0.2, 6)),
        (("Invert", 0.9, 0), ("AutoContrast", 0.8, 0)), (("Equalize", 0.6, 0), ("Rotate", 0.9, 3)),
        (("ShearX", 0.9, 4), ("Solarize", 0.3, 3)), (("ShearY", 0.8, 8), ("Invert", 0.7, 0)),
        (("Equalize", 0.9, 0), ("TranslateY", 0.6, 6)), (("Invert", 0.9, 0), ("Equalize", 0.6, 0)),
        (("Contrast", 0.3, 3), ("Rotate", 0.8, 4)), (("Invert", 0.8, 0), ("TranslateY", 0.0, 2)),
        (("ShearY", 0.7, 6), ("Solarize", 0.4, 8)), (("Invert", 0.6, 0), ("Rotate", 0.8, 4)),
        (("ShearY", 0.3, 7), ("TranslateX", 0.9, 3)), (("ShearX", 0.1, 6), ("Invert", 0.6, 0)),
        (("Solarize", 0.7, 2), ("TranslateY", 0.6, 7)), (("ShearY", 0.8, 4), ("Invert", 0.8, 0)),
        (("ShearX", 0.7, 9), ("TranslateY", 0.8, 3)), (("ShearY", 0.8, 5), ("AutoContrast", 0.7, 0)),
        (("ShearX", 0.7, 2), ("Invert", 0.1, 0)),
    ),
}
NAMES = tuple(OPS)  # operation index -> name


def autoaugment(x: Tensor, gen: torch.Generator, learned_on: str = "imagenet", fill: float = 0.0) -> Tensor:
    """Per image: a sub-policy drawn uniformly, then each of its two steps with its probability,
    a random sign for the signed operations (torchvision's draws, one set per image)."""
    table = AUTOAUGMENT[learned_on]
    ops = torch.tensor([[NAMES.index(op) for op, _, _ in sub] for sub in table])  # (P, 2)
    probs = torch.tensor([[p for _, p, _ in sub] for sub in table])  # (P, 2)
    bins = torch.tensor([[b for _, _, b in sub] for sub in table], dtype=x.dtype)  # (P, 2)
    B, (H, W) = len(x), x.shape[-2:]
    pick = torch.randint(len(table), (B,), generator=gen)
    u = torch.rand(B, 2, generator=gen)
    sign = torch.randint(0, 2, (B, 2), generator=gen).to(x.dtype) * 2 - 1
    for step in (0, 1):
        which = torch.where(u[:, step] <= probs[pick, step], ops[pick, step], NAMES.index("Identity"))
        m = levels_to_args(NAMES, which, bins[pick, step] / 9, sign[:, step], H, W)
        x = apply_ops(x, NAMES, which, m, fill)
    return x


RANDAUGMENT = ("Identity", "ShearX", "ShearY", "TranslateX", "TranslateY", "Rotate", "Brightness", "Color",
               "Contrast", "Sharpness", "Posterize", "Solarize", "AutoContrast", "Equalize")


def randaugment(x: Tensor, gen: torch.Generator, num_ops: int = 2, magnitude: int = 9, bins: int = 31,
                fill: float = 0.0) -> Tensor:
    """Per image: ``num_ops`` operations drawn uniformly (with replacement) from the 14, each at
    bin ``magnitude`` of ``bins``, with a random sign where the operation is signed."""
    B, (H, W) = len(x), x.shape[-2:]
    f = torch.full((B,), magnitude / (bins - 1), dtype=x.dtype)
    for _ in range(num_ops):
        which = torch.randint(len(RANDAUGMENT), (B,), generator=gen)
        sign = torch.randint(0, 2, (B,), generator=gen).to(x.dtype) * 2 - 1
        x = apply_ops(x, RANDAUGMENT, which, levels_to_args(RANDAUGMENT, which, f, sign, H, W), fill)
    return x


# AugMix leaves out the colour operations that overlap ImageNet-C's corruptions (the paper, §3).
AUGMIX = ("AutoContrast", "Equalize", "Posterize", "Rotate", "Solarize", "ShearX", "ShearY", "TranslateX",
          "TranslateY")


def numpy_rng(gen: torch.Generator) -> np.random.Generator:
    """A NumPy generator seeded from ``gen``, for the Dirichlet and Beta draws torch cannot seed."""
    return np.random.default_rng(int(torch.randint(0, 2**62, (1,), generator=gen)))


def augmix_mix(x: Tensor, chains: list[Tensor], weights: Tensor, m: Tensor) -> Tensor:
    """(1 - m) x + m sum_i w_i chain_i, per image: weights (B, width) on the simplex, m (B,) in [0, 1]."""
    mix = sum(w.view(-1, 1, 1, 1) * c for w, c in zip(weights.T.to(x.dtype), chains))
    m = m.to(x.dtype).view(-1, 1, 1, 1)
    return (1 - m) * x + m * mix


def augmix(x: Tensor, gen: torch.Generator, severity: int = 3, width: int = 3, depth: int = -1,
           alpha: float = 1.0, fill: float = 0.0) -> Tensor:
    """One AugMix view per image: ``width`` chains, each of ``depth`` (or 1-3) random operations
    at levels U(0.1, severity), mixed with Dirichlet(alpha) weights, blended by Beta(alpha, alpha)."""
    B, (H, W) = len(x), x.shape[-2:]
    rng = numpy_rng(gen)
    weights = torch.from_numpy(rng.dirichlet([alpha] * width, size=B)).float()  # (B, width)
    m = torch.from_numpy(rng.beta(alpha, alpha, size=B)).float()  # (B,)
    names = ("Identity", *AUGMIX)
    chains = []
    for _ in range(width):
        d = torch.full((B,), depth) if depth > 0 else torch.randint(1, 4, (B,), generator=gen)
        xi = x
        for step in range(int(d.max())):
            which = torch.randint(1, len(names), (B,), generator=gen)
            which[d <= step] = 0  # this chain is shorter for these images
            level = 0.1 + (severity - 0.1) * torch.rand(B, generator=gen, dtype=x.dtype)
            sign = torch.randint(0, 2, (B,), generator=gen).to(x.dtype) * 2 - 1
            m_op = levels_to_args(names, which, level, sign, H, W, table=augmix_magnitudes)
            xi = apply_ops(xi, names, which, m_op, fill)
        chains.append(xi)
    return augmix_mix(x, chains, weights, m)


def policy_transform(p) -> Callable[[Tensor, torch.Generator], Tensor] | None:
    """The ``Policy`` section (train/config.py) as (x (B, C, H, W) in [0, 1], generator) -> images:
    (B, C, H, W), or (B, 3, C, H, W) = clean, AugMix, AugMix for AugMix with its consistency loss.
    None for ``name = "none"``."""
    if p.name == "none":
        return None

    def apply(x: Tensor, gen: torch.Generator) -> Tensor:
        if p.name == "autoaugment":
            x = autoaugment(x, gen, p.learned_on, p.fill)
        elif p.name == "randaugment":
            x = randaugment(x, gen, p.num_ops, p.magnitude, fill=p.fill)
        elif p.jsd > 0:
            views = [augmix(x, gen, p.severity, p.width, p.depth, p.alpha, p.fill) for _ in range(2)]
            x = torch.stack([x, *views], 1)  # (B, 3, C, H, W)
        else:
            x = augmix(x, gen, p.severity, p.width, p.depth, p.alpha, p.fill)
        if p.cutout:
            x = random_cutout(x.flatten(0, 1) if x.ndim == 5 else x, p.cutout, gen).view_as(x)
        return x

    return apply


def examples(transform, x: Tensor, draws: int = 4, seed: int = 0) -> np.ndarray:
    """What a policy does, for the report: ``x`` (n, C, H, W) uint8 images and ``draws``
    transforms of each, from a generator of their own (the training stream is not touched).
    Returns (n, 1 + draws, C, H, W) uint8: the original, then the draws (AugMix with its
    consistency loss: its first AugMix view)."""
    gen = torch.Generator().manual_seed(seed)
    x = x.float() / 255
    out = [x]
    for _ in range(draws):
        y = transform(x, gen)
        out.append(y[:, 1] if y.ndim == 5 else y)
    return (torch.stack(out, 1) * 255).round().clamp(0, 255).byte().numpy()
