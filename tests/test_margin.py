"""Margin keeps the points whose two most probable classes are closest (the uncertainty criteria grouped
under Coleman et al. 2020), in both the balanced and the unbalanced mode."""

import numpy as np
import pytest
from benchmark.methods.margin import Margin

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection

P = np.array([[0.9, 0.05, 0.05], [0.4, 0.3, 0.3], [0.5, 0.5, 0.0], [0.7, 0.2, 0.1]])


def test_the_smallest_gaps_are_kept_over_the_pool():
    # by hand, top-two gaps: 0.85, 0.1, 0.0, 0.5, so scores -0.85, -0.1, 0, -0.5; the most uncertain is point 2
    # (a tie between two classes; least confidence and entropy put point 1 first), then point 1; a reversed
    # ranking would keep 0 and 3
    context = SelectionContext.from_arrays(labels=[0, 1, 2, 0], budget=1, probabilities=P, balance=False)
    selection = validate_selection(Margin().select(context), context, "margin")
    np.testing.assert_allclose(selection.scores, [-0.85, -0.1, 0.0, -0.5], atol=1e-6)
    assert selection.indices.tolist() == [2]
    context = SelectionContext.from_arrays(labels=[0, 1, 2, 0], budget=2, probabilities=P, balance=False)
    assert Margin().select(context).indices.tolist() == [1, 2]


def test_the_smallest_gaps_are_kept_per_class():
    # class 0 holds P's rows in order (points 0-3), class 1 the same rows reversed (points 4-7): the smallest
    # gap of each class is row 2 of P, i.e. points 2 and 5; a reversed ranking would keep 0 and 7
    labels = np.repeat([0, 1], 4)
    context = SelectionContext.from_arrays(labels=labels, budget=2, probabilities=np.concatenate([P, P[::-1]]))
    assert Margin().select(context).indices.tolist() == [2, 5]


def test_the_gap_ignores_the_label():
    # the top two of [0.1, 0.6, 0.3] are 0.6 and 0.3 (gap 0.3), of [0.1, 0.85, 0.05] 0.85 and 0.1 (gap 0.75),
    # whatever the label (class 0) says
    context = SelectionContext.from_arrays(labels=[0, 0], budget=1, num_classes=3,
                                           probabilities=[[0.1, 0.6, 0.3], [0.1, 0.85, 0.05]])
    np.testing.assert_allclose(Margin().select(context).scores, [-0.3, -0.75], atol=1e-6)


def test_one_class_has_no_margin():
    context = SelectionContext.from_arrays(labels=[0, 0], budget=1, probabilities=[[1.0], [1.0]])
    with pytest.raises(UserError, match="at least two classes"):
        Margin().select(context)


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        create_selector("margin", {"k": "3"})
