"""The leaderboard's statistics: planted differences are found, nulls are called equivalent at the margin the
power formula gives (checked against a scipy-only computation), Holm against a hand-worked example, and the
rank and correlation bootstraps."""

import math
import re

import numpy as np
import pytest
from benchmark.leaderboard.statistics import (
    BETTER,
    EQUIVALENT,
    NO_COMPARISON,
    NOT_RESOLVED,
    WORSE,
    compare_family,
    compare_paired,
    detectable_effect,
    family_verdicts,
    holm,
    rank_intervals,
    required_seeds,
    spearman_with_interval,
    tied_groups,
    verdicts,
)
from benchmark.leaderboard.view import verdict_label
from scipy import optimize, stats

SEEDS = 10
POINT = 0.01


def scipy_power(d: float, n: int, alpha: float) -> float:
    """Power of the two-sided one-sample (paired) t-test with n - 1 df: both tails of the noncentral t."""
    df, nc = n - 1, d * math.sqrt(n)
    critical = stats.t.ppf(1 - alpha / 2, df)
    return float(stats.nct.sf(critical, df, nc) + stats.nct.cdf(-critical, df, nc))


def scipy_detectable_d(n: int, alpha: float, power: float = 0.8) -> float:
    # bracket kept below noncentrality ~8, where scipy's noncentral t cdf starts to return NaN in the far tail
    return optimize.brentq(lambda d: scipy_power(d, n, alpha) - power, 0.0, 2.0, xtol=1e-14, rtol=1e-15)


