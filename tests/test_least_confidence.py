"""Least confidence keeps the points whose top softmax probability is lowest (Coleman et al. 2020), in both the
balanced and the unbalanced mode; the three uncertainty scores agree where they must."""

import numpy as np
import pytest
from benchmark.methods.entropy import Entropy
from benchmark.methods.least_confidence import LeastConfidence
from benchmark.methods.margin import Margin

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection

# Four predictions over three classes. By hand, 1 - max p: 0.1, 0.6, 0.5, 0.3, so the two most uncertain are
# points 1 and 2 and the two most confident (what a reversed ranking would keep) are 0 and 3.
P = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1]])


def test_the_least_confident_points_are_kept_over_the_pool():
    context = SelectionContext.from_arrays(labels=[0, 1, 2, 0], budget=2, probabilities=P, balance=False)
    selection = validate_selection(LeastConfidence().select(context), context, "least_confidence")
    np.testing.assert_allclose(selection.scores, [0.1, 0.6, 0.5, 0.3], atol=1e-6)
    assert selection.indices.tolist() == [1, 2]  # DeepCore's unbalanced branch keeps [0, 3]


def test_the_least_confident_points_are_kept_per_class():
    # class 0 holds P's rows in order (points 0-3), class 1 the same rows reversed (points 4-7): per class the
    # least confident is row 1 of P, i.e. point 1 and point 6; a reversed ranking would keep points 0 and 7
    labels = np.repeat([0, 1], 4)
    context = SelectionContext.from_arrays(labels=labels, budget=2, probabilities=np.concatenate([P, P[::-1]]))
    selection = validate_selection(LeastConfidence().select(context), context, "least_confidence")
    assert selection.indices.tolist() == [1, 6]


def test_the_three_scores_agree_where_they_must():
    # a near-uniform prediction is more uncertain than a near-one-hot one by every measure
    probabilities = [[0.98, 0.01, 0.01], [0.34, 0.33, 0.33], [0.01, 0.98, 0.01]]
    context = SelectionContext.from_arrays(labels=[0, 0, 0], budget=1, probabilities=probabilities)
    for selector in (LeastConfidence(), Entropy(), Margin()):
        assert selector.select(context).indices.tolist() == [1], selector.name
    # with two classes each score is a strictly decreasing function of max p (1 - m, -(2m - 1), and the binary
    # entropy, decreasing for m >= 1/2), so all three rank every pool the same way
    rng = np.random.default_rng(0)
    first = rng.uniform(0.0, 1.0, size=40)
    context = SelectionContext.from_arrays(labels=rng.integers(0, 2, size=40), budget=12,
                                           probabilities=np.stack([first, 1 - first], axis=1))
    picks = [selector.select(context) for selector in (LeastConfidence(), Entropy(), Margin())]
    for selection in picks[1:]:
        np.testing.assert_array_equal(selection.indices, picks[0].indices)
        np.testing.assert_array_equal(np.argsort(-selection.scores, kind="stable"),
                                      np.argsort(-picks[0].scores, kind="stable"))


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        create_selector("least_confidence", {"k": "3"})
