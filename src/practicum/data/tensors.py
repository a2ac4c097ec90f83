"""Whole data sets as in-memory tensors; batches are index slices; augmentation is batched torch.

airbench's recipe for speed on small images: keep the data set as one uint8 tensor, draw a
permutation per epoch, and build each batch with one gather plus a few whole-batch ops
(uint8 -> float, random shift, resize, normalise). No Dataset, no DataLoader, no per-sample Python.
The batch is built where the data set lives (``TensorSet.to(device)``: on a GPU, gather, shift,
resize and normalise run there and only the indices cross); a CPU set's uint8 batch goes to the
device before it becomes floats, a quarter of the bytes.

    train = TensorSet.from_arrays(x_uint8, y)           # (N, H, W) or (N, C, H, W) uint8
    pipe = Pipeline(image_size=32, mean=0.1307, std=0.3081, shift=2)
    loader = Loader(train, batch_size=128, pipeline=pipe, generator=g, train=True)
    order = loader.order()                               # (N,) permutation, drawn from g
    xb, yb = loader.batch(order, step)                   # (B, C, 32, 32) float32, (B,) int64

Every random draw (permutation, shifts) comes from the loader's ``torch.Generator``, whose state
goes into the checkpoint, so a resumed run draws exactly what an uninterrupted one would.
With ``world > 1`` every rank draws the same permutation and the same shifts for the whole
global batch, then keeps its own slice: N processes see the same batches as one process.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from practicum.data.augment import flip, random_shift


@dataclass
class TensorSet:
    """A labelled image set held whole in memory."""

    x: torch.Tensor  # (N, C, H, W) uint8
    y: torch.Tensor  # (N,) int64 class index (or (N, K) float multi-hot for multi-label tasks)
    classes: list[str]

    def __len__(self) -> int:
        return len(self.y)

    @classmethod
    def from_arrays(cls, x: np.ndarray, y: np.ndarray, classes: list[str]) -> "TensorSet":
        x = torch.from_numpy(np.ascontiguousarray(x))
        if x.ndim == 3:  # (N, H, W) grey images -> (N, 1, H, W)
            x = x.unsqueeze(1)
        return cls(x, torch.from_numpy(np.ascontiguousarray(y)), list(classes))

    def subset(self, index: slice | torch.Tensor) -> "TensorSet":
        return TensorSet(self.x[index], self.y[index], self.classes)

    def to(self, device: torch.device | str) -> "TensorSet":
        """The set on ``device`` (a GPU holds MNIST or CIFAR-10 whole: 47 and 150 MB of uint8)."""
        return TensorSet(self.x.to(device), self.y.to(device), self.classes)

    def mean_std(self) -> tuple[list[float], list[float]]:
        """Per-channel mean and std of the pixels scaled to [0, 1] (MNIST: 0.1307, 0.3081)."""
        levels = torch.arange(256, dtype=torch.float64) / 255
        means, stds = [], []
        for c in range(self.x.shape[1]):  # a histogram of the 256 levels: exact, no float copy
            counts = torch.bincount(self.x[:, c].flatten(), minlength=256).cpu().double()  # MPS has no float64
            mean = (counts * levels).sum() / counts.sum()
            var = (counts * (levels - mean) ** 2).sum() / (counts.sum() - 1)
            means.append(float(mean))
            stds.append(float(var.sqrt()))
        return means, stds


# ---------------------------------------------------------------------------------------------
# From uint8 batches to model inputs


@dataclass
class Pipeline:
    """uint8 batch -> model input: [random shift] -> float in [0, 1] -> [resize] -> [normalise].

    Resizing happens per batch (bilinear ``F.interpolate``): 224x224 float copies of MNIST would
    be 12 GB, a batch of them is 25 MB. Shifting runs on uint8, before the resize, so a shift of
    2 pixels means 2 pixels of the original 28x28 image whatever the input size.
    """

    image_size: int | None = None  # None: keep the stored size
    mean: list[float] | None = None  # per channel, on the [0, 1] scale; None: no normalisation
    std: list[float] | None = None
    shift: int = 0  # max random translation in pixels (training only)
    flip: bool = False  # random horizontal flip of half the images (training only)
    channels_last: bool = False

    def __call__(self, x: torch.Tensor, train: bool, shifts: torch.Tensor | None = None,
                 flips: torch.Tensor | None = None) -> torch.Tensor:
        if train and self.shift:
            x = random_shift(x, self.shift, shifts=shifts)
        if train and self.flip and flips is not None:  # flips: (B,) bool, drawn by the Loader
            x = flip(x, flips)
        return self.finish(x.float().div_(255))  # (B, C, H, W) in [0, 1]

    def finish(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] floats (B, C, H, W) -> [resize] -> [normalise] -> [channels last] (in place where it can)."""
        if self.image_size and self.image_size != x.shape[-1]:
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear",
                              align_corners=False, antialias=self.image_size < x.shape[-1])
        if self.mean is not None:
            mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
            x = x.sub_(mean).div_(std)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x


