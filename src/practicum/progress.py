"""One bar over many runs (``practicum sweep``, ``practicum reproduce``): runs done of the total,
the time elapsed, and an ETA from the plan's estimates, corrected as runs finish.

The estimates are the reproduction's (``reproduce.estimate`` without its probe: a finished run of
the same settings at another seed, else the entry's recorded measurement). Once runs finish, the
ETA scales what is left by how long the finished runs took against their estimates (wall clock,
so parallel workers count); a run with no estimate counts as the mean run so far. The bar of the
run in progress (the fit loop's) shows beneath it; in a notebook both are ``tqdm.auto`` widgets.
"""

from __future__ import annotations

import sys
import time
from types import SimpleNamespace

from tqdm.auto import tqdm

FORMAT = "{desc}: {n_fmt}/{total_fmt} runs |{bar}| {elapsed} elapsed{postfix}"


def interactive() -> bool:
    """A terminal, or code running in a Jupyter kernel (tqdm.auto draws a widget there): where
    the overall bar and each run's own bar (train/loop.py) are shown."""
    if sys.stderr.isatty():
        return True
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return getattr(shell, "kernel", None) is not None


class Overall:
    """``estimates``: config hash -> seconds (None: unknown) of each run still to do."""

    def __init__(self, desc: str, total: int, estimates: list[tuple[str, float | None]], workers: int = 1,
                 disable: bool | None = None):
        self.pending = list(estimates)
        self.workers = max(1, workers)
        self.t0 = time.time()
        self.finished_estimated = 0.0  # the estimates of the runs finished so far (those that had one)
        self.finished_with_estimate = 0
        self.finished = 0  # in this session
        self.n = total - len(estimates)  # runs done of the total (a disabled tqdm does not count)
        self.bar = tqdm(total=total, initial=total - len(estimates), desc=desc, unit="run", bar_format=FORMAT,
                        position=0, leave=True, dynamic_ncols=True,
                        disable=(not interactive()) if disable is None else disable)
        self._show()

    def wrap(self, log):
        """``log`` as it is without a bar; with one, its lines go above the bars (a print would tear them)."""
        if self.bar.disable:
            return log
        return lambda message: tqdm.write(message, file=sys.stderr)

    def done(self, config_hash: str) -> None:
        """A run of the plan finished (or failed: it is no longer to do either)."""
        mine = [e for h, e in self.pending if h == config_hash]  # a reproduction may need one run twice
        if not mine:
            return
        self.pending = [(h, e) for h, e in self.pending if h != config_hash]
        self.finished += 1
        if mine[0] is not None:
            self.finished_estimated += mine[0]
            self.finished_with_estimate += 1
        self.n += len(mine)
        self.bar.update(len(mine))
        self._show()

    def eta(self) -> float | None:
        """Seconds left: the estimates left, scaled by how the finished runs compared with theirs."""
        if not self.pending:
            return 0.0
        elapsed = time.time() - self.t0
        known = [e for _, e in self.pending if e is not None]
        unknown = len(self.pending) - len(known)
        if self.finished_with_estimate and self.finished_estimated > 0:
            ratio = elapsed / self.finished_estimated  # > 1: slower than estimated; < 1 with workers
        else:
            ratio = 1.0 / self.workers
        per_run = elapsed / self.finished if self.finished else (
            sum(known) / len(known) * ratio if known else None)
        if unknown and per_run is None:
            return None
        return sum(known) * ratio + unknown * (per_run or 0.0)

    def _show(self) -> None:
        eta = self.eta()
        from practicum.reproduce import fmt_seconds  # the plan's own format (--plan prints it too)

        self.bar.set_postfix_str("ETA unknown" if eta is None else f"ETA ~{fmt_seconds(eta)}", refresh=True)

    def close(self) -> None:
        self.bar.close()


def estimates(jobs, quick: bool, index) -> list[tuple[str, float | None]]:
    """(config hash, seconds) of each job still to do, from reproduce.estimate (no probe: a bar
    must not cost a training of its own)."""
    from practicum.reproduce import estimate

    estimate(SimpleNamespace(jobs=jobs, quick=quick), index, probe=False)
    return [(j.config_hash, j.estimate) for j in jobs if j.done is None]


def for_sweep(plan, index, workers: int = 1) -> Overall:
    """The bar of a sweep or study: each trial one run."""
    from practicum.reproduce import Job, finished

    jobs = [Job(plan.experiment, t.seed, t.overrides, t.config_hash, plan.name, finished(index, t.config_hash))
            for t in plan.trials]
    return Overall(plan.name, len(jobs), estimates(jobs, plan.quick, index), workers)


def for_reproduction(p, index, workers: int = 1) -> Overall:
    """The bar of a reproduction: every entry seed and study trial it needs."""
    return Overall(f"reproduce {p.reproduction.seed}", len(p.jobs), estimates(p.jobs, p.quick, index), workers)
