"""A seed report's conclusions, checked against our runs with their spread over seeds.

A claim names what it compares and how; the verdict is ``holds``, ``does not hold`` or ``cannot
tell`` (at this spread). Two means differ when the gap exceeds twice its standard error
(sqrt(s_a^2/n_a + s_b^2/n_b), sample standard deviations over seeds); with one seed on a side
the other side's spread stands in, and with one seed on both there is no spread: ``cannot tell``.

    [[claims]]                              # in a study file, or a reproduction's section
    text = "SVM loss beats CE and MSE at its settings"
    kind = "greater"
    metric = "test/accuracy"
    a = [{ "train.loss" = "svm" }]          # a grid point (study), or { entry = "lab-fc" }
    b = [{ "train.loss" = "ce" }, { "train.loss" = "mse" }]

Kinds:
    greater      every a beats every b (``best_of_a``: the best of a beats every b)
    order        items from worst to best, each beating the one before
    same         a and b within noise of each other (e.g. "1/sqrt(d) changes nothing")
    faster       a's ``metric`` curve is lower (a loss) over the whole run than b's: it converges faster
    plateau      items in increasing size: the last two within noise on ``metric``, the last slower
    lr_extremes  items = [too high, right, too low]: too high does not converge (it never gets to
                 where right stood at its first measurement); too low is slower than right, with
                 its largest improvement late in training
    threshold    every a at least ``threshold``, every b below it (``key`` picks a summary value)
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field

from practicum.config import Section

HOLDS, FAILS, UNSURE = "holds", "does not hold", "cannot tell"


class Claim(Section):
    text: str = Field(description="the seed's conclusion, in our words")
    seed_says: str = Field("", description="the seed report's own sentence, quoted")
    kind: Literal["greater", "order", "same", "faster", "plateau", "lr_extremes", "threshold"]
    metric: str = "test/accuracy"
    a: list[dict[str, Any]] = Field(default_factory=list)
    b: list[dict[str, Any]] = Field(default_factory=list)
    items: list[dict[str, Any]] = Field(default_factory=list)
    best_of_a: bool = False
    threshold: float | None = None
    time_metric: str = "train/seconds_per_epoch"
    lower_is_better: bool | None = Field(None, description="default: from the metric's name (loss, error)")
    figure: str | None = Field(None, description="the figure that shows it (a file name of the study or entry)")

    def lower_better(self, metric: str | None = None) -> bool:
        if self.lower_is_better is not None and metric in (None, self.metric):
            return self.lower_is_better
        name = metric or self.metric
        return any(w in name for w in ("loss", "error", "perplexity", "seconds", "frechet"))


@dataclass
class Sample:
    """One compared thing: its label and its values over seeds (``failed`` runs count apart)."""

    label: str
    values: list[float]
    failed: int = 0
    curves: list[list[float]] = field(default_factory=list)  # per seed, when asked for

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values) if self.values else math.nan

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else math.nan

    def show(self) -> str:
        if not self.values:
            return f"{self.label}: no finished run" + (f" ({self.failed} failed)" if self.failed else "")
        mean = f"{self.mean:#.4g}"  # trailing zeros kept: 0.9000 ± 0.0286, not 0.9 ± 0.0
        spread = f" ± {same_decimals(self.std, mean)}" if self.n > 1 else ""
        failed = f", {self.failed} failed" if self.failed else ""
        return f"{self.label}: {mean}{spread} (n={self.n}{failed})"


def same_decimals(x: float, shown: str) -> str:
    """``x`` with as many decimals as ``shown`` has (a spread beside its mean: 0.9823 ± 0.0001,
    not ± 5.774e-05)."""
    if "e" in shown or "." not in shown:
        return f"{x:.4g}" if "e" in shown else f"{x:.0f}"
    return f"{x:.{len(shown.split('.')[1])}f}"


@dataclass
class Verdict:
    claim: Claim
    verdict: str
    evidence: list[str]  # one line per compared thing, then the comparisons
    figure: Path | None = None


def noise(a: Sample, b: Sample) -> float | None:
    """Twice the standard error of the difference of the two means. A side with one seed borrows
    the other side's spread; with one seed on both sides there is none (None)."""
    if not a.values or not b.values or (a.n < 2 and b.n < 2):
        return None
    sa = a.std if a.n > 1 else b.std
    sb = b.std if b.n > 1 else a.std
    return 2 * math.sqrt(sa ** 2 / a.n + sb ** 2 / b.n)


def compare(a: Sample, b: Sample, lower_better: bool) -> str:
    """Is a better than b? HOLDS (beyond noise), FAILS (worse beyond noise) or UNSURE."""
    limit = noise(a, b)
    if limit is None:
        return UNSURE
    gap = (b.mean - a.mean) if lower_better else (a.mean - b.mean)
    if gap > limit:
        return HOLDS
    if gap < -limit:
        return FAILS
    return UNSURE


def within_noise(a: Sample, b: Sample) -> str:
    limit = noise(a, b)
    if limit is None:
        return UNSURE
    return HOLDS if abs(a.mean - b.mean) <= limit else FAILS


def combine(verdicts: list[str]) -> str:
    if verdicts and all(v == HOLDS for v in verdicts):
        return HOLDS
    if any(v == FAILS for v in verdicts):
        return FAILS
    return UNSURE


