"""The statistics behind the verdicts (issue 25): practicum/stats.py against scipy.stats on known
samples, issue 25's table recomputed from means, stds and n, the claims' verdicts and the
reproduction's number verdicts on synthetic samples, every catalog equivalence claim with its
margin, and ``--seeds`` adding runs only to what the claims compare. No training."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sp

from practicum import stats
from practicum.claims import FAILS, HOLDS, UNSURE, Claim, Sample, evaluate
from practicum.report.reproduction import number_verdict

A = [0.9811, 0.9806, 0.9822, 0.9817]
B = [0.9790, 0.9801, 0.9779]

# Issue 25's table: (label, a = (mean, std), b = (mean, std), n, Welch p, TOST p at 0.5 pp, at 0.2 pp)
TABLE = [
    ("1/sqrt(d) changes nothing", (0.9813, 0.0007), (0.9823, 0.0001), 3, "0.13", "0.004", "0.065"),
    ("width 2048 vs 512: no gain", (0.9706, 0.0003), (0.9685, 0.0005), 3, "0.006", "0.001", "0.61"),
    ("Adadelta best (vs Adam)", (0.9909, 0.0001), (0.9886, 0.0021), 3, "0.20", "0.078", "0.59"),
]


def same_digits(p: float, shown: str) -> bool:
    """p rounded to as many significant digits as the table shows (0.004: one, 0.065: two)."""
    digits = len(shown.split(".")[1].lstrip("0"))
    return math.isclose(float(f"{p:.{digits}g}"), float(shown))


@pytest.mark.parametrize("label, a, b, n, welch_p, tost5, tost2", TABLE)
def test_issue_25_table_recomputed_from_means_stds_and_n(label, a, b, n, welch_p, tost5, tost2):
    x, y = stats.Side(*a, n), stats.Side(*b, n)
    welch, eq5, eq2 = stats.welch(x, y), stats.tost(x, y, 0.005), stats.tost(x, y, 0.002)
    assert same_digits(welch.p, welch_p), (label, welch.show())
    assert same_digits(eq5.p, tost5), (label, eq5.show())
    assert same_digits(eq2.p, tost2), (label, eq2.show())
    assert "margin ±0.005" in eq5.show() and f"n = {n} vs {n}" in eq5.show() and "α = 0.05" in eq5.show()
    if label.startswith("1/sqrt"):  # the table's "(equivalent)": within 0.5 pp at α = 0.05, not within 0.2 pp
        assert eq5.significant and not eq2.significant and not welch.significant


def test_welch_is_scipy_s_on_the_raw_samples():
    ref = sp.ttest_ind(A, B, equal_var=False)
    got = stats.welch(stats.Side.of(A), stats.Side.of(B))
    assert got.statistic == pytest.approx(ref.statistic, rel=1e-9)
    assert got.p == pytest.approx(ref.pvalue, rel=1e-9)
    assert got.df == pytest.approx(ref.df, rel=1e-9)  # the Welch-Satterthwaite df shown beside it
    assert got.n == (4, 3) and got.diff == pytest.approx(np.mean(A) - np.mean(B))


def test_tost_is_two_one_sided_scipy_tests_on_shifted_samples():
    margin = 0.002
    lower = sp.ttest_ind(np.add(A, margin), B, equal_var=False, alternative="greater")  # diff > -margin
    upper = sp.ttest_ind(np.subtract(A, margin), B, equal_var=False, alternative="less")  # diff < +margin
    got = stats.tost(stats.Side.of(A), stats.Side.of(B), margin)
    assert got.p == pytest.approx(max(lower.pvalue, upper.pvalue), rel=1e-9)
    assert got.margin == margin and got.name == "TOST"


def test_holm_step_down():
    tests = [stats.Test("Welch", 0.0, 3.0, p, (3, 3)) for p in (0.01, 0.04, 0.03)]
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> kept monotone: 0.03, 0.06, 0.06
    assert [t.p for t in stats.holm(tests)] == pytest.approx([0.03, 0.06, 0.06])
    assert all(t.adjusted for t in stats.holm(tests)) and not stats.holm(tests[:1])[0].adjusted
    assert "p = 0.060 (Holm-adjusted)" in stats.holm(tests)[1].show()


def test_interval_is_scipy_s_t_interval():
    ref = sp.ttest_1samp(A, 0.0).confidence_interval(0.95)
    assert stats.interval(A) == pytest.approx((ref.low, ref.high), rel=1e-12)
    assert stats.interval([0.97]) is None  # one seed: no interval


def test_no_spread_no_test():
    one, three = stats.Side.of([0.97]), stats.Side.of(A[:3])
    assert stats.welch(one, three) is None and stats.tost(one, three, 0.01) is None
    flat = stats.Side(0.9, 0.0, 3)
    assert stats.welch(flat, stats.Side(0.8, 0.0, 3)).p == 0.0  # identical seeds: the gap is exact
    assert stats.tost(flat, stats.Side(0.9, 0.0, 3), 0.01).p == 0.0


@pytest.mark.parametrize("margin", [None, 0.002])
def test_seeds_to_resolve_reaches_80_percent_power_by_simulation(margin):
    """The n it gives is the first with 80 % power, and that power is what simulating 4000
    experiments of n seeds per side (at the observed means and spreads, tested with scipy) finds."""
    a, b = stats.Side(0.9813, 0.0007, 3), stats.Side(0.9823, 0.0001, 3)
    n = stats.seeds_to_resolve(a, b, margin=margin)
    rng = np.random.default_rng(0)

    def simulated_power(k: int) -> float:
        x, y = rng.normal(a.mean, a.std, (4000, k)), rng.normal(b.mean, b.std, (4000, k))
        if margin is None:
            return float(np.mean(sp.ttest_ind(x, y, axis=1, equal_var=False).pvalue < 0.05))
        lo = sp.ttest_ind(x + margin, y, axis=1, equal_var=False, alternative="greater").pvalue
        hi = sp.ttest_ind(x - margin, y, axis=1, equal_var=False, alternative="less").pvalue
        return float(np.mean(np.maximum(lo, hi) < 0.05))

    assert 2 < n < 20, n
    for k in (n - 1, n):
        analytic = stats.power(a.mean - b.mean, a.std, b.std, k, 0.05, margin)
        assert analytic == pytest.approx(simulated_power(k), abs=0.03)
    assert stats.power(a.mean - b.mean, a.std, b.std, n - 1, 0.05, margin) < 0.8 <= \
        stats.power(a.mean - b.mean, a.std, b.std, n, 0.05, margin)


def evaluated(claim: Claim, data: dict):
    return evaluate(claim, lambda sel, metric, curves: data[sel["p"]])


def test_greater_and_order_verdicts_are_welch_s_with_holm():
    data = {1: Sample("a", [0.95, 0.96, 0.955]), 2: Sample("b", [0.90, 0.91, 0.905]), 3: Sample("c", [0.80, 0.95, 0.6])}
    two = Claim(text="a beats b and c", kind="greater", a=[{"p": 1}], b=[{"p": 2}, {"p": 3}])
    v = evaluated(two, data)
    p = [sp.ttest_ind(data[1].values, data[k].values, equal_var=False).pvalue for k in (2, 3)]
    holm = [min(1, 2 * min(p)), max(min(1, 2 * min(p)), max(p))]  # Holm over two
    lines = [e for e in v.evidence if "Welch" in e]
    assert [f"p = {stats.fmt_p(q)} (Holm-adjusted)" in line for q, line in zip(holm, lines)] == [True, True]
    assert v.verdict == UNSURE  # a beats b; c is too spread out to tell
    assert "seeds per side would resolve it" in lines[1] and "Holm over 2" in lines[1]
    order = Claim(text="c < b < a", kind="order", items=[{"p": 2}, {"p": 1}], alpha=0.01)
    v = evaluated(order, data)
    assert v.verdict == HOLDS and "α = 0.01" in v.evidence[-1]
    reverse = Claim(text="a < b", kind="order", items=[{"p": 1}, {"p": 2}])
    assert evaluated(reverse, data).verdict == FAILS  # significant, the other way
    lower = Claim(text="loss: a below b", kind="greater", metric="train/loss", a=[{"p": 2}], b=[{"p": 1}])
    assert evaluated(lower, data).verdict == HOLDS  # lower is better for a loss


def test_same_is_tost_within_the_claim_s_margin():
    data = {1: Sample("vit", [0.9806, 0.9813, 0.9820]), 2: Sample("vit-noscale", [0.9822, 0.9823, 0.9824]),
            3: Sample("far", [0.9700, 0.9702, 0.9698])}
    same = Claim(text="changes nothing", kind="same", a=[{"p": 1}], b=[{"p": 2}], margin=0.005)
    v = evaluated(same, data)
    assert v.verdict == HOLDS and "TOST, margin ±0.005" in v.evidence[-1]
    v = evaluated(same.model_copy(update={"margin": 0.002}), data)  # not equivalent, not different
    assert v.verdict == UNSURE and "seeds per side would resolve it to show them equivalent" in v.evidence[-1]
    assert evaluated(same.model_copy(update={"b": [{"p": 3}]}), data).verdict == FAILS  # 1.1 pp apart, Welch p < α
    v = evaluated(same.model_copy(update={"margin": None}), data)
    assert v.verdict == UNSURE and "no margin declared" in v.evidence[-1]
    single = {1: Sample("a", [0.98]), 2: Sample("b", [0.981])}
    v = evaluated(same, single)
    assert v.verdict == UNSURE and "under two seeds on a side" in v.evidence[-1]
    assert "no spread to size from" in v.evidence[-1]


def test_plateau_needs_the_flat_part_and_the_slower_part():
    acc = {32: [0.95, 0.951, 0.949], 512: [0.9685, 0.9690, 0.9680], 2048: [0.9706, 0.9703, 0.9709]}
    secs = {32: [1.0, 1.1, 0.9], 512: [3.0, 3.1, 2.9], 2048: [11.0, 11.5, 10.8]}
    claim = Claim(text="no gain past 512", kind="plateau", items=[{"h": 32}, {"h": 512}, {"h": 2048}], margin=0.005)

    def sample(sel, metric, curves):
        return Sample(str(sel["h"]), (secs if "seconds" in metric else acc)[sel["h"]])

    v = evaluate(claim, sample)
    assert v.verdict == HOLDS, v.evidence
    assert "TOST, margin ±0.005" in v.evidence[-2] and "Welch" in v.evidence[-1]


def test_number_verdicts_from_the_95_percent_interval():
    ci = stats.interval(A)
    assert number_verdict(A, 0.975, None, True).startswith("above (95 % CI")
    assert number_verdict(A, 0.990, None, True).startswith("below (95 % CI")
    assert number_verdict(A, ci[0] + 1e-4, None, True) == f"within (95 % CI {ci[0]:.4f}–{ci[1]:.4f})"
    assert number_verdict([0.99], 0.98, None, True) == "above (one seed: no interval)"
    assert number_verdict([0.97], 0.98, None, True) == "below (one seed: no interval)"
    # a loss: lower is better, so a mean below the seed's number is "above" it
    assert number_verdict(A, 0.990, None, False).startswith("above (95 % CI") and "lower is better" in \
        number_verdict(A, 0.990, None, False)
    # a reported range: reached when the interval overlaps it or lies above it
    assert number_verdict(A, 0.982, (0.9815, 0.99), True).startswith("within the reported range")
    assert number_verdict(A, 0.97, (0.96, 0.97), True).startswith("above the reported range")
    assert number_verdict(A, 0.995, (0.99, 0.995), True).startswith("below the reported range")
    assert number_verdict([], 0.98, None, True) == "not run"


def test_every_catalog_equivalence_claim_declares_a_margin():
    from practicum import sweeps
    from practicum.reproduce import SEEDS, load_reproduction

    claims = [c for s in SEEDS for section in load_reproduction(s).sections for c in section.claims]
    claims += [c for s in {st for s in SEEDS for section in load_reproduction(s).sections for st in section.studies}
               for c in sweeps.load_study(s).claims]
    same = [c for c in claims if c.kind in ("same", "plateau")]
    assert len(same) >= 3 and all(c.margin for c in same), [c.text for c in same if not c.margin]


def test_more_seeds_only_for_what_the_claims_compare(home, monkeypatch):
    from practicum import reproduce, sweeps

    sp_plain = reproduce.study_plan("study-fmnist-dropout-wd", quick=True, seeds=None)
    assert len(sp_plain.trials) == 9  # 3 x 3 grid points, one seed each in the quick form
    more = reproduce.study_plan("study-fmnist-dropout-wd", quick=True, seeds=4)
    compared = sweeps.load_study("study-fmnist-dropout-wd").claims[0]
    assert len(compared.a + compared.b) == 4 and len(more.trials) == 9 + 4 * 3  # 4 points get 3 more seeds
    assert {t.config_hash for t in sp_plain.trials} <= {t.config_hash for t in more.trials}  # first seeds reused

    p = reproduce.plan("002", quick=True, seeds=3)  # §3's claim compares mnist-cnn2-deep with mnist-cnn2
    assert len(p.entries["mnist-cnn2-deep"]) == 3 and len(p.entries["mnist-cnn2"]) == 3
    assert len(p.entries["mnist-cnn2-sigmoid"]) == 1  # no claim of 002 names it
    # a claim's own seeds = N, declared in its file, does the same without --seeds
    load = sweeps.load_study
    study = load("study-mnist-batch")
    asked = study.model_copy(update={"claims": [study.claims[0].model_copy(update={"seeds": 2}), study.claims[1]]})
    monkeypatch.setattr(sweeps, "load_study", lambda spec: asked if spec == "study-mnist-batch" else load(spec))
    assert len(reproduce.study_plan("study-mnist-batch", quick=True, seeds=None).trials) == 2 * 2
    with pytest.raises(Exception, match="2 or more seeds"):
        reproduce.plan("002", quick=True, seeds=1)
