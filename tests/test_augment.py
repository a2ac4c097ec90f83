"""Each batched augmentation (data/augment.py) on a known tensor."""

import torch

from practicum.data import augment as A
from practicum.data.tensors import AugmentLoader, TensorSet


def ramp(B=2, C=3, H=4, W=4):
    """(B, C, H, W) with value = column index (+ 10 * row), distinct per image."""
    x = torch.arange(W).float().view(1, 1, 1, W) + 10 * torch.arange(H).float().view(1, 1, H, 1)
    return x.expand(B, C, H, W) + 100 * torch.arange(B).float().view(B, 1, 1, 1)


def test_flip_mirrors_only_the_masked_images():
    x = ramp()
    out = A.flip(x, torch.tensor([True, False]))
    assert torch.equal(out[0, :, :, 0], x[0, :, :, 3]) and torch.equal(out[0, 0, 0], torch.tensor([3., 2, 1, 0]))
    assert torch.equal(out[1], x[1])
    g = torch.Generator().manual_seed(0)
    assert torch.equal(A.random_flip(x, 0.0, g), x)
    assert torch.equal(A.random_flip(x, 1.0, g), x.flip(-1))


def test_resized_crop_whole_image_is_identity_and_quadrant_is_upsampled():
    x = ramp(H=4, W=4)
    assert torch.allclose(A.resized_crop(x, torch.tensor([[0., 0, 1, 1]] * 2)), x, atol=1e-5)
    # the top-left quadrant blown up to 4 x 4: output pixel i samples the input at pixel
    # coordinate (i + 0.5) / 2 - 0.5 (half-pixel centres), and bilinear is exact on a linear ramp
    out = A.resized_crop(x, torch.tensor([[0., 0, 0.5, 0.5]] * 2))
    c = (torch.arange(4) / 2 - 0.25).clamp(min=0)  # 0, 0.25, 0.75, 1.25 (the border is clamped)
    assert torch.allclose(out[0, 0], c.view(1, 4) + 10 * c.view(4, 1), atol=1e-5)
    assert torch.allclose(out[1, 0], out[0, 0] + 100, atol=1e-4)
    # the right half: columns 2..3 only
    right = A.resized_crop(x, torch.tensor([[0.5, 0, 1, 1]] * 2))  # columns 2..3 stretched, rows kept
    assert torch.allclose(right[0, 0], torch.tensor([1.75, 2.25, 2.75, 3.0]) + 10 * torch.arange(4.0).view(4, 1))


def test_random_boxes_respect_area_and_bounds():
    g = torch.Generator().manual_seed(0)
    b = A.random_boxes(500, (0.3, 0.6), (0.75, 4 / 3), g)
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    assert (b >= 0).all() and (b <= 1 + 1e-6).all()
    assert ((w * h) >= 0.3 - 1e-5).all() and ((w * h) <= 0.6 + 1e-5).all()
    x = torch.rand(8, 3, 16, 16)
    assert torch.allclose(A.random_resized_crop(x, 0.0, (0.3, 1.0), g), x, atol=1e-5)  # p = 0: untouched


def test_jitter_factors():
    x = torch.full((3, 3, 2, 2), 0.4)
    x[:, 0] = 0.2  # a tinted image
    same = A.jitter(x, torch.ones(3), torch.ones(3), torch.ones(3))
    assert torch.allclose(same, x)
    bright = A.jitter(x, torch.tensor([2.0, 1, 1]), torch.ones(3), torch.ones(3))
    assert torch.allclose(bright[0], x[0] * 2) and torch.allclose(bright[1], x[1])
    grey = A.jitter(x, torch.ones(3), torch.ones(3), torch.zeros(3))  # saturation 0: grey
    g = 0.299 * 0.2 + 0.587 * 0.4 + 0.114 * 0.4
    assert torch.allclose(grey, torch.full_like(x, g))
    y = torch.rand(2, 3, 4, 4)
    flat = A.jitter(y, torch.ones(2), torch.zeros(2), torch.ones(2))  # contrast 0: the mean grey
    assert torch.allclose(flat.std((2, 3)), torch.zeros(2, 3), atol=1e-6)
    assert A.jitter(x, torch.full((3,), 5.0), torch.ones(3), torch.ones(3)).max() <= 1.0  # clamped


def test_erase_fills_exactly_the_box():
    x = torch.ones(2, 3, 4, 4)
    out = A.erase(x, torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.0, 0.0]]), value=-1.0)
    assert (out[0, :, :2, :2] == -1).all() and out[0].sum() == 48 - 2 * 12
    assert torch.equal(out[1], x[1])  # empty box
    g = torch.Generator().manual_seed(0)
    assert torch.equal(A.random_erase(x, 0.0, g), x)
    assert (A.random_erase(x, 1.0, g) == 0).any(1).flatten(1).any(1).all()


def test_mixup_blends_images_and_targets():
    x = torch.stack([torch.zeros(1, 2, 2), torch.ones(1, 2, 2)])
    y = torch.tensor([[1, 0, 0], [0, 1, 1]])
    xm, ym = A.mixup(x, y, torch.tensor([1, 0]), 0.7)
    assert torch.allclose(xm[0], torch.full((1, 2, 2), 0.3)) and torch.allclose(xm[1], torch.full((1, 2, 2), 0.7))
    assert torch.allclose(ym, torch.tensor([[0.7, 0.3, 0.3], [0.3, 0.7, 0.7]]))


def test_cutmix_pastes_a_box_and_mixes_targets_by_area():
    x = torch.stack([torch.zeros(1, 4, 4), torch.ones(1, 4, 4)])
    y = torch.tensor([[1, 0], [0, 1]])
    xm, ym = A.cutmix(x, y, torch.tensor([1, 0]), (1, 1, 2, 2))  # 4 of 16 pixels pasted
    assert xm[0, 0, 1:3, 1:3].eq(1).all() and xm[0].sum() == 4
    assert xm[1, 0, 1:3, 1:3].eq(0).all() and xm[1].sum() == 12
    assert torch.allclose(ym, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_random_mix_is_reproducible_and_keeps_target_mass():
    x, y = torch.rand(6, 3, 8, 8), torch.randint(0, 2, (6, 4))
    a = A.random_mix(x, y, 0.4, 1.0, 1.0, torch.Generator().manual_seed(3))
    b = A.random_mix(x, y, 0.4, 1.0, 1.0, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert torch.allclose(a[1].sum(), y.float().sum())  # a permutation mix keeps the label total
    assert ((a[1] >= 0) & (a[1] <= 1)).all()
    off = A.random_mix(x, y, 0.0, 0.0, 1.0, torch.Generator())
    assert torch.equal(off[0], x) and torch.equal(off[1], y.float())


def test_augment_loader_batches_through_the_chain():
    data = TensorSet(torch.full((5, 3, 4, 4), 255, dtype=torch.uint8), torch.eye(5, 3, dtype=torch.int64), ["a", "b", "c"])
    seen = []

    def chain(x, y, gen):
        seen.append(gen)
        return x * 2, y.float() / 2

    g = torch.Generator().manual_seed(0)
    loader = AugmentLoader(data, 2, chain, generator=g)
    assert loader.steps_per_epoch == 3
    xb, yb = loader.batch(loader.order(), 2)
    assert xb.shape == (1, 3, 4, 4) and torch.allclose(xb, torch.full_like(xb, 2.0)) and yb.max() <= 0.5
    assert seen == [g]
