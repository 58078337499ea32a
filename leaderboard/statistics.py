"""The statistics behind the leaderboard's verdicts (numpy, scipy and statsmodels; never torch).

Everything is in accuracy units as fractions (0.02 = 2 points). The unit of replication is the seed: a method's
run with seed s is paired with Random's run with the same seed and fraction, and every test below is on the
per-seed differences method - Random.

- `compare_paired`: the mean paired difference with a t interval, the paired t-test's p-value, the smallest
  difference the comparison could detect, and an equivalence (TOST) p-value at that margin.
- `verdicts`: one family of comparisons (the caller decides what a family is, e.g. one fraction and one
  measure): Holm-adjusts the difference and the equivalence p-values and says "better", "worse",
  "equivalent", "not resolved" or "no comparison".
- `family_verdicts`: the page's families (per fraction, the complete rows apart from the rest) and their verdicts.
- `required_seeds`: how many seeds would detect a given difference.
- `rank_intervals`, `tied_groups`: bootstrap intervals of the methods' ranks, and groups that are not told apart.
- `spearman_with_interval`: rank agreement of two measures with a bootstrap interval.

Randomness comes only from `numpy.random.default_rng(seed)` with an explicit seed, never from the clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, stats
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import TTestPower
from statsmodels.stats.weightstats import ttost_paired

ALPHA = 0.05
POWER = 0.8
MINUS = "\u2212"  # the page's minus sign in verdict texts
# Accuracies are fractions of at most ~1e6 test images, so real differences are >= 1e-6; a spread or mean
# below this is float rounding of equal accuracies (e.g. 0.93 - 0.91 vs 0.83 - 0.81) and counts as zero.
ZERO = 1e-12

BETTER, WORSE, EQUIVALENT, NOT_RESOLVED, NO_COMPARISON = (
    "better", "worse", "equivalent", "not resolved", "no comparison")


# ---------------------------------------------------------------------------------------------- power


def _power(effect_size: float, nobs: float, alpha: float) -> float:
    """Power of the two-sided paired t-test (n - 1 degrees of freedom) for a true difference of `effect_size`
    standard deviations of the differences, from statsmodels."""
    power = float(TTestPower().power(effect_size=effect_size, nobs=nobs, alpha=alpha, alternative="two-sided"))
    if math.isnan(power):
        # scipy's noncentral t gives NaN where the lower-tail term (rejecting with the wrong sign) underflows to
        # ~1e-16 (e.g. 1 df, noncentrality 11); it is then nothing next to the upper tail, so that tail
        # (statsmodels' one-sided power at alpha / 2) is the power.
        power = float(TTestPower().power(effect_size=effect_size, nobs=nobs, alpha=alpha / 2, alternative="larger"))
    return power


def detectable_effect(n: int, *, alpha: float = ALPHA, power: float = POWER) -> float:
    """Cohen's d (difference / sd of the differences) that the two-sided paired t-test at level `alpha` with
    `n` seeds detects with probability `power`; NaN for n < 2.

    This is what `TTestPower().solve_power(effect_size=None, nobs=n, alpha=alpha, power=power)` computes; it is
    solved here with `brentq` on statsmodels' power function, because solve_power's default start values
    silently return non-solutions for few seeds at strict levels (e.g. n = 2 at alpha = 0.0005)."""
    if n < 2:
        return math.nan
    high = 1.0
    while _power(high, n, alpha) < power:  # power grows with d; 0 has power alpha < `power`
        high *= 2
    return float(optimize.brentq(lambda d: _power(d, n, alpha) - power, 0.0, high, xtol=1e-14, rtol=1e-15))


# ---------------------------------------------------------------------------------------------- one comparison


@dataclass(frozen=True)
class Comparison:
    """Method - baseline over the `n` seeds both have (accuracy fractions).

    `mean`, `sd`: mean and sample standard deviation (ddof=1) of the per-seed differences.
    `low`, `high`: two-sided t interval at 1 - alpha (n - 1 degrees of freedom), not adjusted for the family.
    `p`: two-sided paired t-test p-value of "no difference", not adjusted.
    `detectable`: the smallest true difference this comparison detects with probability `power` at the level
    alpha / family_size (the Bonferroni level, i.e. the conservative bound of Holm's first step; later Holm
    steps test at more lenient levels): Cohen's d from statsmodels' paired t-test power times `sd`.
    `tost_p`: two one-sided tests (TOST) p-value of "the true difference is at least `detectable` in size";
    small means the difference is smaller than `detectable`. The margin comes from the data (via `sd`), so read
    it as "no difference larger than the comparison could detect", not as a margin fixed in advance.

    n < 2: everything except `n` (and `mean` for n = 1) is NaN. Differences that are all the same (sd = 0, up
    to float rounding) are decided without a t distribution: the interval is the point, `detectable` is 0
    (without noise every difference is seen); all zero gives p = 1 and tost_p = 0 (equivalent: every seed
    gave the same accuracy); a constant non-zero difference gives p = 0 and tost_p = 1 (better or worse).
    """

    n: int
    mean: float
    sd: float
    low: float
    high: float
    p: float
    detectable: float
    tost_p: float
    alpha: float = ALPHA
    family_size: int = 1
    power: float = POWER

    @property
    def has_interval(self) -> bool:
        return self.n >= 2


def _check_levels(alpha: float, family_size: int, power: float) -> None:
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ValueError(f"alpha and power must lie in (0, 1), got alpha={alpha}, power={power}")
    if int(family_size) != family_size or family_size < 1:
        raise ValueError(f"family_size must be a positive integer, got {family_size}")


def _paired(method, baseline) -> tuple[np.ndarray, np.ndarray]:
    """The seeds both have: pairs with a NaN on either side dropped."""
    method, baseline = np.asarray(method, dtype=float), np.asarray(baseline, dtype=float)
    if method.ndim != 1 or method.shape != baseline.shape:
        raise ValueError(f"method and baseline must be 1-D and aligned by seed, got {method.shape} and "
                         f"{baseline.shape}")
    keep = ~(np.isnan(method) | np.isnan(baseline))
    return method[keep], baseline[keep]


def compare_paired(method, baseline, *, alpha: float = ALPHA, family_size: int = 1,
                   power: float = POWER) -> Comparison:
    """Compare `method` with `baseline`, two arrays of accuracies aligned by seed (NaN where a run is missing).
    See `Comparison` for what each number means; `family_size` is the number of comparisons the caller will
    Holm-adjust together (it sets the level at which `detectable` is computed)."""
    _check_levels(alpha, family_size, power)
    levels = {"alpha": alpha, "family_size": int(family_size), "power": power}
    method, baseline = _paired(method, baseline)
    diff = method - baseline
    n = len(diff)
    if n < 2:
        mean = float(diff[0]) if n else math.nan
        return Comparison(n, mean, math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, **levels)
    mean, sd = float(diff.mean()), float(diff.std(ddof=1))
    if sd <= ZERO:  # constant differences: no t distribution; decided as documented on Comparison
        zero = abs(mean) <= ZERO
        mean = 0.0 if zero else mean
        return Comparison(n, mean, 0.0, mean, mean, 1.0 if zero else 0.0, 0.0, 0.0 if zero else 1.0, **levels)
    test = stats.ttest_rel(method, baseline)
    interval = test.confidence_interval(confidence_level=1 - alpha)
    detectable = detectable_effect(n, alpha=alpha / family_size, power=power) * sd
    tost_p = float(ttost_paired(method, baseline, -detectable, detectable)[0])
    return Comparison(n, mean, sd, float(interval.low), float(interval.high), float(test.pvalue), detectable,
                      tost_p, **levels)


# ---------------------------------------------------------------------------------------------- families


def holm(p_values) -> list[float]:
    """Holm's step-down adjusted p-values, in the input's order (statsmodels `multipletests(method="holm")`).
    NaN entries (no test) are left out of the family and stay NaN."""
    p_values = np.asarray(p_values, dtype=float)
    adjusted = np.full(len(p_values), np.nan)
    tested = ~np.isnan(p_values)
    if tested.any():
        adjusted[tested] = multipletests(p_values[tested], method="holm")[1]
    return [float(p) for p in adjusted]


@dataclass(frozen=True)
class Verdict:
    """What the page says about one comparison of a family.

    `kind`: "better"/"worse" (Holm-adjusted difference p < alpha, sign of the mean); otherwise "equivalent"
    (Holm-adjusted TOST p < alpha: no true difference as large as `margin`); otherwise "not resolved";
    "no comparison" with fewer than 2 paired seeds.
    `p_holm`, `tost_p_holm`: the Holm-adjusted difference and equivalence p-values within the family (NaN for
    "no comparison"). `margin`: the equivalence margin, the comparison's `detectable` difference.
    `text`: the sentence the page shows: points with one decimal, the interval is the comparison's unadjusted
    t interval at 1 - alpha, the p-value is Holm-adjusted, and margins are rounded up so that the claim is
    never narrower than what was tested.
    """

    kind: str
    text: str
    p_holm: float
    tost_p_holm: float
    margin: float
    comparison: Comparison


def compare_family(pairs, *, alpha: float = ALPHA, power: float = POWER) -> list[Comparison]:
    """`compare_paired` for each (method, baseline) pair of one family, with family_size = len(pairs)."""
    pairs = list(pairs)
    return [compare_paired(m, b, alpha=alpha, family_size=len(pairs), power=power) for m, b in pairs]


def verdicts(comparisons, *, alpha: float = ALPHA, bound: float = math.inf) -> list[Verdict]:
    """Verdicts for one family of comparisons, in order. Each comparison must have been computed with this
    `alpha` and `family_size = len(comparisons)` (see `compare_family`), so that its `detectable` difference
    is the one at the corrected level; otherwise ValueError. Comparisons with n < 2 count in the family size
    (conservative) but have no p-value, so Holm leaves them out. `bound`: the largest margin worth stating as
    "no difference larger than": a comparison that can only detect more (three seeds detect tens of points) is
    "not resolved", with what it could detect, however its equivalence test came out."""
    comparisons = list(comparisons)
    for c in comparisons:
        if c.family_size != len(comparisons) or c.alpha != alpha:
            raise ValueError(f"comparison computed with family_size={c.family_size}, alpha={c.alpha}; this family "
                             f"has {len(comparisons)} comparisons at alpha={alpha}")
    p_holm = holm([c.p for c in comparisons])
    tost_holm = holm([c.tost_p for c in comparisons])
    return [_verdict(c, p, t, alpha, bound) for c, p, t in zip(comparisons, p_holm, tost_holm)]


def family_verdicts(fractions, complete, pairs, *, bound_of) -> list[Verdict | None]:
    """The page's Holm families, for rows of a table: row i is at fraction `fractions[i]`, has as many seeds as
    the most at its fraction when `complete[i]`, and is compared by `pairs[i]` (method, baseline arrays; None:
    no comparison, e.g. Random against itself). A family is one fraction's complete rows (those a ranking can
    rank); that fraction's other rows, shown but never ranked, are a family of their own, so that their weak
    comparisons do not widen the others' correction (on the published cifar10-cpu board, 17 methods at three
    seeds would have made the study's 6 comparisons at ten seeds a family of 23). `bound_of(baseline mean)`: the
    widest equivalence margin worth stating for that family. Returns each row's verdict, None where no pair."""
    found: list[Verdict | None] = [None] * len(pairs)
    for fraction in sorted(set(fractions)):
        compared = [i for i, pair in enumerate(pairs) if fractions[i] == fraction and pair is not None]
        for family in ([i for i in compared if complete[i]], [i for i in compared if not complete[i]]):
            if not family:
                continue
            baseline = np.concatenate([pairs[i][1] for i in family]).astype(float)
            baseline = baseline[np.isfinite(baseline)]
            bound = bound_of(float(baseline.mean()) if len(baseline) else math.nan)
            for i, verdict in zip(family, verdicts(compare_family([pairs[i] for i in family]), bound=bound)):
                found[i] = verdict
    return found


