"""The figure of linear regression (practicals/linreg.py), drawn from its ``fit.npz``: targets
``y``, predictions ``y_hat``, and the true and learned parameters."""

from __future__ import annotations

import numpy as np


def fit_figure(npz, path, title: str) -> None:
    """Predicted vs true targets, and the residuals' histogram against the noise level."""
    from practicum.report.plots import plt, save

    with np.load(npz) as z:
        y, y_hat = z["y"], z["y_hat"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 3.6))
    a.scatter(y, y_hat, s=4, alpha=0.5)
    lo, hi = float(min(y.min(), y_hat.min())), float(max(y.max(), y_hat.max()))
    a.plot([lo, hi], [lo, hi], "k--", linewidth=0.8)
    a.set_xlabel("y")
    a.set_ylabel("prediction")
    a.set_title(f"{title}: predictions")
    b.hist(y_hat - y, bins=40)
    b.set_xlabel("prediction - y")
    b.set_title("residuals")
    fig.tight_layout()
    save(fig, path)
