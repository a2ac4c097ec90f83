"""Small helpers the text practicals share: torch checkpoints, report tables, RNG state, optimizers.

Checkpoints go through train/checkpoint.py (atomic writes, ``weights_only`` loads).
A checkpoint's ``meta`` is a JSON string (RNG states, metrics-file offset, history), so nothing in
it needs pickle.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from practicum import fileio
from practicum.errors import UsageError
from practicum.store import Run
from practicum.train import checkpoint as ckpt


def save_state(path: Path, meta: dict, **tensors) -> None:
    """``tensors``: state dicts or tensors; ``meta``: anything JSON can hold."""
    ckpt.save(path, {"meta": json.dumps(meta), **tensors})


def load_state(path: Path) -> tuple[dict, dict] | None:
    """(meta, tensors) of a checkpoint, or None when there is none."""
    if not Path(path).exists():
        return None
    state = ckpt.load(path)
    return json.loads(state.pop("meta")), state


def rng_state(rng: np.random.Generator) -> dict:
    return {"numpy": rng.bit_generator.state, "torch": torch.get_rng_state().tolist()}


def set_rng_state(rng: np.random.Generator, state: dict) -> None:
    rng.bit_generator.state = state["numpy"]
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))


def write_table(run: Run, name: str, columns: list[str], rows: list[list], caption: str) -> None:
    """``tables/<name>.json``: the report shows it under its caption."""
    fileio.write_json(run.dir / "tables" / f"{name}.json",
                      {"columns": columns, "rows": rows, "caption": caption}, sort_keys=False)


def make_optimizer(name: str, params, lr: float, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if name == "adadelta":
        return torch.optim.Adadelta(params, lr=lr, weight_decay=weight_decay)
    raise UsageError(f"unknown optimizer '{name}': use sgd, adam or adadelta")


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def restore(run: Run, path: Path, model: torch.nn.Module, opt: torch.optim.Optimizer, rng: np.random.Generator,
            epochs: int, fresh_position: int) -> dict | None:
    """Resume one model of a run that trains several in turn; returns its history, or None.

    The metrics file is put back where this model's next epoch must write: after the model's
    last checkpoint when it is part-way (lines logged after that checkpoint are dropped), at
    ``fresh_position`` (where the previous model's lines end) when it has no checkpoint yet, and
    left alone when its epochs are all done (later models' lines follow its own)."""
    if not run.resumed:
        return None
    saved = load_state(path)
    if saved is None:
        run.rewind_metrics(fresh_position)
        return None
    hist, tensors = saved
    model.load_state_dict(tensors["model"])
    opt.load_state_dict(tensors["optim"])
    set_rng_state(rng, hist.pop("rng"))
    if hist["epoch"] < epochs:
        run.rewind_metrics(hist["metrics_position"])
    return hist


def checkpoint(run: Run, path: Path, hist: dict, model: torch.nn.Module, opt: torch.optim.Optimizer,
               rng: np.random.Generator) -> None:
    """Save at an epoch end; ``hist['metrics_position']`` = where the next model's lines begin."""
    hist["metrics_position"] = run.metrics_position()
    save_state(path, {**hist, "rng": rng_state(rng)}, model=model.state_dict(), optim=opt.state_dict())
