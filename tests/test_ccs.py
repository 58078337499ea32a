"""CCS removes the hardest points, then samples evenly over equal-width strata of the importance score (Zheng,
Liu, Lai & Prakash 2023)."""

import numpy as np
import pytest
import torch
from benchmark.methods.ccs import CCS, PAPER_BETA, allocate, nearest_rate

from benchmark.dynamics import importance
from benchmark.errors import UserError
from benchmark.selection import SelectionContext, TrainingDynamics, create_selector, validate_selection


def _dynamics(margins) -> TrainingDynamics:
    """Dynamics whose every epoch has the given margins (so AUM = margin)."""
    margin = torch.tensor(np.tile(np.asarray(margins, np.float32), (2, 1)))
    return TrainingDynamics(correct=margin > 0, margin=margin, loss=torch.nn.functional.softplus(-margin))


def _context(margins, budget, labels=None, **overrides) -> SelectionContext:
    labels = np.zeros(len(margins), int) if labels is None else labels
    return SelectionContext.from_arrays(labels=labels, budget=budget, training_dynamics=_dynamics(margins),
                                        **overrides)


# 20 AUM values over [0, 8]; 4 strata of width 2: [0, 2) holds 1 point, [2, 4) 2, [4, 6) 5 and [6, 8] 12
STRATA = [[0.0], [2.5, 3.0], [4.0, 4.5, 5.0, 5.5, 5.9], [6.0, 6.2, 6.4, 6.6, 6.8, 7.0, 7.2, 7.4, 7.6, 7.8, 7.9, 8.0]]
SCORES = np.concatenate(STRATA)
BIN = np.repeat(np.arange(4), [len(s) for s in STRATA])


def test_the_budget_goes_to_the_smallest_strata_first():
    # budget 8 over strata of sizes 1, 2, 5, 12, smallest first: min(1, 8 // 4 = 2) = 1, leaving 7;
    # min(2, 7 // 3 = 2) = 2, leaving 5; min(5, 5 // 2 = 2) = 2, leaving 3; min(12, 3 // 1) = 3
    context = _context(SCORES, budget=8)
    selection = validate_selection(CCS(beta="0", strata=4).select(context), context, "ccs")
    assert np.bincount(BIN[selection.indices], minlength=4).tolist() == [1, 2, 2, 3]
    np.testing.assert_allclose(selection.scores, SCORES, rtol=1e-6)  # AUM, the importance score
    # budget 12: 1 (12 // 4 = 3), 2 (11 // 3 = 3), min(5, 9 // 2) = 4, then the 5 left: a small stratum passes
    # on what it cannot take
    selection = CCS(beta="0", strata=4).select(_context(SCORES, budget=12))
    assert np.bincount(BIN[selection.indices], minlength=4).tolist() == [1, 2, 4, 5]


def test_allocate_skips_empty_strata_and_spends_the_whole_budget():
    assert allocate(np.array([0, 3, 0, 1, 10]), 9).tolist() == [0, 3, 0, 1, 5]  # 1, then min(3, 8 // 2), then 5
    assert allocate(np.array([4, 4, 4]), 10).tolist() == [3, 3, 4]
    assert allocate(np.array([2, 3]), 5).tolist() == [2, 3]


def test_the_hard_cutoff_removes_exactly_the_hardest_fraction():
    rng = np.random.default_rng(1)
    margins = rng.permutation(np.linspace(-3.0, 3.0, 20))
    lowest = np.argsort(margins)
    # beta 0.25 of 20: the 5 lowest AUM go; a budget of 15 then keeps exactly the other 15
    kept = CCS(beta="0.25").select(_context(margins, budget=15)).indices
    assert kept.tolist() == sorted(lowest[5:].tolist())
    # a budget of 18 leaves room for only 2 cuts: the two lowest go
    kept = CCS(beta="0.25").select(_context(margins, budget=18)).indices
    assert kept.tolist() == sorted(lowest[2:].tolist())
    # forgetting: the most forgotten are the hardest
    correct = torch.tensor([[1, 1, 1, 1, 0, 1], [0, 1, 0, 1, 0, 1], [1, 1, 1, 0, 0, 1], [0, 1, 0, 1, 0, 1]]).bool()
    dynamics = TrainingDynamics(correct=correct, margin=torch.zeros(4, 6), loss=torch.ones(4, 6))
    # forgetting counts: 2, 0, 2, 1, 4 (never learnt: E = 4), 0
    np.testing.assert_array_equal(importance(dynamics, "forgetting"), [2, 0, 2, 1, 4, 0])
    context = SelectionContext.from_arrays(labels=[0] * 6, budget=3, training_dynamics=dynamics)
    kept = CCS(score="forgetting", beta="0.5").select(context).indices
    assert kept.tolist() == [1, 3, 5]  # 4, then 0 and 2 (tied at 2: both go) are cut


def test_auto_beta_follows_the_paper_at_the_nearest_pruning_rate():
    assert nearest_rate(PAPER_BETA, 0.9) == 0.3 and nearest_rate(PAPER_BETA, 0.5) == 0.0
    assert nearest_rate(PAPER_BETA, 0.6) == 0.0  # halfway between 50 % and 70 %: the lower rate
    assert nearest_rate(PAPER_BETA, 0.75) == 0.1 and nearest_rate(PAPER_BETA, 0.99) == 0.3
    margins = np.linspace(-3.0, 3.0, 20)  # increasing: the 6 hardest are points 0..5
    for seed in range(5):  # 2 of 20 kept: 90 % pruning, so the hardest 30 % are never drawn
        assert CCS(strata=1).select(_context(margins, budget=2, seed=seed)).indices.min() >= 6


def test_el2n_stands_in_as_one_minus_the_label_probability():
    loss = torch.tensor([[0.0, np.log(2.0)], [np.log(4.0), np.log(2.0)]], dtype=torch.float32)
    dynamics = TrainingDynamics(correct=torch.ones(2, 2, dtype=torch.bool), margin=torch.zeros(2, 2), loss=loss)
    np.testing.assert_allclose(importance(dynamics, "el2n"), [(0.0 + 0.75) / 2, 0.5], rtol=1e-6)


def test_groups_are_cut_and_stratified_separately():
    margins = np.concatenate([np.linspace(-1.0, 1.0, 10), np.linspace(10.0, 12.0, 10)])
    labels = np.repeat([0, 1], 10)
    selection = CCS(beta="0.2").select(_context(margins, budget=8, labels=labels))
    assert np.bincount(labels[selection.indices]).tolist() == [4, 4]
    assert not set(selection.indices) & {0, 1, 10, 11}  # the two lowest AUM of each class


def test_same_seed_same_selection_and_seeds_differ():
    margins = np.random.default_rng(0).normal(size=300)
    draws = [CCS().select(_context(margins, budget=30, seed=seed)).indices.tolist() for seed in (0, 0, 1)]
    assert draws[0] == draws[1] and draws[0] != draws[2]


@pytest.mark.parametrize("params, message", [({"score": "loss"}, "score must be one of aum, forgetting, el2n"),
                                             ({"beta": "1.5"}, r"beta must be 'auto' or a number in \[0, 1\)"),
                                             ({"beta": "lots"}, "beta must be 'auto'"),
                                             ({"strata": 0}, "strata must be at least 1")])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("ccs", params)
