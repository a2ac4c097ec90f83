"""Run a task with a fixed number of torch threads, restoring the previous number after.

The machines this runs on are shared: with other trainings busy, two intra-op threads fighting
for two cores made small models 3-20x slower (measured: a tiny GAN step 2.4 ms on one thread vs
40 ms on two; a TinySSD batch 1.1 s vs 3.3 s). Tasks that are mostly small ops run on one thread.
"""

from __future__ import annotations

from contextlib import contextmanager

import torch


@contextmanager
def torch_threads(n: int):
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