def _verdict(c: Comparison, p: float, tost_p: float, alpha: float, bound: float = math.inf) -> Verdict:
    if c.n < 2:
        text = f"no comparison: {c.n} paired seed{'' if c.n == 1 else 's'} (needs at least 2)"
        return Verdict(NO_COMPARISON, text, math.nan, math.nan, math.nan, c)
    if p < alpha:
        kind = BETTER if c.mean > 0 else WORSE
        text = f"{kind}: {_points(c.mean)} points [{_points(c.low)}, {_points(c.high)}], Holm p {_p_text(p, alpha)}"
    elif tost_p < alpha and c.detectable <= bound:
        kind = EQUIVALENT
        if c.detectable == 0:
            text = f"no difference: the same accuracy as the baseline on all {c.n} paired seeds"
        else:
            text = (f"no difference larger than {margin_text(c.detectable)} points (equivalence test, "
                    f"Holm p {_p_text(tost_p, alpha)})")
    else:
        kind = NOT_RESOLVED
        could = ("could not detect even a 100-point difference" if beyond_scale(c.detectable)
                 else f"could detect {margin_text(c.detectable)} points")
        text = f"not resolved: {_points(c.mean)} points [{_points(c.low)}, {_points(c.high)}]; {could}"
    return Verdict(kind, text, p, tost_p, c.detectable, c)


