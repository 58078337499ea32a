"""Entropy keeps the points whose softmax output is most spread out (Coleman et al. 2020), in both the balanced
and the unbalanced mode."""

import math

import numpy as np
import pytest
from benchmark.methods.entropy import Entropy

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection

P = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1]])


def _entropy(p):
    return -sum(x * math.log(x) for x in p if x > 0)


def test_the_most_spread_out_predictions_are_kept_over_the_pool():
    # by hand: H = 0.394 (0.9 ln 0.9 + 2 * 0.05 ln 0.05), 1.089, ln 2 = 0.693 (0 log 0 = 0), 0.802; the two
    # highest are points 1 and 3 (least confidence would keep 1 and 2), a reversed ranking would keep 0 and 2
    context = SelectionContext.from_arrays(labels=[0, 1, 2, 0], budget=2, probabilities=P, balance=False)
    selection = validate_selection(Entropy().select(context), context, "entropy")
    np.testing.assert_allclose(selection.scores, [_entropy(p) for p in P], rtol=1e-6)
    np.testing.assert_allclose(selection.scores, [0.3944, 1.0889, 0.6931, 0.8018], atol=1e-4)
    assert selection.indices.tolist() == [1, 3]


def test_the_most_spread_out_predictions_are_kept_per_class():
    # class 0 holds P's rows in order (points 0-3), class 1 the same rows reversed (points 4-7): the highest
    # entropy of each class is row 1 of P, i.e. points 1 and 6; a reversed ranking would keep 0 and 7
    labels = np.repeat([0, 1], 4)
    context = SelectionContext.from_arrays(labels=labels, budget=2, probabilities=np.concatenate([P, P[::-1]]))
    assert Entropy().select(context).indices.tolist() == [1, 6]


def test_a_one_hot_prediction_has_zero_entropy_and_uniform_the_most():
    probabilities = [[1.0, 0.0, 0.0], [1 / 3, 1 / 3, 1 / 3], [0.0, 0.0, 1.0]]
    context = SelectionContext.from_arrays(labels=[0, 1, 2], budget=1, probabilities=probabilities, balance=False)
    selection = Entropy().select(context)
    np.testing.assert_allclose(selection.scores, [0.0, math.log(3), 0.0], atol=1e-6)
    assert selection.indices.tolist() == [1]


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        create_selector("entropy", {"k": "3"})