def curve_mean(curve: list[float]) -> float:
    """The mean of a curve over the run: lower for a loss that falls sooner (area under it)."""
    finite = [v for v in curve if math.isfinite(v)]
    return statistics.fmean(finite) if finite else math.inf


def largest_drop_late(curve: list[float]) -> bool:
    """The largest fall between two logged points happens in the second half of the run."""
    drops = [curve[i] - curve[i + 1] for i in range(len(curve) - 1)]
    return bool(drops) and max(range(len(drops)), key=drops.__getitem__) >= len(drops) / 2


def evaluate(claim: Claim, sample: Callable[[dict, str, bool], Sample]) -> Verdict:
    """``sample(selector, metric, with_curves)`` gives the values of one compared thing."""
    lower = claim.lower_better()
    get = lambda sel, metric=claim.metric, curves=False: sample(sel, metric, curves)  # noqa: E731
    if claim.kind in ("greater", "same"):
        a, b = [get(s) for s in claim.a], [get(s) for s in claim.b]
        if claim.kind == "same":
            verdicts = [within_noise(x, y) for x in a for y in b]
        else:
            if claim.best_of_a and a:
                a = [max(a, key=lambda s: (-s.mean if lower else s.mean) if s.values else -math.inf)]
            verdicts = [compare(x, y, lower) for x in a for y in b]
        return Verdict(claim, combine(verdicts), [s.show() for s in a + b])
    if claim.kind == "order":
        items = [get(s) for s in claim.items]
        verdicts = [compare(items[i + 1], items[i], lower) for i in range(len(items) - 1)]
        return Verdict(claim, combine(verdicts), [s.show() for s in items]
                       + [f"worst to best as the seed ranks them: {' < '.join(s.label for s in items)}"])
    if claim.kind == "faster":
        a, b = [get(s, curves=True) for s in claim.a], [get(s, curves=True) for s in claim.b]
        auc = lambda s: Sample(s.label, [curve_mean(c) for c in s.curves])  # noqa: E731
        verdicts = [compare(auc(x), auc(y), lower_better=True) for x in a for y in b]
        return Verdict(claim, combine(verdicts),
                       [f"mean {claim.metric} over the run, {auc(s).show()}" for s in a + b])
    if claim.kind == "plateau":
        items = [get(s) for s in claim.items]
        times = [get(s, claim.time_metric) for s in claim.items]
        flat = within_noise(items[-1], items[-2])
        slower = compare(times[-2], times[-1], lower_better=True)  # the previous size is faster
        return Verdict(claim, combine([flat, slower]),
                       [s.show() for s in items] + [f"{claim.time_metric}: " + "; ".join(t.show() for t in times),
                                                    f"last two within noise: {flat}; the largest is slower: {slower}"])
    if claim.kind == "lr_extremes":
        high, right, low = (get(s, curves=True) for s in claim.items)
        bad = (lambda x: x) if lower else (lambda x: -x)  # larger is worse, whatever the metric
        start = statistics.fmean(c[0] for c in right.curves) if right.curves else math.nan
        # Not converged: it never gets to where the right rate stood at its first measurement
        # (a loss that falls from its own blow-up, or weights that die to one class, still count).
        stuck = [not math.isfinite(c[-1]) or not bad(c[-1]) < bad(start) for c in high.curves]
        not_converged = (high.failed > 0 and not high.values) or bool(stuck) and all(stuck)
        part1 = HOLDS if not_converged else FAILS if stuck and math.isfinite(start) else UNSURE
        auc = lambda s: Sample(s.label, [curve_mean(c) for c in s.curves])  # noqa: E731
        part2 = compare(auc(right), auc(low), lower_better=lower)
        late = [largest_drop_late([bad(x) for x in c]) for c in low.curves]
        part3 = HOLDS if late and all(late) else FAILS if late and not any(late) else UNSURE
        return Verdict(claim, combine([part1, part2, part3]), [
            f"too high ({high.label}): {'does not converge' if not_converged else 'converges'}"
            f" ({high.failed} failed runs; final {claim.metric} "
            + ", ".join(f"{c[-1]:.3g}" for c in high.curves)
            + f" against {right.label}'s first measured {start:.3g})",
            f"too low ({low.label}) slower than {right.label} (mean {claim.metric} over the run "
            f"{auc(low).show()} vs {auc(right).show()}): {part2}",
            f"too low: the largest {'drop' if lower else 'rise'} comes in the second half of training in "
            f"{sum(late)} of {len(late)} seeds: {part3}",
        ])
    # threshold
    t = claim.threshold
    a, b = [get(s) for s in claim.a], [get(s) for s in claim.b]
    checks = [HOLDS if s.values and all(v >= t for v in s.values) else FAILS if s.values else UNSURE for s in a]
    checks += [HOLDS if s.values and all(v < t for v in s.values) else FAILS if s.values else UNSURE for s in b]
    return Verdict(claim, combine(checks), [f"{s.show()} (should be ≥ {t})" for s in a]
                   + [f"{s.show()} (should be < {t})" for s in b])


def selector_label(selector: dict) -> str:
    return ", ".join(f"{v}" if k in ("entry", "key") else f"{k}={v}" for k, v in selector.items())
