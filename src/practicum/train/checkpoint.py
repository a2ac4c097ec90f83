"""Checkpoints that resume bit-identically and load with ``torch.load(weights_only=True)``.

Everything in a checkpoint is a tensor or a plain Python value (dict, list, tuple, int, float,
str, bool, None): model and optimizer state dicts, the scheduler's counters, and every random
state: Python's ``random``, NumPy's legacy global generator (its key array stored as a tensor),
torch's CPU generator and the process's own GPU's (CUDA or MPS), and the data loader's own
``torch.Generator``.
Writes are atomic: ``torch.save`` into memory, then ``fileio.write_bytes`` (temp file + rename).
The resume checkpoints keep the one before them (``last.prev.pt``, a hard link: no copy), so a
``last.pt`` that cannot be read (truncated by a full disk or a copy, or damaged by a foreign hand)
falls back to it, saying so: the resume is still exact, from an earlier step.

The fit loop (train/loop.py) keeps its own state; the practicals whose loop is the lesson (the
GANs, style transfer, activations, linear regression, the 2-D optimizer walks) resume through
one pair here::

    save_run_state(run, run.checkpoint_path("last.pt"), modules={"generator": g, ...},
                   optimizers={...}, schedulers={...}, generators={"data": gen}, extra={"epoch": 3})
    extra = load_run_state(run, path, modules=..., optimizers=..., ...)  # None: start from scratch

``load_run_state`` puts the state back into the same objects, restores every random state and
rewinds ``metrics.jsonl`` to where it stood at the save, so the lines a killed run logged after
its last checkpoint are dropped and logged again, identically.
"""

from __future__ import annotations

import io
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch

from practicum import fileio
from practicum.errors import PracticumError


