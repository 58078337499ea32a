"""D2 Pruning: forward message passing over a k-NN graph, then greedy picks with reverse message passing
(Maharana, Yadav & Bansal 2024)."""

import math

import numpy as np
import pytest
import torch
from benchmark.methods.ccs import nearest_rate
from benchmark.methods.d2_pruning import D2_BETA, D2Pruning

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, TrainingDynamics, create_selector, validate_selection

LN2 = math.log(2.0)  # gamma = ln 2 makes every edge weight exp(-gamma d) = 2^-d, exact for integer distances


def _forgetting_dynamics(counts, margins=None) -> TrainingDynamics:
    """9 epochs in which point i is forgotten counts[i] times: (correct, wrong) counts[i] times, then correct."""
    epochs = 9
    correct = torch.ones(epochs, len(counts), dtype=torch.bool)
    for i, count in enumerate(counts):
        correct[1:2 * count:2, i] = False
    margin = torch.ones(epochs, len(counts)) if margins is None else torch.tensor(margins).repeat(epochs, 1)
    return TrainingDynamics(correct=correct, margin=margin.float(), loss=torch.ones(epochs, len(counts)))


# Five points on a line at 0, 1, 3, 4, 6 with forgetting counts 1, 2, 3, 1, 4, and k = 1. Nearest neighbours:
# 0 -> 1, 1 -> 0, 2 -> 3, 3 -> 2, 4 -> 3 (distance 2), so the symmetrised graph has the edges 0-1 (d 1),
# 2-3 (d 1) and 3-4 (d 2).
POSITIONS = np.array([[0.0], [1.0], [3.0], [4.0], [6.0]], np.float32)
COUNTS = [1, 2, 3, 1, 4]


def _context(budget, **overrides) -> SelectionContext:
    arrays = dict(labels=[0] * 5, budget=budget, embeddings=POSITIONS, training_dynamics=_forgetting_dynamics(COUNTS))
    return SelectionContext.from_arrays(**{**arrays, **overrides})


def test_the_forward_pass_and_the_pick_order_on_a_hand_worked_graph():
    # forward, s_i + sum_j 2^-d s_j: node 0: 1 + 2/2 = 2; node 1: 2 + 1/2 = 2.5; node 2: 3 + 1/2 = 3.5;
    # node 3: 1 + 3/2 + 4/4 = 3.5; node 4: 4 + 1/4 = 4.25
    selector = D2Pruning(k=1, gamma_forward=LN2, gamma_reverse=LN2, beta="0")
    context = _context(budget=3)
    selection = validate_selection(selector.select(context), context, "d2_pruning")
    np.testing.assert_allclose(selection.scores, [2.0, 2.5, 3.5, 3.5, 4.25])
    # picks: node 4 (4.25), lowering node 3 by 4.25 / 4 to 2.4375; node 2 (3.5; 3.5 > 2.5), lowering node 3 by
    # 3.5 / 2 to 0.6875; node 1 (2.5), lowering node 0 by 2.5 / 2 to 0.75; node 0 (0.75 > 0.6875); node 3.
    # The budget takes the first picks.
    order = [4, 2, 1, 0, 3]
    for budget in range(1, 6):
        assert selector.select(_context(budget=budget)).indices.tolist() == sorted(order[:budget])
    # without reverse messages (gamma_reverse huge: weights ~0) the top three forward scores win, 3 over 1
    assert D2Pruning(k=1, gamma_forward=LN2, gamma_reverse=1e3, beta="0").select(context).indices.tolist() == [2, 3, 4]


def test_the_hard_cutoff_removes_the_lowest_aum_before_the_graph_is_built():
    # node 4 has the lowest AUM: beta 0.2 of 5 cuts it. The graph on nodes 0..3 has the edges 0-1 and 2-3:
    # forward 2, 2.5, 3.5, 1 + 3/2 = 2.5; picks node 2, lowering node 3 to 2.5 - 3.5 / 2 = 0.75, then node 1
    context = _context(budget=2, training_dynamics=_forgetting_dynamics(COUNTS, margins=[1.0, 1.0, 1.0, 1.0, -1.0]))
    selection = D2Pruning(k=1, gamma_forward=LN2, gamma_reverse=LN2, beta="0.2").select(context)
    assert selection.indices.tolist() == [1, 2]
    np.testing.assert_allclose(selection.scores, [2.0, 2.5, 3.5, 2.5, -np.inf])


def test_auto_beta_is_the_authors_value_at_90_percent_pruning():
    assert nearest_rate(D2_BETA, 0.9) == 0.4 and nearest_rate(D2_BETA, 0.5) == 0.0
    dynamics = _forgetting_dynamics([0] * 10, margins=np.linspace(-1.0, 1.0, 10).tolist())
    positions = np.array([0, 1, 2, 3, 10, 11, 11.5, 12.9, 16, 20], np.float32)[:, None]
    context = SelectionContext.from_arrays(labels=[0] * 10, budget=1, training_dynamics=dynamics, embeddings=positions)
    # 90 % pruning: the 4 lowest AUM (points 0..3) go first. All scores are 0, so the floor makes the point with
    # the nearest neighbours win. The symmetrised 2-NN graph of 4..9 gives point 5 (at 11) neighbours at 1, 0.5
    # and 1.9, sum of exp(-d) 1.125; point 6 (at 11.5) neighbours at 1.5, 0.5 and 1.4, 1.077; the others less
    assert D2Pruning(k=2).select(context).indices.tolist() == [5]


def test_groups_get_their_own_graphs():
    labels = np.array([0, 1, 0, 1, 0, 1, 0, 1, 0, 1])
    embeddings = np.arange(10, dtype=np.float32)[:, None]
    dynamics = _forgetting_dynamics([0, 4, 1, 3, 2, 2, 3, 1, 4, 0])
    context = SelectionContext.from_arrays(labels=labels, budget=4, embeddings=embeddings, training_dynamics=dynamics)
    selection = D2Pruning(beta="0").select(context)
    assert np.bincount(labels[selection.indices]).tolist() == [2, 2]
    assert {8, 1} <= set(selection.indices.tolist())  # the hardest of each class goes first


@pytest.mark.parametrize("params, message", [({"k": 0}, "k must be at least 1"),
                                             ({"gamma_reverse": -1.0}, "must be non-negative"),
                                             ({"score": "grand"}, "score must be one of"),
                                             ({"beta": "0.95x"}, "beta must be 'auto'")])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("d2_pruning", params)
