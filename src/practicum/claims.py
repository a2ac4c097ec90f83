"""A seed report's conclusions, checked against our runs with their spread over seeds.

A claim names what it compares and how; the verdict is ``holds``, ``does not hold`` or ``cannot
tell``, from tests in scipy.stats (practicum/stats.py) on the values over seeds, at the claim's
``alpha`` (0.05 unless it says otherwise):

    greater, order, faster   Welch's t-test (two-sided, unequal variances) per comparison: holds
                             when p < α and the gap is the claimed way, does not hold when p < α
                             the other way, else cannot tell
    same, plateau            TOST within the claim's ``margin`` (two one-sided Welch tests, in the
                             metric's units): holds when both reject (equivalent), does not hold
                             when instead Welch's test finds a difference, else cannot tell

A claim that makes several comparisons of one kind (an order of k items: k - 1) has their
p-values Holm-adjusted together; a plateau's two parts (flat, and slower) must both hold, which
needs no correction. A side with one seed has no spread: no test, ``cannot tell``. A ``cannot
tell`` says how many seeds per side would resolve it (80 % power at the observed gap and spread),
and ``seeds = N`` in the claim (or ``practicum reproduce SEED --seeds N``) runs that many, fixed
before the runs.

    [[claims]]                              # in a study file, or a reproduction's section
    text = "SVM loss beats CE and MSE at its settings"
    kind = "greater"
    metric = "test/accuracy"
    a = [{ "train.loss" = "svm" }]          # a grid point (study), or { entry = "lab-fc" }
    b = [{ "train.loss" = "ce" }, { "train.loss" = "mse" }]

Kinds:
    greater      every a beats every b (``best_of_a``: the best of a beats every b)
    order        items from worst to best, each beating the one before
    same         a and b within ``margin`` of each other (e.g. "1/sqrt(d) changes nothing")
    faster       a's ``metric`` curve is lower (a loss) over the whole run than b's: it converges faster
    plateau      items in increasing size: the last two within ``margin`` on ``metric``, the last slower
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
    alpha: float = Field(0.05, gt=0, lt=1, description="the tests' significance level")
    margin: float | None = Field(None, gt=0, description="same, plateau: the practical difference within which "
                                 "two means count as equal (TOST), in the metric's units: 0.005 = 0.5 pp")
    seeds: int | None = Field(None, gt=1, description="seeds per compared thing, fixed before the runs "
                              "(reproduce runs more of only what this claim compares)")

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

    @property
    def side(self):
        from practicum.stats import Side  # scipy loads in ~1 s: when a claim is judged, not on every import

        return Side(self.mean, self.std, self.n)

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


def no_test(a: Sample, b: Sample) -> str:
    return f"n = {a.n} vs {b.n}: under two seeds on a side, no spread, no test"


def holm_adjusted(raw: list) -> list:
    """Holm over the tests that could be made (None: a side without spread)."""
    from practicum import stats

    adjusted = iter(stats.holm([t for t in raw if t is not None]))
    return [next(adjusted) if t is not None else None for t in raw]


def resolve(a: Sample, b: Sample, alpha: float, family: int, margin: float | None = None) -> str:
    """How many seeds per side would resolve a "cannot tell" (80 % power at the observed gap and
    spread, at α/k for a family of k: Holm's strictest step)."""
    from practicum import stats

    if not a.values or not b.values:
        return "; nothing to size from"
    level = alpha / family
    equivalent = margin is not None and abs(a.mean - b.mean) < margin
    n = stats.seeds_to_resolve(a.side, b.side, level, margin if equivalent else None)
    at = f"α = {level:.2g}" + (f", Holm over {family}" if family > 1 else "")
    goal = "to show them equivalent" if equivalent else "to show the difference"
    if n is None:
        if a.n < 2 and b.n < 2:
            return "; one seed per side: no spread to size from (seeds = N in the claim, or --seeds N)"
        return "; no gap to detect"
    if n > stats.MAX_SEEDS:
        return f"; more than {stats.MAX_SEEDS} seeds per side would be needed {goal} (80 % power, {at})"
    return f"; about {n} seeds per side would resolve it {goal} (80 % power at the observed gap and spread, {at})"


def differences(pairs: list[tuple[Sample, Sample]], lower_better: bool, alpha: float) -> tuple[list[str], list[str]]:
    """Is each a better than its b? Welch's two-sided t-test per pair, Holm-adjusted over the pairs:
    HOLDS when p < α and a is the better, FAILS when p < α and b is, else UNSURE. (verdicts, lines)"""
    from practicum import stats

    tests = holm_adjusted([stats.welch(x.side, y.side, alpha) for x, y in pairs])
    verdicts, lines = [], []
    for (x, y), t in zip(pairs, tests):
        better = t is not None and (t.diff < 0 if lower_better else t.diff > 0)
        verdict = UNSURE if t is None or not t.significant else HOLDS if better else FAILS
        line = f"{x.label} {'<' if lower_better else '>'} {y.label}: {verdict}; "
        line += t.show() if t else no_test(x, y)
        verdicts.append(verdict)
        lines.append(line + (resolve(x, y, alpha, len(pairs)) if verdict == UNSURE else ""))
    return verdicts, lines


def equivalences(pairs: list[tuple[Sample, Sample]], margin: float | None, alpha: float) -> tuple[list[str], list[str]]:
    """Are a and b within ``margin``? TOST per pair (Holm-adjusted over the pairs): HOLDS when
    equivalent; else FAILS when Welch's test (Holm-adjusted too) finds a difference; else UNSURE."""
    from practicum import stats

    if margin is None:
        return [UNSURE] * len(pairs), ["no margin declared (margin = ... in the claim): equivalence cannot be tested"]
    tosts = holm_adjusted([stats.tost(x.side, y.side, margin, alpha) for x, y in pairs])
    welchs = holm_adjusted([stats.welch(x.side, y.side, alpha) for x, y in pairs])
    verdicts, lines = [], []
    for (x, y), eq, diff in zip(pairs, tosts, welchs):
        verdict = (UNSURE if eq is None else HOLDS if eq.significant else FAILS if diff.significant else UNSURE)
        line = f"{x.label} ≈ {y.label} within ±{margin:g}: {verdict}; "
        line += f"{eq.show()}; {diff.show()}" if eq else no_test(x, y)
        verdicts.append(verdict)
        lines.append(line + (resolve(x, y, alpha, len(pairs), margin) if verdict == UNSURE else ""))
    return verdicts, lines


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
    alpha = claim.alpha
    if claim.kind in ("greater", "same"):
        a, b = [get(s) for s in claim.a], [get(s) for s in claim.b]
        if claim.kind == "same":
            verdicts, tests = equivalences([(x, y) for x in a for y in b], claim.margin, alpha)
        else:
            if claim.best_of_a and a:
                a = [max(a, key=lambda s: (-s.mean if lower else s.mean) if s.values else -math.inf)]
            verdicts, tests = differences([(x, y) for x in a for y in b], lower, alpha)
        return Verdict(claim, combine(verdicts), [s.show() for s in a + b] + tests)
    if claim.kind == "order":
        items = [get(s) for s in claim.items]
        verdicts, tests = differences([(items[i + 1], items[i]) for i in range(len(items) - 1)], lower, alpha)
        return Verdict(claim, combine(verdicts), [s.show() for s in items]
                       + [f"worst to best as the seed ranks them: {' < '.join(s.label for s in items)}"] + tests)
    if claim.kind == "faster":
        a, b = [get(s, curves=True) for s in claim.a], [get(s, curves=True) for s in claim.b]
        auc = lambda s: Sample(s.label, [curve_mean(c) for c in s.curves])  # noqa: E731
        verdicts, tests = differences([(auc(x), auc(y)) for x in a for y in b], lower_better=True, alpha=alpha)
        return Verdict(claim, combine(verdicts),
                       [f"mean {claim.metric} over the run, {auc(s).show()}" for s in a + b] + tests)
    if claim.kind == "plateau":
        items = [get(s) for s in claim.items]
        times = [get(s, claim.time_metric) for s in claim.items]
        flat, flat_test = equivalences([(items[-1], items[-2])], claim.margin, alpha)
        # the previous size is faster: its time is lower
        slower, slower_test = differences([(times[-2], times[-1])], lower_better=True, alpha=alpha)
        return Verdict(claim, combine(flat + slower),
                       [s.show() for s in items] + [f"{claim.time_metric}: " + "; ".join(t.show() for t in times),
                                                    f"last two the same: {flat_test[0]}",
                                                    f"the largest is slower ({claim.time_metric}): {slower_test[0]}"])
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
        (part2,), (part2_test,) = differences([(auc(right), auc(low))], lower, claim.alpha)
        late = [largest_drop_late([bad(x) for x in c]) for c in low.curves]
        part3 = HOLDS if late and all(late) else FAILS if late and not any(late) else UNSURE
        return Verdict(claim, combine([part1, part2, part3]), [
            f"too high ({high.label}): {'does not converge' if not_converged else 'converges'}"
            f" ({high.failed} failed runs; final {claim.metric} "
            + ", ".join(f"{c[-1]:.3g}" for c in high.curves)
            + f" against {right.label}'s first measured {start:.3g})",
            f"too low ({low.label}) slower than {right.label} (mean {claim.metric} over the run "
            f"{auc(low).show()} vs {auc(right).show()}): {part2_test}",
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