def beyond_scale(detectable: float) -> bool:
    """Whether the smallest detectable difference exceeds 100 points: accuracies differ by at most that, so such a
    comparison (few seeds, a wide spread, a large family) could detect no difference at all."""
    return detectable > 1.0


def _points(fraction: float) -> str:
    """Signed points with one decimal: "+3.1", "−2.9" (the page's minus sign), "0.0"."""
    text = f"{abs(fraction) * 100:.1f}"
    if text == "0.0":
        return text
    return ("+" if fraction > 0 else MINUS) + text


def margin_text(fraction: float) -> str:
    """Points rounded up to one decimal, so "no difference larger than X" never claims more than was tested."""
    return f"{math.ceil(fraction * 1000 - 1e-9) / 10:.1f}"


def _p_text(p: float, alpha: float) -> str:
    """"= 0.004" / "< 0.001": two significant digits, more where rounding would cross alpha (0.0496 is
    "0.0496", not "0.05")."""
    if p < 0.001:
        return "< 0.001"
    for digits in range(2, 8):
        text = f"{p:.{digits}g}"
        if (float(text) < alpha) == (p < alpha):
            return f"= {text}"
    return f"= {p}"


def required_seeds(sd: float, difference: float, *, alpha: float = ALPHA, family_size: int = 1,
                   power: float = POWER) -> int:
    """The smallest number of seeds n (at least 2) with which the two-sided paired t-test at alpha / family_size
    detects a true difference `difference` with probability `power`, when the per-seed differences have
    standard deviation `sd`. This is statsmodels' `solve_power(nobs=None)` rounded up, found by an integer
    search on statsmodels' power function so that n reaches the power and n - 1 does not. sd = 0 gives 2;
    a zero difference (never detected) raises ValueError."""
    _check_levels(alpha, family_size, power)
    if not (math.isfinite(sd) and sd >= 0 and math.isfinite(difference)) or difference == 0:
        raise ValueError(f"need a finite sd >= 0 and a non-zero difference, got sd={sd}, difference={difference}")
    if sd == 0:
        return 2
    effect, level = abs(difference) / sd, alpha / family_size
    low, high = 1, 2  # power(low) < power <= power(high); 1 seed has no test
    while _power(effect, high, level) < power:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        low, high = (middle, high) if _power(effect, middle, level) < power else (low, middle)
    return high


