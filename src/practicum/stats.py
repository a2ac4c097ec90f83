"""The tests behind the verdicts of claims and reproductions, all from ``scipy.stats``.

Plain numbers in (a side's mean, sample standard deviation and n over seeds), a small ``Test``
out; nothing here knows runs or the store. What is ours is only the bookkeeping around scipy:
the Welch-Satterthwaite degrees of freedom shown beside a p-value, Holm's step-down over a claim's
comparisons (a correction rule, not a test), and the search for n in a power estimate.

    welch(a, b)          Welch's two-sided t-test (unequal variances): do the means differ?
    tost(a, b, margin)   two one-sided Welch tests: is |mean_a - mean_b| < margin? (equivalence)
    holm(tests)          Holm's step-down over several tests of one claim (family-wise α)
    interval(values)     the 95 % t-based confidence interval of a mean
    seeds_to_resolve     seeds per side for 80 % power at the observed gap and spread

A test needs a spread on both sides: with one seed on a side there is none, and these return None.

The table of issue 25, recomputed (tests/test_stats.py)::

    >>> vit, noscale = Side(0.9813, 0.0007, 3), Side(0.9823, 0.0001, 3)
    >>> welch(vit, noscale).show()
    'Welch t = -2.45, df = 2.1, p = 0.13, n = 3 vs 3, α = 0.05'
    >>> tost(vit, noscale, 0.005).show()
    'TOST, margin ±0.005: t = 9.8, df = 2.1, p = 0.0045, n = 3 vs 3, α = 0.05'
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, replace

from scipy import stats

ALPHA = 0.05  # unless a claim says otherwise (its ``alpha``)
POWER = 0.8  # of a power estimate: how many seeds would resolve a "cannot tell"
MAX_SEEDS = 1000  # a power estimate past this says "more than"


@dataclass(frozen=True)
class Side:
    """One side of a comparison: mean, sample standard deviation (n - 1) and n, over seeds."""

    mean: float
    std: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> "Side":
        n = len(values)
        return cls(statistics.fmean(values) if n else math.nan, statistics.stdev(values) if n > 1 else math.nan, n)


@dataclass(frozen=True)
class Test:
    """A test's outcome as a verdict line states it."""

    name: str  # "Welch" or "TOST"
    statistic: float  # t (TOST: the t of the bound that binds, the one with the larger p)
    df: float  # Welch-Satterthwaite
    p: float
    n: tuple[int, int]
    alpha: float = ALPHA
    margin: float | None = None  # TOST's equivalence margin, in the metric's units
    adjusted: bool = False  # p is Holm-adjusted over the claim's comparisons
    diff: float = math.nan  # mean_a - mean_b

    @property
    def significant(self) -> bool:
        return self.p < self.alpha

    def show(self) -> str:
        """Welch t = 3.41, df = 3.2, p = 0.038 (Holm-adjusted), n = 3 vs 3, α = 0.05"""
        head = f"{self.name} t" if self.margin is None else f"{self.name}, margin ±{self.margin:g}: t"
        adjusted = " (Holm-adjusted)" if self.adjusted else ""
        return (f"{head} = {self.statistic:.3g}, df = {self.df:.2g}, p = {fmt_p(self.p)}{adjusted}, "
                f"n = {self.n[0]} vs {self.n[1]}, α = {self.alpha:g}")


def fmt_p(p: float) -> str:
    """Two significant digits, trailing zero kept: 0.20, 0.0045, 1.2e-05."""
    return f"{p:#.2g}" if p >= 1e-4 else f"{p:.1e}"


def spread(a: Side, b: Side) -> tuple[float, float] | None:
    """(the standard error of mean_a - mean_b, its Welch-Satterthwaite df); None without a spread."""
    if a.n < 2 or b.n < 2:
        return None
    va, vb = a.std ** 2 / a.n, b.std ** 2 / b.n
    se = math.sqrt(va + vb)
    df = (va + vb) ** 2 / (va ** 2 / (a.n - 1) + vb ** 2 / (b.n - 1)) if se > 0 else math.inf
    return se, df