# ---------------------------------------------------------------------------------------------
# Batches as index slices


def eval_shard(n: int, rank: int, world: int) -> tuple[int, int]:
    """The contiguous slice [lo, hi) of n evaluation examples that ``rank`` of ``world`` scores."""
    return n * rank // world, n * (rank + 1) // world


def steps_per_epoch(n: int, batch_size: int, *, train: bool, drop_last: bool, world: int) -> int:
    """Batches per epoch of a loader over n examples: a short last batch is kept unless
    ``drop_last``, and in training under several processes only when every rank gets one."""
    full, rest = divmod(n, batch_size)
    return full + int(rest > 0 and not drop_last and (not train or rest >= world))


class Loader:
    """Batches of a TensorSet: slices of a permutation (train) or of 0..N-1 (evaluation).

    ``rank``/``world``: each process takes its share of every global batch (train) or a
    contiguous shard of the data (evaluation). ``drop_last`` drops a final partial batch; with
    several processes a final batch smaller than ``world`` is always dropped (a rank would get
    nothing and DDP needs every rank to step).
    """

    def __init__(self, data: TensorSet, batch_size: int, pipeline: Pipeline, *, train: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 rank: int = 0, world: int = 1, device: torch.device | str = "cpu"):
        self.data, self.batch_size, self.pipeline, self.train = data, batch_size, pipeline, train
        self.generator = generator
        self.rank, self.world, self.device = rank, world, torch.device(device)
        n = len(data)
        if not train and world > 1:  # evaluation: a contiguous shard per rank
            lo, hi = eval_shard(n, rank, world)
            self.data, n = data.subset(slice(lo, hi)), hi - lo
        self.n = n
        self.steps_per_epoch = steps_per_epoch(n, batch_size, train=train, drop_last=drop_last, world=world)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def order(self, epoch: int = 0) -> torch.Tensor:  # noqa: ARG002 - the loader protocol
        """This epoch's order: a permutation drawn from the generator (train) or 0..N-1."""
        if self.train:
            return torch.randperm(self.n, generator=self.generator)
        return torch.arange(self.n)

    def batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Batch ``step`` of ``order``: (x (B, C, H, W) float, y) for this rank, on the device."""
        idx = order[step * self.batch_size:(step + 1) * self.batch_size]  # the global batch
        shifts = None
        if self.train and self.pipeline.shift:
            # Drawn for the whole global batch on every rank, so the stream does not depend on world.
            shifts = torch.randint(0, 2 * self.pipeline.shift + 1, (len(idx), 2), generator=self.generator)
        flips = None
        if self.train and self.pipeline.flip:
            flips = torch.rand(len(idx), generator=self.generator) < 0.5
        if self.train and self.world > 1:
            lo, hi = len(idx) * self.rank // self.world, len(idx) * (self.rank + 1) // self.world
            idx = idx[lo:hi]
            shifts = shifts[lo:hi] if shifts is not None else None
            flips = flips[lo:hi] if flips is not None else None
        idx = idx.to(self.data.x.device)
        x = self.data.x[idx].to(self.device, non_blocking=True)  # (B, C, H, W) uint8, then made ready there
        return self.pipeline(x, train=self.train, shifts=shifts, flips=flips), \
            self.data.y[idx].to(self.device, non_blocking=True)

    def __iter__(self):
        """One pass in order (evaluation)."""
        order = self.order()
        for step in range(self.steps_per_epoch):
            yield self.batch(order, step)



class AugmentLoader(Loader):
    """Training batches: uint8 gather -> [0, 1] floats -> ``augment(x, y, generator)`` -> (x, y).

    The chain draws from the loader's generator (checkpointed by the fit loop) and may replace
    the targets (mixup, cutmix). Mixing pairs images across the whole batch, so with ``world > 1``
    every rank augments the whole global batch (the same draws) and keeps its own slice: N
    processes train on exactly the batches one process would.
    """

    def __init__(self, data: TensorSet, batch_size: int, augment, *, generator: torch.Generator,
                 drop_last: bool = False, rank: int = 0, world: int = 1, device: torch.device | str = "cpu"):
        super().__init__(data, batch_size, Pipeline(), train=True, generator=generator, drop_last=drop_last,
                         rank=rank, world=world, device=device)
        self.augment = augment

    def batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        idx = order[step * self.batch_size:(step + 1) * self.batch_size].to(self.data.x.device)
        x = self.data.x[idx].float().div_(255)  # (B, C, H, W) in [0, 1], augmented where the set lives
        x, y = self.augment(x, self.data.y[idx], self.generator)
        if self.world > 1:
            lo, hi = len(idx) * self.rank // self.world, len(idx) * (self.rank + 1) // self.world
            x, y = x[lo:hi], y[lo:hi]
        return x.to(self.device), y.to(self.device)