# ---------------------------------------------------------------------------------------------- ranks


def _bootstrap_columns(present: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """`n_boot` resamples (with replacement) of the seed columns, each giving every method at least one seed.
    Resamples that leave a method without a seed are drawn again (the bootstrap conditional on every method
    having a mean); if almost none qualify the methods share too few seeds and ValueError is raised."""
    n_seeds = present.shape[1]
    kept, drawn = [], 0
    while sum(len(k) for k in kept) < n_boot:
        if drawn > 50 * n_boot:
            raise ValueError("the methods share too few seeds for a paired bootstrap")
        draws = rng.integers(0, n_seeds, size=(n_boot, n_seeds))
        drawn += n_boot
        counts = present[:, draws].sum(axis=2)  # methods x resamples
        kept.append(draws[(counts > 0).all(axis=0)])
    return np.concatenate(kept)[:n_boot]


def rank_intervals(values, *, seeds_axis: int = 1, n_boot: int = 2000, seed: int = 0,
                   confidence: float = 0.95) -> list[tuple[float, float] | None]:
    """Bootstrap intervals of each method's rank by its mean over seeds (rank 1 = highest mean).

    `values`: methods x seeds matrix of one measure (seeds on `seeds_axis`), NaN where a method lacks a seed.
    Methods with fewer than 2 seeds get None and take no part in the ranking. The bootstrap is paired: each
    resample draws seed columns with replacement (`numpy.random.default_rng(seed)`), every method's mean is
    taken over its values in the drawn columns, and the methods are ranked (ties share the average rank).
    Returns per method the (low, high) percentile interval of its rank at `confidence`, as ranks actually seen
    (lower and higher order statistics, so the interval only widens)."""
    values = np.asarray(values, dtype=float)
    if values.ndim != 2:
        raise ValueError(f"values must be a methods x seeds matrix, got shape {values.shape}")
    if seeds_axis == 0:
        values = values.T
    present = ~np.isnan(values)
    ranked = np.flatnonzero(present.sum(axis=1) >= 2)
    result: list[tuple[float, float] | None] = [None] * values.shape[0]
    if len(ranked) == 0:
        return result
    sub = values[ranked][:, present[ranked].any(axis=0)]  # seed columns no ranked method has add nothing
    draws = _bootstrap_columns(~np.isnan(sub), n_boot, np.random.default_rng(seed))
    means = np.nanmean(sub[:, draws], axis=2).T  # resamples x methods
    ranks = stats.rankdata(-means, axis=1, method="average")
    tail = (1 - confidence) / 2
    lows = np.quantile(ranks, tail, axis=0, method="lower")
    highs = np.quantile(ranks, 1 - tail, axis=0, method="higher")
    for row, low, high in zip(ranked, lows, highs):
        result[row] = (float(low), float(high))
    return result


def tied_groups(intervals) -> list[list[int]]:
    """Groups of methods (indices into `intervals`) that the rank intervals do not tell apart, best first.

    Methods are ordered by (low, high, index) of their rank interval; the first not yet grouped leads a new
    group, which takes every remaining method whose interval overlaps the leader's (touching counts); repeat.
    So each method in a group overlaps the group's best, not necessarily every other member. None intervals
    (fewer than 2 seeds) are in no group. Deterministic."""
    order = sorted((iv[0], iv[1], i) for i, iv in enumerate(intervals) if iv is not None)
    groups = []
    while order:
        _, leader_high, _ = order[0]
        groups.append([i for low, _, i in order if low <= leader_high])
        order = [item for item in order if item[0] > leader_high]
    return groups


# ---------------------------------------------------------------------------------------------- agreement


def spearman_with_interval(x, y, *, n_boot: int = 2000, seed: int = 0,
                           confidence: float = 0.95) -> tuple[float, float, float]:
    """Spearman's rank correlation of paired items (`scipy.stats.spearmanr`, NaN pairs dropped) and a
    percentile bootstrap interval at `confidence` from resampling the items with replacement
    (`numpy.random.default_rng(seed)`). Resamples in which one side is constant have no correlation and are
    left out. Returns (rho, low, high); rho is NaN for fewer than 2 items (or a constant side), the interval
    NaN for fewer than 4 items."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    if x.ndim != 1 or x.shape != y.shape:
        raise ValueError(f"x and y must be 1-D and paired, got {x.shape} and {y.shape}")
    keep = ~(np.isnan(x) | np.isnan(y))
    x, y = x[keep], y[keep]
    n = len(x)
    rho = _spearman(x, y) if n >= 2 else math.nan
    if n < 4:
        return rho, math.nan, math.nan
    draws = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    rx = stats.rankdata(x[draws], axis=1) - (n + 1) / 2  # centred ranks; spearman = pearson of ranks
    ry = stats.rankdata(y[draws], axis=1) - (n + 1) / 2
    norm = np.sqrt((rx ** 2).sum(axis=1) * (ry ** 2).sum(axis=1))
    boot = np.divide((rx * ry).sum(axis=1), norm, out=np.full(n_boot, np.nan), where=norm > 0)
    boot = boot[~np.isnan(boot)]
    if len(boot) == 0:
        return rho, math.nan, math.nan
    tail = (1 - confidence) / 2
    return rho, float(np.quantile(boot, tail)), float(np.quantile(boot, 1 - tail))


def _spearman(x: np.ndarray, y: np.ndarray) -> float:
    if np.all(x == x[0]) or np.all(y == y[0]):
        return math.nan  # a constant side has no ranks to correlate (spearmanr would warn and give NaN)
    return float(stats.spearmanr(x, y).statistic)
