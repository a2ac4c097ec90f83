"""Batches of same-length tensors, for the fit loop: text ids, lengths, labels, boxes.

The non-image counterpart of ``data.tensors.Loader``, with the same shape (``steps_per_epoch``,
``order(epoch)``, ``batch(order, i)``, ``generator``, iteration for evaluation). The data are
tensorized once; a batch is one index gather per array plus an optional ``collate`` on the
whole batch (e.g. cut the padding to the batch's longest row): no per-sample Python.

    data = {"ids": ids (N, T) int64, "lengths": (N,), "labels": (N,)}
    loader = ArrayLoader(data, 64, train=True, generator=g, collate=trim_to_longest)
    order = loader.order(epoch)            # (N,) permutation drawn from g (or ``order_fn``'s)
    batch = loader.batch(order, i)         # (ids[idx], lengths[idx], labels[idx]) -> collate

``order_fn(generator, epoch, n)`` replaces the plain permutation, e.g. translation's length
buckets; it returns a (N,) tensor whose consecutive ``batch_size`` slices are the batches. With
``world > 1`` every rank draws the same order and keeps its share of each global batch
(training) or a contiguous shard of the data (evaluation), as ``Loader`` does.
"""

from __future__ import annotations

from typing import Callable

import torch

from practicum.data.tensors import eval_shard, steps_per_epoch


class ArrayLoader:
    def __init__(self, arrays: dict[str, torch.Tensor], batch_size: int, *, train: bool,
                 generator: torch.Generator | None = None, drop_last: bool = False,
                 collate: Callable[[tuple], tuple] | None = None,
                 order_fn: Callable[[torch.Generator, int, int], torch.Tensor] | None = None,
                 rank: int = 0, world: int = 1, device: torch.device | str = "cpu"):
        lengths = {len(a) for a in arrays.values()}
        if len(lengths) != 1:
            raise ValueError(f"ArrayLoader: arrays of different lengths {sorted(lengths)}")
        self.arrays, self.batch_size, self.train = dict(arrays), batch_size, train
        self.generator, self.collate, self.order_fn = generator, collate, order_fn
        self.rank, self.world, self.device = rank, world, torch.device(device)
        n = lengths.pop()
        if not train and world > 1:  # evaluation: a contiguous shard per rank
            lo, hi = eval_shard(n, rank, world)
            self.arrays, n = {k: a[lo:hi] for k, a in self.arrays.items()}, hi - lo
        self.n = n
        self.steps_per_epoch = steps_per_epoch(n, batch_size, train=train, drop_last=drop_last, world=world)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def order(self, epoch: int = 0) -> torch.Tensor:
        """This epoch's order (training: drawn from the generator), or 0..N-1 (evaluation)."""
        if not self.train:
            return torch.arange(self.n)
        if self.order_fn is not None:
            return self.order_fn(self.generator, epoch, self.n)
        return torch.randperm(self.n, generator=self.generator)

    def batch(self, order: torch.Tensor, step: int) -> tuple:
        idx = order[step * self.batch_size:(step + 1) * self.batch_size]  # the global batch
        if self.train and self.world > 1:
            idx = idx[len(idx) * self.rank // self.world: len(idx) * (self.rank + 1) // self.world]
        items = tuple(a[idx] for a in self.arrays.values())
        if self.collate is not None:
            items = self.collate(items)
        return tuple(t.to(self.device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in items)

    def __iter__(self):
        """One pass in order (evaluation)."""
        order = self.order()
        for step in range(self.steps_per_epoch):
            yield self.batch(order, step)


def trim_padding(ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Cut the columns past the batch's longest row: (B, T) -> (B, max(lengths)), at least 1."""
    return ids[:, : max(1, int(lengths.max()))]
