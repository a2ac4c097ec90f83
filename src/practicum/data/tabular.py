"""Small tables of numbers, read whole from the checksummed cache into NumPy arrays."""

from __future__ import annotations

import numpy as np

from practicum.data.cache import fetch_file
from practicum.errors import PracticumError


def load_airfoil(standardize: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """NASA's airfoil self-noise data (D2L 12.5): X float32 (1503, 5), y float32 (1503,).

    X: frequency, angle of attack, chord length, free-stream velocity, suction-side displacement
    thickness; y: the scaled sound pressure level (dB). ``standardize``: every column, the target
    included, minus its mean over the 1,503 rows, over its (population) std, in float32, as d2l's
    ``get_data_ch11`` does (which then trains on the first 1,500 rows)."""
    path = fetch_file("airfoil", "airfoil_self_noise.dat")
    data = np.loadtxt(path, dtype=np.float32, delimiter="\t")  # (1503, 6); the file's CRLF is whitespace
    if data.shape != (1503, 6):
        raise PracticumError(f"dataset 'airfoil': {path} holds {data.shape[0]} x {data.shape[1]} numbers, "
                             "expected 1503 x 6")
    if standardize:
        data = (data - data.mean(axis=0)) / data.std(axis=0)
    return data[:, :-1].copy(), data[:, -1].copy()
