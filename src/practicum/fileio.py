"""Atomic writes: a temp file in the same directory, fsync, then os.replace.

A reader never sees a half-written file, and a crash (even kill -9) leaves either the old
file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def write_bytes(path, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path, obj, sort_keys: bool = True) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=sort_keys, default=str) + "\n")


def read_json(path):
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def save_npz(path, **arrays) -> None:
    """``np.savez`` through an atomic write (no pickle: load with ``allow_pickle=False``)."""
    import io

    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes(path, buf.getvalue())


def write_gif(path, frames: list, frame_ms: int, hold_ms: int = 1500) -> None:
    """A looping animated GIF of ``frames`` (PIL images or (H, W[, 3]) uint8 arrays), the last
    frame held ``hold_ms``, written atomically."""
    import io

    from PIL import Image

    images = [f if isinstance(f, Image.Image) else Image.fromarray(f) for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:], loop=0, optimize=False,
                   duration=[frame_ms] * (len(images) - 1) + [hold_ms])
    write_bytes(path, buf.getvalue())
