"""AUM (Pleiss et al. 2020): the mean margin over the proxy's epochs; as a coreset selector the LOWEST AUM (the
hardest points) are kept."""

import numpy as np
import pytest
import torch
from benchmark.methods.aum import AUM

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, TrainingDynamics, create_selector, validate_selection

# Rows are 3 epochs, columns 5 points; the AUM is the column mean, by hand:
#   point 0: 2, 3, 4 -> 3 (easy)            point 3: 0, 0, 1 -> 1/3 (ties with point 1)
#   point 1: -1, 0.5, 1.5 -> 1/3            point 4: 1, -1, 0 -> 0
#   point 2: -2, -1, -3 -> -2 (the label is argued against throughout: hard or mislabelled)
MARGIN = np.array([[2.0, -1.0, -2.0, 0.0, 1.0],
                   [3.0, 0.5, -1.0, 0.0, -1.0],
                   [4.0, 1.5, -3.0, 1.0, 0.0]])
AUM_BY_HAND = [3.0, 1 / 3, -2.0, 1 / 3, 0.0]


def _select(budget, labels=(0,) * 5, balance=False, **args):
    margin = torch.as_tensor(MARGIN, dtype=torch.float32)
    # `correct` and `loss` are made to disagree with the margin: AUM must read the margin only
    dynamics = TrainingDynamics(correct=margin < 0, margin=margin, loss=margin.clone())
    context = SelectionContext.from_arrays(labels=list(labels), budget=budget, balance=balance,
                                           training_dynamics=dynamics, **args)
    return validate_selection(AUM().select(context), context, "aum")


def test_the_lowest_aum_is_kept_over_the_pool():
    selection = _select(2)
    np.testing.assert_allclose(selection.scores, AUM_BY_HAND, rtol=1e-7)
    assert selection.indices.tolist() == [2, 4]  # keeping the highest AUM would give [0, 1]
    # points 1 and 3 tie at 1/3: the lower index goes first
    assert _select(3).indices.tolist() == [1, 2, 4]
    assert _select(1).indices.tolist() == [2]


def test_the_lowest_aum_is_kept_per_class():
    # class 0: points 0-1 (AUM 3, 1/3), class 1: points 2-4 (AUM -2, 1/3, 0); budgets 1 and 2
    selection = _select(3, labels=(0, 0, 1, 1, 1), balance=True, class_budgets=[1, 2])
    assert selection.indices.tolist() == [1, 2, 4]


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'epochs'"):
        create_selector("aum", {"epochs": "3"})