def rng_state(data_generator: torch.Generator | None = None) -> dict:
    """Every random state this process uses, as tensors and plain values. Of the GPUs, only the
    process's own (``torch.cuda.current_device()``, which resolving the device sets): a resume
    that sees fewer GPUs, or another index, restores it onto its own device just the same."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),  # (version, tuple of 625 ints, None)
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
        "cuda": [torch.cuda.get_rng_state(torch.cuda.current_device())] if torch.cuda.is_available() else [],
    }
    if mps_available():
        state["mps"] = torch.mps.get_rng_state()
    if data_generator is not None:
        state["data"] = data_generator.get_state()
    return state


def mps_available() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def set_rng_state(state: dict, data_generator: torch.Generator | None = None) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        # One entry since issue 28; older checkpoints hold every visible GPU's: take this
        # process's own device's entry where it has one.
        own = torch.cuda.current_device()
        torch.cuda.set_rng_state(state["cuda"][own if own < len(state["cuda"]) else 0], own)
    if state.get("mps") is not None and mps_available():
        torch.mps.set_rng_state(state["mps"])
    if data_generator is not None:
        data_generator.set_state(state["data"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save(path: Path, obj: dict, keep_previous: bool = False) -> None:
    """Write ``obj`` to ``path`` atomically; ``keep_previous``: the file it replaces becomes
    ``previous_path(path)`` first (a hard link, or a copy where the filesystem has none)."""
    buf = io.BytesIO()
    torch.save(obj, buf)
    path = Path(path)
    if keep_previous and path.exists():
        keep = previous_path(path)
        tmp = keep.with_name(f".{keep.name}.tmp")
        try:
            if tmp.exists():
                tmp.unlink()
            os.link(path, tmp)
            os.replace(tmp, keep)
        except OSError:
            fileio.write_bytes(keep, path.read_bytes())
    fileio.write_bytes(path, buf.getvalue())


def previous_path(path: Path) -> Path:
    """``last.pt`` -> ``last.prev.pt``: the resume checkpoint before the latest."""
    path = Path(path)
    return path.with_name(f"{path.stem}.prev{path.suffix}")


def load_resumable(path: Path, run=None) -> dict | None:
    """The checkpoint to resume from: ``path``, or the one saved before it when ``path`` cannot
    be loaded (the reason is printed and, for the run's own process, written to store.log).
    None when there is none: a run killed before its first checkpoint."""
    path, previous = Path(path), previous_path(path)
    if not path.exists() and not previous.exists():
        return None
    try:
        return load(path)
    except PracticumError as e:
        if not previous.exists():
            raise PracticumError(f"{e}; there is no earlier checkpoint to resume from "
                                 "(run with --force to start over)") from None
        note = f"{path.name} cannot be loaded ({str(e).split(': ', 1)[-1]}); resuming from the one before it, {previous.name}"
        print(f"practicum: {note}", file=sys.stderr, flush=True)
        if run is not None and getattr(run, "index", None) is not None:  # rank 0's Run, not a RankRun
            from practicum.store import log_event

            log_event(run.dir, note)
        return load(previous)


def load(path: Path) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise PracticumError(f"{path}: no such checkpoint") from None
    except Exception as e:  # a checkpoint from another version, a truncated or a foreign file
        raise PracticumError(f"{path}: cannot load checkpoint ({type(e).__name__}: {load_error(e)})") from None


def load_error(error: Exception) -> str:
    """torch.load's reason in one line (its messages run to paragraphs of advice)."""
    text = str(error)
    if "WeightsUnpickler error:" in text:  # not a torch zip file at all
        text = text.split("WeightsUnpickler error:", 1)[1]
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return (lines[0] if lines else text).split(". This is an internal")[0][:200]


# ---------------------------------------------------------------------------------------------
# Resume for the loops that are not the fit loop


def save_run_state(run, path: Path, *, modules: dict | None = None, optimizers: dict | None = None,
                   schedulers: dict | None = None, generators: dict | None = None, extra: dict | None = None,
                   done: bool = False) -> None:
    """Checkpoint a lesson loop: named modules, optimizers and schedulers (their state dicts), named
    ``torch.Generator``s, every global random state, the metrics-file position, and ``extra``
    (tensors and plain values: the loop's counters, recorded curves, sample frames).

    ``done`` marks a finished part of a run that trains several things in turn (a GAN, then its
    judge; one activation after another): resuming leaves the lines logged after it, which belong
    to the next part, and a missing next checkpoint rewinds only to here (``run.scope_start``)."""
    run.guard(look=True)
    position = run.metrics_position()
    save(path, {
        "modules": {k: m.state_dict() for k, m in (modules or {}).items()},
        "optimizers": {k: o.state_dict() for k, o in (optimizers or {}).items()},
        "schedulers": {k: s.state_dict() for k, s in (schedulers or {}).items()},
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
        "rng": rng_state(), "extra": extra or {}, "done": done, "metrics_position": position,
    }, keep_previous=True)
    if done:
        run.scope_start = position


def load_run_state(run, path: Path, *, modules: dict | None = None, optimizers: dict | None = None,
                   schedulers: dict | None = None, generators: dict | None = None) -> dict | None:
    """Restore what ``save_run_state`` wrote at ``path`` into the same objects and return its
    ``extra``; None when there is nothing to resume: a fresh run, or a resumed one killed before
    this checkpoint was first written (its metric lines since ``run.scope_start`` are dropped)."""
    if not run.resumed:
        return None
    ck = load_resumable(path, run)
    if ck is None:
        run.rewind_metrics(run.scope_start)
        return None
    for kind, objects in (("modules", modules), ("optimizers", optimizers), ("schedulers", schedulers)):
        for name, obj in (objects or {}).items():
            if name not in ck[kind]:
                raise PracticumError(f"{path}: no {kind[:-1]} '{name}' in this checkpoint "
                                     f"(it has: {', '.join(ck[kind]) or 'none'})")
            obj.load_state_dict(ck[kind][name])
    for name, gen in (generators or {}).items():
        gen.set_state(ck["generators"][name])
    set_rng_state(ck["rng"])
    if ck["done"]:  # a finished part: what follows in metrics.jsonl is the next part's
        run.scope_start = ck["metrics_position"]
    else:
        run.rewind_metrics(ck["metrics_position"])
    return ck["extra"]
