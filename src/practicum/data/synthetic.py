"""Small synthetic data sets, generated from an explicit ``np.random.Generator``."""

from __future__ import annotations

import math

import numpy as np

from practicum.errors import UsageError


def make_moons(n_samples: int, noise: float, rng: np.random.Generator):
    """Two interleaving half circles, as scikit-learn's ``make_moons`` (shuffled).

    Returns X float32 (n, 2) and y int64 (n,): n // 2 points of class 0 on the upper arc
    centred at (0, 0), the rest of class 1 on the lower arc centred at (1, 0.5); then Gaussian
    noise of std `noise` on every coordinate.
    """
    if int(n_samples) != n_samples or n_samples < 2:
        raise UsageError(f"make_moons: n_samples must be an integer >= 2, got {n_samples!r}")
    if noise < 0:
        raise UsageError(f"make_moons: noise must be >= 0, got {noise!r}")
    n_out = int(n_samples) // 2
    n_in = int(n_samples) - n_out
    t_out = np.linspace(0, np.pi, n_out)
    t_in = np.linspace(0, np.pi, n_in)
    X = np.concatenate([
        np.stack([np.cos(t_out), np.sin(t_out)], axis=1),  # (n_out, 2) upper arc
        np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], axis=1),  # (n_in, 2) lower arc
    ])
    y = np.concatenate([np.zeros(n_out, np.int64), np.ones(n_in, np.int64)])
    order = rng.permutation(len(y))
    X, y = X[order], y[order]
    X = X + rng.normal(scale=noise, size=X.shape)
    return X.astype(np.float32), y


def train_test_split(X: np.ndarray, y: np.ndarray, test_fraction: float,
                     rng: np.random.Generator):
    """Shuffle and split: (X_train, X_test, y_train, y_test), with ceil(fraction * n) test rows."""
    n = len(X)
    if len(y) != n:
        raise UsageError(f"train_test_split: X has {n} rows but y has {len(y)}")
    if not 0 < test_fraction < 1:
        raise UsageError(
            f"train_test_split: test_fraction must be in (0, 1), got {test_fraction!r}")
    n_test = math.ceil(test_fraction * n)
    if n_test >= n:
        raise UsageError(f"train_test_split: test_fraction {test_fraction} of {n} rows "
                         f"leaves no training rows")
    order = rng.permutation(n)
    test, train = order[:n_test], order[n_test:]
    return X[train], X[test], y[train], y[test]
