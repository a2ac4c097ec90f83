"""A loss that is not finite stops the run: the fit loop's rule, for the loops that are the lesson.

    loss = check_finite(loss_d.item(), label="gan-2d discriminator", step=step, epoch=step / steps,
                        lr=opt_d.param_groups[0]["lr"])

``Diverged`` (train/loop.py) is a ``PracticumError``: the CLI prints its one line and exits 1,
the run is marked failed. Call it before the step's checkpoint, so the last one kept is good.
"""

from __future__ import annotations

import math

from practicum.train.loop import Diverged

HINT = "try a lower optim.lr or set optim.grad_clip (e.g. 1.0)"


def check_finite(loss: float, *, label: str, step: int, lr: float, epoch: float | None = None,
                 hint: str = HINT) -> float:
    """``loss`` when it is finite; else ``Diverged`` naming the model, step, epoch, loss and lr."""
    if math.isfinite(loss):
        return loss
    where = f"step {step}" + (f" (epoch {epoch:.2f})" if epoch is not None else "")
    raise Diverged(f"{label} diverged at {where}: loss = {loss}, learning rate {lr:.3g}; {hint}. "
                   "The last good checkpoint is kept")
