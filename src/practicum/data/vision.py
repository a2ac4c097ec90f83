"""MNIST and Fashion-MNIST as whole NumPy arrays (no torch here: the NumPy engine uses this too).

Torch callers: ``torch.from_numpy(data.train_x)``; each ``load_mnist`` call returns fresh,
writable arrays, so that is safe and warning-free.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from practicum.data.cache import fetch_file
from practicum.errors import PracticumError, UsageError

# IDX header: two zero bytes, a type code, the number of dims; then one big-endian uint32 per dim.
_IDX_DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                         "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_CLASSES = {"mnist": MNIST_CLASSES, "fashion-mnist": FASHION_MNIST_CLASSES}


def read_idx(path: str | Path) -> np.ndarray:
    """Decode an IDX file (gzipped or raw) into a read-only array of the shape its header gives."""
    path = Path(path)
    data = path.read_bytes()
    truncated_gz = False
    if data[:2] == b"\x1f\x8b":
        d = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)  # gzip wrapper; checks the CRC
        try:
            data = d.decompress(data)
        except zlib.error as e:
            raise PracticumError(f"{path}: corrupt gzip stream ({e})") from None
        truncated_gz = not d.eof  # keep what inflated so the size check below can report it

    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _IDX_DTYPES:
        raise PracticumError(
            f"{path}: not an IDX file (magic {data[:4].hex() or 'empty'}, expected 0000 "
            f"<type code> <ndim>, e.g. 00000803 for uint8 images)"
        )
    dtype = np.dtype(_IDX_DTYPES[data[2]])
    ndim = data[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(data) < header:
        raise PracticumError(f"{path}: IDX header says {ndim} dims but the file has "
                             f"{len(data)} bytes; expected at least {max(header, 8)}")
    shape = tuple(int(n) for n in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    actual = len(data) - header
    if actual != expected:
        how = " (gzip stream ends early)" if truncated_gz else ""
        raise PracticumError(
            f"{path}: IDX payload is {actual} bytes, expected {expected} for shape {shape} "
            f"of {dtype.name}{how}"
        )
    if truncated_gz:  # the payload fits but the gzip trailer (CRC, length) is missing
        raise PracticumError(f"{path}: gzip stream ends early (no end-of-stream marker)")
    arr = np.frombuffer(data, dtype, offset=header).reshape(shape)
    arr = arr.astype(dtype.newbyteorder("="), copy=False)  # native byte order; no copy for uint8
    arr.flags.writeable = False  # consistent whether or not the byte swap copied
    return arr


@dataclass
class MnistArrays:
    train_x: np.ndarray  # (60000, 28, 28) uint8
    train_y: np.ndarray  # (60000,) int64 in [0, 10)
    test_x: np.ndarray  # (10000, 28, 28) uint8
    test_y: np.ndarray  # (10000,) int64
    classes: list[str]  # class index -> name


def load_mnist(name: str = "mnist") -> MnistArrays:
    """MNIST or Fashion-MNIST, whole, from the checksummed cache.

    Decoded once per process (~0.3 s MNIST, ~0.6 s Fashion-MNIST); each call returns its own
    copies (~0.1 s), so callers may modify them or hand them to ``torch.from_numpy``.
    """
    if name not in _CLASSES:
        raise UsageError(f"load_mnist: unknown dataset '{name}'; valid: {', '.join(_CLASSES)}")
    files = tuple(fetch_file(name, f"{split}-{kind}-idx{d}-ubyte.gz")
                  for split in ("train", "t10k") for kind, d in (("images", 3), ("labels", 1)))
    arrays = _decoded(name, files)  # keyed by the resolved files: a changed mirror is re-read
    return MnistArrays(*(a.copy() for a in arrays), classes=list(_CLASSES[name]))


@lru_cache(maxsize=None)
def _decoded(name: str, files: tuple[Path, ...]) -> tuple[np.ndarray, ...]:
    out = []
    for (split, n), x_path, y_path in zip((("train", 60000), ("t10k", 10000)), files[::2], files[1::2]):
        x, y = read_idx(x_path), read_idx(y_path)
        if x.shape != (n, 28, 28) or x.dtype != np.uint8:
            raise PracticumError(f"dataset '{name}': {x_path} holds {x.dtype}{x.shape}, "
                                 f"expected uint8({n}, 28, 28)")
        if y.shape != (n,) or y.max() >= 10:
            raise PracticumError(f"dataset '{name}': {y_path} holds shape {y.shape} with max "
                                 f"label {y.max()}, expected ({n},) labels in 0..9")
        x.flags.writeable = False  # shared by every caller; load_mnist hands out copies
        y = y.astype(np.int64)
        y.flags.writeable = False
        out += [x, y]
    return tuple(out)