def welch(a: Side, b: Side, alpha: float = ALPHA, shift: float = 0.0, alternative: str = "two-sided") -> Test | None:
    """Welch's t-test of mean_a - mean_b = ``shift`` (scipy's ttest_ind_from_stats, equal_var=False)."""
    s = spread(a, b)
    if s is None:
        return None
    se, df = s
    diff = a.mean - b.mean
    if se == 0:  # no spread on either side (every seed gave the same value): the gap is exact
        gap = diff - shift
        t = math.copysign(math.inf, gap) if gap else 0.0
        shown = {"two-sided": gap != 0, "greater": gap > 0, "less": gap < 0}[alternative]
        return Test("Welch", t, df, 0.0 if shown else 1.0, (a.n, b.n), alpha, diff=diff)
    r = stats.ttest_ind_from_stats(a.mean - shift, a.std, a.n, b.mean, b.std, b.n, equal_var=False,
                                   alternative=alternative)
    return Test("Welch", float(r.statistic), df, float(r.pvalue), (a.n, b.n), alpha, diff=diff)


def tost(a: Side, b: Side, margin: float, alpha: float = ALPHA) -> Test | None:
    """Two one-sided tests: mean_a - mean_b > -margin and < +margin, each a one-sided Welch test
    at ``alpha``; equivalent within the margin when both reject, i.e. when max(p) < alpha."""
    lower = welch(a, b, alpha, shift=-margin, alternative="greater")
    upper = welch(a, b, alpha, shift=margin, alternative="less")
    if lower is None or upper is None:
        return None
    binding = max(lower, upper, key=lambda t: t.p)
    return replace(binding, name="TOST", margin=margin)


def holm(tests: list[Test]) -> list[Test]:
    """Holm's step-down: the i-th smallest of m p-values times (m - i + 1), kept monotone and at
    most 1; each p as adjusted (the family-wise error rate of the claim's tests stays at α)."""
    if len(tests) < 2:
        return list(tests)
    order = sorted(range(len(tests)), key=lambda i: tests[i].p)
    adjusted, running = [0.0] * len(tests), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(tests) - rank) * tests[i].p))
        adjusted[i] = running
    return [replace(t, p=p, adjusted=True) for t, p in zip(tests, adjusted)]


def interval(values: list[float], level: float = 0.95) -> tuple[float, float] | None:
    """The t-based confidence interval of the mean of ``values``; None for one value."""
    n = len(values)
    if n < 2:
        return None
    mean, sem = statistics.fmean(values), statistics.stdev(values) / math.sqrt(n)
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=sem)
    return float(low), float(high)


def power(diff: float, std_a: float, std_b: float, n: int, alpha: float, margin: float | None = None) -> float:
    """The power of Welch's two-sided test (``margin`` None) or of TOST at n seeds per side, if the
    true gap and spreads were the observed ones (noncentral t, scipy.stats.nct)."""
    var = std_a ** 2 + std_b ** 2
    se, df = math.sqrt(var / n), (n - 1) * var ** 2 / (std_a ** 4 + std_b ** 4)

    def above(crit: float, nc: float) -> float:  # P(T > crit), T noncentral t; normal where nct gives nan
        p = stats.nct.sf(crit, df, nc)
        return float(p if math.isfinite(p) else stats.norm.sf(crit - nc))

    if margin is None:
        crit = stats.t.ppf(1 - alpha / 2, df)
        return above(crit, abs(diff) / se) + (1 - above(-crit, abs(diff) / se))
    crit = stats.t.ppf(1 - alpha, df)  # both one-sided tests must reject; P(both) ≥ P(one) + P(other) - 1
    both = above(crit, (diff + margin) / se) + (1 - above(-crit, (diff - margin) / se)) - 1
    return max(0.0, both)


def seeds_to_resolve(a: Side, b: Side, alpha: float = ALPHA, margin: float | None = None,
                     target: float = POWER) -> int | None:
    """Seeds per side that give ``target`` power at the observed gap and spreads: for Welch's
    test (``margin`` None), or for TOST when the gap lies inside the margin. A side with one seed
    borrows the other's spread; None when neither has one, or there is no gap to find (Welch).
    MAX_SEEDS + 1 stands for "more than MAX_SEEDS"."""
    std_a = a.std if a.n > 1 else b.std
    std_b = b.std if b.n > 1 else a.std
    diff = a.mean - b.mean
    if not (math.isfinite(std_a) and math.isfinite(std_b)) or std_a + std_b == 0:
        return None
    if (margin is None and diff == 0) or (margin is not None and abs(diff) >= margin):
        return None
    low, high = 2, MAX_SEEDS + 1
    if power(diff, std_a, std_b, MAX_SEEDS, alpha, margin) < target:
        return high
    while low < high:  # power grows with n: the smallest n that reaches the target
        mid = (low + high) // 2
        if power(diff, std_a, std_b, mid, alpha, margin) >= target:
            high = mid
        else:
            low = mid + 1
    return low
