"""DUAL scores early-training uncertainty times difficulty and samples by a ratio-adaptive Beta distribution
(Cho, Shin, Kang & Yun 2025)."""

import math

import numpy as np
import pytest
import torch
from benchmark.methods.dual import DUAL, beta_parameters, beta_pdf
from scipy import stats

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, TrainingDynamics, create_selector, validate_selection


def _dynamics(probabilities) -> TrainingDynamics:
    """Dynamics whose label probabilities (epochs x points) are the given ones: loss = -log p."""
    loss = -torch.log(torch.tensor(probabilities, dtype=torch.float64)).float()
    return TrainingDynamics(correct=loss < math.log(2), margin=-loss, loss=loss)


# four epochs, windows of two (three windows): sample std of two values a, b is |a - b| / sqrt(2)
PROBABILITIES = np.array([[0.2, 0.5, 0.9, 0.1],
                          [0.4, 0.5, 0.1, 0.9],
                          [0.4, 0.5, 0.9, 0.9],
                          [0.8, 0.5, 0.1, 0.9]])
# point 0: windows (0.2, 0.4): 0.2/sqrt2 * 0.7; (0.4, 0.4): 0; (0.4, 0.8): 0.4/sqrt2 * 0.4 -> mean 0.1/sqrt2
# point 1: constant, 0; point 2: every window 0.8/sqrt2 * 0.5 -> 0.4/sqrt2
# point 3: (0.1, 0.9): 0.8/sqrt2 * 0.5, then two constant windows -> 0.4/sqrt2 / 3
EXPECTED = np.array([0.1, 0.0, 0.4, 0.4 / 3]) / math.sqrt(2)


def test_the_score_on_a_hand_made_dynamics_matrix():
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 0], budget=2, training_dynamics=_dynamics(PROBABILITIES))
    top = DUAL(window=2, epochs=4, sampling="top").select(context)
    np.testing.assert_allclose(top.scores, EXPECTED, rtol=1e-5, atol=1e-7)
    assert top.indices.tolist() == [2, 3]  # the two highest: 0.283 and 0.094 (point 0: 0.071)
    # only the first T epochs count: with T = 2 there is one window, epochs 1 and 2
    first_two = DUAL(window=2, epochs=2, sampling="top").select(context).scores
    np.testing.assert_allclose(first_two, [0.2 * 0.7, 0.0, 0.8 * 0.5, 0.8 * 0.5] / np.sqrt(2), rtol=1e-5, atol=1e-7)
    # the window is capped at the epochs recorded: window 10 over 4 epochs is one window of 4
    np.testing.assert_allclose(DUAL(sampling="top").select(context).scores,
                               np.std(PROBABILITIES, axis=0, ddof=1) * (1 - PROBABILITIES.mean(0)), rtol=1e-5)


def test_the_beta_distribution_moves_towards_easy_examples_as_the_pruning_rate_grows():
    # anchor 0.5 at 90 % pruning: beta = 15 * 0.5 * (1 - 0.9^4) = 7.5 * 0.3439 = 2.579, alpha = 13.421
    alpha, beta = beta_parameters(0.5, 0.9, 4.0)
    assert beta == pytest.approx(2.579250) and alpha == pytest.approx(13.420750)
    alpha_low, beta_low = beta_parameters(0.5, 0.3, 4.0)  # 7.5 * (1 - 0.0081) = 7.439
    assert (alpha_low - 1) / (alpha_low + beta_low - 2) < 0.6 < (alpha - 1) / (alpha + beta - 2)  # the modes
    x = np.array([0.05, 0.3, 0.7, 0.95])
    np.testing.assert_allclose(beta_pdf(x, alpha, beta), stats.beta.pdf(x, alpha, beta), rtol=1e-10)


def _random_context(seed=0, **overrides):
    rng = np.random.default_rng(5)
    logits = np.cumsum(rng.normal(0.3, 1.0, size=(10, 200)), axis=0)  # 10 epochs of drifting predictions
    arrays = dict(labels=np.repeat([0, 1], 100), budget=20, seed=seed,
                  training_dynamics=_dynamics(1 / (1 + np.exp(-logits))))
    return SelectionContext.from_arrays(**{**arrays, **overrides})


def test_beta_sampling_is_deterministic_and_spends_the_exact_budget():
    context = _random_context()
    first = validate_selection(DUAL().select(context), context, "dual")
    assert len(first.indices) == 20 and np.bincount(context.labels[first.indices]).tolist() == [10, 10]
    assert DUAL().select(_random_context()).indices.tolist() == first.indices.tolist()
    assert DUAL().select(_random_context(seed=1)).indices.tolist() != first.indices.tolist()
    pooled = DUAL().select(_random_context(balance=False, budget=37))
    assert len(np.unique(pooled.indices)) == 37


def test_points_of_weight_zero_come_last():
    # points 1 and 4 never change (score 0): with 4 of 6 points positive, a budget of 4 never draws them, a
    # budget of 5 draws exactly one of them
    probabilities = np.array([[0.2, 0.5, 0.9, 0.1, 0.3, 0.6], [0.6, 0.5, 0.3, 0.4, 0.3, 0.2]])
    for seed in range(5):
        context = SelectionContext.from_arrays(labels=[0] * 6, budget=4, seed=seed,
                                               training_dynamics=_dynamics(probabilities))
        assert DUAL().select(context).indices.tolist() == [0, 2, 3, 5]
        context = SelectionContext.from_arrays(labels=[0] * 6, budget=5, seed=seed,
                                               training_dynamics=_dynamics(probabilities))
        assert len({1, 4} & set(DUAL().select(context).indices.tolist())) == 1


def test_heavier_weights_are_drawn_more_often():
    # one draw of 1 from weights 1 and 3: successive sampling picks the second with probability 3/4
    draws = [DUAL._draw(np.array([1.0, 3.0]), 1, np.random.default_rng(seed))[0] for seed in range(4000)]
    assert np.mean(draws) == pytest.approx(0.75, abs=0.03)


@pytest.mark.parametrize("params, message", [({"window": 1}, "window and epochs must be at least 2"),
                                             ({"c_d": 0.0}, "c_d must be positive"),
                                             ({"sampling": "stratified"}, "sampling must be 'beta' or 'top'")])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("dual", params)


def test_one_epoch_of_dynamics_is_not_enough():
    context = SelectionContext.from_arrays(labels=[0, 0], budget=1, training_dynamics=_dynamics([[0.5, 0.6]]))
    with pytest.raises(UserError, match="at least 2 epochs"):
        DUAL().select(context)