def runs(margin: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-seed accuracies of Random and of a method `margin` better: a shared per-seed effect plus 1 point of
    noise on each run."""
    rng = np.random.default_rng(seed)
    shared = 0.80 + rng.normal(0, POINT, SEEDS)
    return shared + margin + rng.normal(0, POINT, SEEDS), shared + rng.normal(0, POINT, SEEDS)


def no_overclaim(text: str) -> None:
    assert "holds" not in text


def test_planted_difference_is_better():
    method, random = runs(5 * POINT, seed=0)
    comparison = compare_paired(method, random)
    (verdict,) = verdicts([comparison])
    assert verdict.kind == BETTER
    assert comparison.n == SEEDS and comparison.low < 5 * POINT < comparison.high
    assert verdict.p_holm == pytest.approx(stats.ttest_rel(method, random).pvalue)
    assert verdict.p_holm < 0.05
    assert re.fullmatch(r"better: \+\d\.\d points \[\+\d\.\d, \+\d\.\d\], Holm p (< 0\.001|= 0\.\d+)", verdict.text)
    no_overclaim(verdict.text)
    (worse,) = verdicts([compare_paired(random, method)])
    assert worse.kind == WORSE and worse.text.startswith("worse: \u2212")


def test_null_is_equivalent_at_the_power_margin():
    planted, random = runs(5 * POINT, seed=0)
    same, random_b = runs(0.0, seed=1)
    comparisons = compare_family([(planted, random), (same, random_b)])
    better, null = verdicts(comparisons)
    assert better.kind == BETTER
    assert null.kind == EQUIVALENT
    # The margin is the difference detectable with power 0.8 at the Bonferroni level alpha / family size,
    # computed here from scipy alone.
    sd = float(np.std(same - random_b, ddof=1))
    expected = scipy_detectable_d(SEEDS, 0.05 / 2) * sd
    assert null.margin == comparisons[1].detectable
    assert null.margin == pytest.approx(expected, rel=1e-6)
    assert null.tost_p_holm < 0.05
    expected_text = f"no difference larger than {math.ceil(expected * 1000) / 10:.1f} points (equivalence test"
    assert null.text.startswith(expected_text)
    no_overclaim(null.text)


def test_detectable_effect_is_what_statsmodels_solves():
    from statsmodels.stats.power import TTestPower

    solved = TTestPower().solve_power(effect_size=None, nobs=SEEDS, alpha=0.05, power=0.8, alternative="two-sided")
    assert detectable_effect(SEEDS) == pytest.approx(solved, rel=1e-5)
    # Few seeds at a strict level, where solve_power's defaults return a non-solution (the wrong-sign tail is
    # negligible there, and scipy gives NaN for it, so only the upper tail is checked):
    d = detectable_effect(2, alpha=0.0005)
    assert stats.nct.sf(stats.t.ppf(1 - 0.0005 / 2, 1), 1, d * math.sqrt(2)) == pytest.approx(0.8, rel=1e-9)
    assert math.isnan(detectable_effect(1))


def test_holm_against_a_hand_worked_example():
    # sorted 0.005, 0.01, 0.03, 0.04 -> 4 * 0.005, 3 * 0.01, 2 * 0.03, max(2 * 0.03, 1 * 0.04)
    adjusted = holm([0.01, math.nan, 0.04, 0.03, 0.005])
    assert math.isnan(adjusted[1])
    assert [adjusted[i] for i in (0, 2, 3, 4)] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([]) == [] and all(math.isnan(p) for p in holm([math.nan, math.nan]))


def marginal(mean: float) -> tuple[np.ndarray, np.ndarray]:
    """Differences with a fixed spread of 1.25 points and the given mean: t = mean / (0.0125 / sqrt(10))."""
    z = np.linspace(-1, 1, SEEDS)
    z = (z - z.mean()) / z.std(ddof=1)
    baseline = np.full(SEEDS, 0.8)
    return baseline + mean + 0.0125 * z, baseline


def test_family_adjustment_makes_a_marginal_difference_not_significant():
    alone = compare_paired(*marginal(POINT))
    assert 0.01 < alone.p < 0.05
    assert verdicts([alone])[0].kind == BETTER
    family = compare_family([marginal(POINT), marginal(0.0), marginal(0.0), marginal(0.0)])
    adjusted = verdicts(family)[0]
    assert family[0].p == pytest.approx(alone.p)
    assert adjusted.p_holm == pytest.approx(4 * alone.p) and adjusted.p_holm > 0.05
    assert adjusted.kind != BETTER and not adjusted.text.startswith("better")
    # The family's corrected level also widens what it could detect.
    assert family[0].detectable > alone.detectable
    no_overclaim(adjusted.text)


def test_family_verdicts_partition_by_fraction_and_completeness():
    """Per fraction, the complete rows are one Holm family and the rest another; a row without a pair has no
    verdict; each family's margin is bound_of its own baselines' mean."""
    ten = marginal(POINT)
    three = (ten[0][:3], ten[1][:3])
    fractions = [0.1, 0.1, 0.1, 0.1, 0.5, 0.5]
    complete = [True, True, True, False, True, False]
    pairs = [None, ten, marginal(0.0), three, ten, three]
    means = []
    found = family_verdicts(fractions, complete, pairs, bound_of=lambda mean: means.append(mean) or 0.05)
    assert found[0] is None
    assert [v.comparison.family_size for v in found[1:]] == [2, 2, 1, 1, 1]
    # fraction 0.5's complete family is the row alone: uncorrected, as compare_paired alone
    assert found[4].kind == BETTER and found[4].p_holm == pytest.approx(compare_paired(*ten).p)
    assert found[1].p_holm == pytest.approx(2 * compare_paired(*ten).p)
    assert means[0] == pytest.approx(np.concatenate([ten[1], marginal(0.0)[1]]).mean())
    assert len(means) == 4


def test_not_resolved_says_what_it_could_detect():
    # t = 1.5 (not significant), and the mean is too close to the detectable 1.25 points for equivalence
    comparison = compare_paired(*marginal(0.6 * POINT))
    (verdict,) = verdicts([comparison])
    assert comparison.p > 0.05 and comparison.tost_p > 0.05
    assert verdict.kind == NOT_RESOLVED
    number = r"(\+|\u2212)?\d+\.\d"
    assert re.fullmatch(rf"not resolved: {number} points \[{number}, {number}\]; could detect \d+\.\d points",
                        verdict.text), verdict.text
    no_overclaim(verdict.text)


@pytest.mark.parametrize("kept", [0, 1])
def test_too_few_seeds_is_no_comparison(kept):
    method, random = runs(5 * POINT, seed=0)
    method[kept:] = np.nan
    lone = compare_paired(method, random, family_size=2)
    assert lone.n == kept and not lone.has_interval
    assert all(math.isnan(x) for x in (lone.low, lone.high, lone.p, lone.detectable, lone.tost_p))
    other = compare_paired(*runs(5 * POINT, seed=0), family_size=2)
    verdict, tested = verdicts([lone, other])
    assert verdict.kind == NO_COMPARISON and verdict.text.startswith("no comparison")
    assert math.isnan(verdict.p_holm) and math.isnan(verdict.margin)
    assert tested.p_holm == pytest.approx(other.p)  # the untested one is not counted by Holm
    values = np.vstack([method, random])
    assert rank_intervals(values)[0] is None and tied_groups(rank_intervals(values)) == [[1]]


def test_zero_variance_is_decided_as_documented():
    accuracies = np.array([0.93, 0.83, 0.73])
    same = compare_paired(accuracies, accuracies)
    assert (same.sd, same.p, same.detectable, same.tost_p) == (0.0, 1.0, 0.0, 0.0)
    (verdict,) = verdicts([same])
    assert verdict.kind == EQUIVALENT and verdict.text.startswith("no difference: ")
    shifted = compare_paired(accuracies, accuracies - 0.02)  # differences equal up to float rounding
    assert (shifted.sd, shifted.p, shifted.tost_p) == (0.0, 0.0, 1.0)
    assert shifted.low == shifted.high == pytest.approx(0.02)
    assert verdicts([shifted])[0].kind == BETTER
    assert verdicts([compare_paired(accuracies - 0.02, accuracies)])[0].kind == WORSE


def test_verdicts_want_the_family_size():
    comparisons = [compare_paired(*runs(0.0, seed=s)) for s in range(3)]
    with pytest.raises(ValueError, match="family_size"):
        verdicts(comparisons)


def test_required_seeds():
    sd = 2 * POINT
    large, small = required_seeds(sd, 3 * POINT), required_seeds(sd, POINT)
    assert 2 <= large < small
    for difference, n in ((3 * POINT, large), (POINT, small)):
        assert scipy_power(difference / sd, n, 0.05) >= 0.8 > scipy_power(difference / sd, n - 1, 0.05)
    assert required_seeds(sd, POINT, family_size=10) > small
    assert required_seeds(sd, -POINT) == small
    assert required_seeds(POINT, 1.0) == 2 and required_seeds(0.0, POINT) == 2
    with pytest.raises(ValueError):
        required_seeds(sd, 0.0)


def test_rank_intervals():
    rng = np.random.default_rng(0)
    seeds = 0.80 + rng.normal(0, POINT, SEEDS)
    values = np.vstack([
        seeds + 0.10,                           # clearly best
        seeds, seeds,                           # identical
        seeds - 0.002 + rng.normal(0, POINT, SEEDS),
        np.r_[0.99, [np.nan] * (SEEDS - 1)],    # one seed: never ranked
    ])
    intervals = rank_intervals(values, n_boot=500)
    assert intervals[0] == (1.0, 1.0)
    assert intervals[1] == intervals[2] and intervals[4] is None
    groups = tied_groups(intervals)
    assert groups[0] == [0]
    assert any({1, 2} <= set(group) for group in groups)
    assert 4 not in {i for group in groups for i in group}
    assert rank_intervals(values, n_boot=500) == intervals
    assert rank_intervals(values.T, seeds_axis=0, n_boot=500) == intervals


def test_rank_intervals_with_missing_seeds_are_paired_and_deterministic():
    rng = np.random.default_rng(1)
    values = 0.8 + rng.normal(0, POINT, (3, SEEDS))
    values[1, :7] = np.nan  # three seeds left
    first, second = rank_intervals(values, n_boot=300, seed=5), rank_intervals(values, n_boot=300, seed=5)
    assert first == second and all(1 <= low <= high <= 3 for low, high in first)


def test_spearman_with_interval():
    x = np.arange(12, dtype=float)
    rho, low, high = spearman_with_interval(x, 2 * x + 1)
    assert (rho, low, high) == pytest.approx((1.0, 1.0, 1.0))
    noisy = x + np.random.default_rng(0).normal(0, 3, len(x))
    rho, low, high = spearman_with_interval(x, noisy, n_boot=1000)
    assert rho == pytest.approx(stats.spearmanr(x, noisy).statistic)
    assert -1 <= low <= rho <= high <= 1 and low < high
    assert spearman_with_interval(x, noisy, n_boot=1000) == (rho, low, high)
    rho, low, high = spearman_with_interval(x[:3], noisy[:3])
    assert math.isfinite(rho) and math.isnan(low) and math.isnan(high)


def test_a_comparison_that_cannot_detect_even_100_points_says_so():
    # three seeds whose differences spread by 10 points, in a Holm family of 17 (the page's three-seed rows):
    # the smallest detectable difference exceeds the whole accuracy scale, and the verdict says that in words
    wide = ([0.30, 0.10, 0.20], [0.15, 0.15, 0.15])
    narrow = ([0.16, 0.17, 0.15], [0.15, 0.15, 0.15])
    comparisons = compare_family([wide] + [narrow] * 16)
    assert comparisons[0].detectable > 1.0 > comparisons[1].detectable
    found = verdicts(comparisons, bound=0.05)  # the page bounds "no difference larger than" at a few points
    assert found[0].kind == NOT_RESOLVED and "could not detect even a 100-point difference" in found[0].text
    assert "could detect" in found[1].text and "100-point" not in found[1].text
    assert verdict_label(found[0]) == "not resolved (could not detect even 100 points)"
    assert re.fullmatch(r"not resolved \(could detect \d+\.\d\)", verdict_label(found[1]))
