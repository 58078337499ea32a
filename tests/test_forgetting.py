"""Forgetting (Toneva et al. 2019): correct-to-incorrect transitions over the proxy's epochs, never-learnt
examples first, ties broken by the mean loss and then the pool index; the most forgotten are kept."""

import numpy as np
import pytest
import torch
from benchmark.methods.forgetting import Forgetting

from benchmark.dynamics import forgetting_counts
from benchmark.errors import UserError
from benchmark.selection import SelectionContext, TrainingDynamics, create_selector, validate_selection

# Rows are the 4 epochs, columns 6 points. Forgetting events (a 1 followed by a 0), by hand:
#   point 0: 1 1 1 1 -> 0 (unforgettable)        point 3: 0 1 0 1 -> 1 (at epoch 2)
#   point 1: 1 0 1 0 -> 2 (epochs 1 and 3)       point 4: 1 0 0 1 -> 1 (at epoch 1)
#   point 2: 0 0 0 0 -> never learnt: E = 4      point 5: 0 0 1 1 -> 0 (learnt late, kept)
CORRECT = np.array([[1, 1, 0, 0, 1, 0],
                    [1, 0, 0, 1, 0, 0],
                    [1, 1, 0, 0, 0, 1],
                    [1, 0, 0, 1, 1, 1]], dtype=bool)
COUNTS = [0, 2, 4, 1, 1, 0]
# the same loss at every epoch, so the mean loss of each point is this row: point 4 is harder than point 3
# (the tie at one event), points 0 and 5 tie on the loss too (then the lower index wins)
LOSS = np.array([0.1, 1.0, 2.0, 0.5, 0.7, 0.1])


def _dynamics(correct, loss):
    correct = torch.as_tensor(correct)
    return TrainingDynamics(correct=correct, margin=torch.zeros(correct.shape),
                            loss=torch.as_tensor(np.broadcast_to(loss, correct.shape).copy(), dtype=torch.float32))


def _select(budget, labels=(0,) * 6, balance=False, correct=CORRECT, loss=LOSS, **args):
    context = SelectionContext.from_arrays(labels=list(labels), budget=budget, balance=balance,
                                           training_dynamics=_dynamics(correct, loss), **args)
    return validate_selection(Forgetting().select(context), context, "forgetting")


def test_counts_and_order_of_a_hand_made_matrix():
    np.testing.assert_array_equal(forgetting_counts(torch.as_tensor(CORRECT)).numpy(), COUNTS)
    np.testing.assert_array_equal(_select(3).scores, COUNTS)
    assert _select(1).indices.tolist() == [2]  # never learnt: first
    assert _select(2).indices.tolist() == [1, 2]
    # points 3 and 4 are tied at one event: point 4 has the higher mean loss (0.7 > 0.5), so it goes first
    assert _select(3).indices.tolist() == [1, 2, 4]
    assert _select(4).indices.tolist() == [1, 2, 3, 4]
    # points 0 and 5 are tied at zero events and at the same loss: the lower index goes first
    assert _select(5).indices.tolist() == [0, 1, 2, 3, 4]


def test_a_never_learnt_example_outranks_the_most_forgotten_one():
    # DeepCore starts every example "incorrect" and counts 1 -> 0 steps only: a never-learnt example gets 0
    # events there and ranks with the unforgettable ones; the paper counts it as forgotten infinitely often.
    # Point 1 is forgotten E // 2 = 2 times, the most a learnt example can be in 4 epochs; point 2 never learnt.
    assert _select(1).indices.tolist() == [2]
    # even with a lower loss than every other point
    loss = LOSS.copy()
    loss[2] = 0.0
    assert _select(1, loss=loss).indices.tolist() == [2]


def test_balanced_selection_ranks_within_each_class():
    # class 0: points 0-2, class 1: points 3-5; class budgets 1 and 2. Class 0: point 2 (never learnt).
    # Class 1: counts 1, 1, 0 -> points 3 and 4 (both one event; the loss orders them, both are kept).
    selection = _select(3, labels=(0, 0, 0, 1, 1, 1), balance=True, class_budgets=[1, 2])
    assert selection.indices.tolist() == [2, 3, 4]
    # budgets 2 and 1: class 0 keeps 2 then 1; class 1 keeps point 4 over point 3 by the loss
    selection = _select(3, labels=(0, 0, 0, 1, 1, 1), balance=True, class_budgets=[2, 1])
    assert selection.indices.tolist() == [1, 2, 4]


def test_a_single_epoch_has_no_transitions():
    correct = np.array([[1, 0, 1]], dtype=bool)
    np.testing.assert_array_equal(forgetting_counts(torch.as_tensor(correct)).numpy(), [0, 1, 0])


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'epochs'"):
        create_selector("forgetting", {"epochs": "3"})
