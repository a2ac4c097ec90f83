"""Checkpoints that resume bit-identically and load with ``torch.load(weights_only=True)``.

Everything in a checkpoint is a tensor or a plain Python value (dict, list, tuple, int, float,
str, bool, None): model and optimizer state dicts, the scheduler's counters, and every random
state: Python's ``random``, NumPy's legacy global generator (its key array stored as a tensor),
torch's CPU (and CUDA) generators, and the data loader's own ``torch.Generator``.
Writes are atomic: ``torch.save`` into memory, then ``fileio.write_bytes`` (temp file + rename).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import torch

from practicum import fileio
from practicum.errors import PracticumError


def rng_state(data_generator: torch.Generator | None = None) -> dict:
    """Every random state this process uses, as tensors and plain values."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None)
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def set_rng_state(state: dict, data_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if data_generator is not None:
        data_generator.set_state(state["data"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, obj: dict) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    fileio.write_bytes(path, buf.getvalue())


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a checkpoint from another version, or a foreign file
        raise PracticumError(f"{path}: cannot load checkpoint ({type(e).__name__}: {e})") from None
