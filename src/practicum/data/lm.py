"""Language-model batches for the fit loop: windows of one id sequence, in d2l's two orders.

    loader = LMLoader(ids, batch_size=32, num_steps=35, sampler="sequential", train=True, generator=g)
    order = loader.order(epoch)          # (steps * B,) start of every window of the epoch, batch by batch
    X, Y, fresh = loader.batch(order, i) # (B, T) ids, (B, T) the next ids, whether the state starts afresh

The corpus is one tensor (on the device, once); a batch is one gather: the starts s (B,) give
X = ids[s + 0..T-1] and Y = ids[s + 1..T]. What d2l's samplers (``seq_data_iter_sequential``,
``seq_data_iter_random``, d2l 8.3) do with a NumPy loop is here the epoch's order of starts:

- sequential: a random offset o in [0, T); the text from o is cut into B rows of L tokens, and
  batch i holds the i-th window of every row, o + b*L + i*T. Row b of batch i+1 continues row b
  of batch i, so the hidden state is carried over; it starts afresh only at the epoch's first batch.
- random: the windows o + k*T in a random order. Neighbouring batches are unrelated, so every
  batch starts from a fresh state.

Every epoch has the same number of batches, the count the largest offset (T - 1) leaves: d2l's
varies by one with the offset, and the fit loop's ``steps_per_epoch`` must not. Evaluation reads
the sequential order from offset 0, with at most as many rows as the text has windows.

With ``world > 1`` every rank draws the same order and keeps its share of each batch's rows:
its rows are a contiguous stretch of the text, so a rank's hidden state stays its own, batch
after batch (training and evaluation alike).
"""

from __future__ import annotations

from typing import Literal

import torch


class LMLoader:
    def __init__(self, ids: torch.Tensor, batch_size: int, num_steps: int, *,
                 sampler: Literal["sequential", "random"] = "sequential", train: bool,
                 generator: torch.Generator | None = None, rank: int = 0, world: int = 1,
                 device: torch.device | str = "cpu"):
        if sampler not in ("sequential", "random"):
            raise ValueError(f"LMLoader: unknown sampler '{sampler}'")
        self.device = torch.device(device)
        self.ids = ids.to(self.device)  # (N,) int64
        self.num_steps, self.train, self.generator = num_steps, train, generator
        self.sampler = sampler if train else "sequential"
        self.rank, self.world = rank, world
        T = num_steps
        self.max_offset = T - 1 if train else 0
        usable = len(ids) - self.max_offset - 1  # every X needs its shifted Y
        self.batch_size = batch_size if train else max(1, min(batch_size, usable // T))
        B = self.batch_size
        if self.sampler == "sequential":
            self.steps_per_epoch = max(0, usable // B // T)  # rows of usable // B tokens, T per window
        else:
            self.steps_per_epoch = max(0, usable // T // B)  # windows, B per batch
        self.window = torch.arange(T, device=self.device)  # (T,)

    def __len__(self) -> int:
        return self.steps_per_epoch

    def order(self, epoch: int = 0) -> torch.Tensor:  # noqa: ARG002 - the loader protocol
        """The start of every window of this epoch, batch after batch: (steps_per_epoch * B,)."""
        T, B, steps = self.num_steps, self.batch_size, self.steps_per_epoch
        o = int(torch.randint(T, (1,), generator=self.generator)) if self.train else 0
        if self.sampler == "sequential":
            L = (len(self.ids) - o - 1) // B  # row length from this offset
            starts = o + torch.arange(steps)[:, None] * T + torch.arange(B)[None, :] * L  # (steps, B)
            return starts.reshape(-1)
        windows = (len(self.ids) - o - 1) // T
        return o + torch.randperm(windows, generator=self.generator)[: steps * B] * T

    def batch(self, order: torch.Tensor, step: int) -> tuple[torch.Tensor, torch.Tensor, bool]:
        starts = order[step * self.batch_size:(step + 1) * self.batch_size]  # (B,) the global batch
        if self.world > 1:  # this rank's rows
            starts = starts[len(starts) * self.rank // self.world: len(starts) * (self.rank + 1) // self.world]
        pos = starts.to(self.device)[:, None] + self.window  # (B, T)
        fresh = self.sampler == "random" or step == 0
        return self.ids[pos], self.ids[pos + 1], fresh

    def __iter__(self):
        """One pass in order (evaluation)."""
        order = self.order()
        for step in range(self.steps_per_epoch):
            yield self.batch(order, step)
