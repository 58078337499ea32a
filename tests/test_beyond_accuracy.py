"""Robustness beyond accuracy (`leaderboard.beyond_accuracy`): a method planted above the line every other
method's runs lie on is found, with an interval that holds the amount planted, even when it is also the most
accurate; methods on the line are not resolved and bounded; a method with one run is not tested."""

import math

import numpy as np
import pandas as pd
import pytest
from benchmark.leaderboard.beyond_accuracy import MORE, NOT_RESOLVED, UNTESTED, fit_fraction


def _runs(planted: float, seeds: int = 6, noise: float = 0.004) -> pd.DataFrame:
    """Five methods whose robust accuracy is 0.4 x clean - 0.02 (plus small noise) and one, "robust", planted
    `planted` above it; the methods' clean accuracies 1 point apart (the most robust is also the most accurate),
    with a 2-point seed spread, as on a board."""
    rng = np.random.default_rng(0)
    rows = []
    for m, method in enumerate(["random", "a", "b", "c", "d", "robust"]):
        for seed in range(seeds):
            clean = 0.3 + 0.01 * m + 0.02 * rng.standard_normal()
            robust = 0.4 * clean - 0.02 + noise * rng.standard_normal() + (planted if method == "robust" else 0.0)
            rows.append({"label": method, "method": method, "fraction": 0.1, "seed": seed, "clean": clean,
                         "headline": robust})
    return pd.DataFrame(rows)


def test_a_method_planted_above_the_line_is_found_by_exactly_the_amount_planted():
    planted, null = fit_fraction(_runs(planted=0.03), 0.1), fit_fraction(_runs(planted=0.0), 0.1)
    found = {r.label: r for r in planted.offsets}
    base = {r.label: r for r in null.offsets}
    # adding 3 points to one method's robust accuracies moves its offset by exactly 3 points and no other's
    assert found["robust"].mean - base["robust"].mean == pytest.approx(0.03, abs=1e-9)
    assert all(found[x].mean == pytest.approx(base[x].mean, abs=1e-9) for x in "abcd")
    assert found["robust"].verdict == MORE and found["robust"].low > 0.01
    assert planted.any_differs and planted.f_p < 1e-6
    assert all(r.verdict == NOT_RESOLVED for r in planted.offsets if r.label != "robust")
    assert "random" not in found  # the baseline


def test_methods_on_one_line_are_not_resolved_and_bounded():
    fit = fit_fraction(_runs(planted=0.0), 0.1)
    assert all(r.verdict == NOT_RESOLVED for r in fit.offsets)
    assert all(r.high - r.low < 0.015 for r in fit.offsets)  # each offset bounded within about ±0.7 points
    assert fit.slope == pytest.approx(0.4, abs=0.1) and fit.r_squared > 0.8


def test_one_run_is_untested_and_too_few_runs_fit_nothing():
    runs = _runs(planted=0.0)
    single = pd.concat([runs, pd.DataFrame([{"label": "once", "method": "once", "fraction": 0.1, "seed": 0,
                                             "clean": 0.5, "headline": 0.4}])])
    once = next(r for r in fit_fraction(single, 0.1).offsets if r.label == "once")
    assert once.verdict == UNTESTED and math.isnan(once.low) and "fewer than two runs" in once.text
    assert fit_fraction(runs[runs["method"] != "random"], 0.1) is None  # nothing to compare with
    assert fit_fraction(runs.head(2), 0.1) is None
    flat = runs.assign(clean=0.5)
    assert fit_fraction(flat, 0.1) is None  # no spread in clean accuracy: no line
    with_nan = runs.assign(headline=[math.nan] * len(runs))
    assert fit_fraction(with_nan, 0.1) is None
