"""k-center greedy keeps the point farthest from the chosen centers, one at a time (Sener & Savarese 2018)."""

import itertools

import numpy as np
import pytest
import torch
from benchmark.methods.kcenter_greedy import KCenterGreedy, k_center_order

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection

# A (0, 0), B (1, 0), C (10, 0), D (0, 5), E (10, 1)
PLANE = np.array([[0, 0], [1, 0], [10, 0], [0, 5], [10, 1]], np.float32)


def _radius(points, centers):
    """The covering radius: the largest distance from a point to its nearest center."""
    return np.linalg.norm(points[:, None, :] - points[None, list(centers), :], axis=2).min(1).max()


def test_the_picks_on_a_small_plane_worked_by_hand():
    # from A: squared distances B 1, C 100, D 25, E 101 -> E (position 4)
    # with E: B min(1, 82) = 1, C min(100, 1) = 1, D min(25, 116) = 25 -> D (position 3)
    # with D: B min(1, 26) = 1, C min(1, 125) = 1: a tie between B and C -> the lower position, B (1)
    assert k_center_order(torch.tensor(PLANE), 4, first=0).tolist() == [0, 4, 3, 1]
    # from C: A 100, B 81, D 125, E 1 -> D (3); with D: A min(100, 25) = 25, B min(81, 26) = 26, E 1 -> B (1)
    assert k_center_order(torch.tensor(PLANE), 3, first=2).tolist() == [2, 3, 1]


def test_the_first_center_is_drawn_with_the_context_rng():
    for seed in range(5):
        context = SelectionContext.from_arrays(labels=[0] * 5, budget=3, embeddings=PLANE, seed=seed)
        twin = SelectionContext.from_arrays(labels=[0] * 5, budget=3, embeddings=PLANE, seed=seed)
        first = int(twin.rng.integers(5))  # the documented draw: uniform over the group's positions
        selection = validate_selection(KCenterGreedy().select(context), context, "kcenter_greedy")
        assert selection.indices.tolist() == sorted(k_center_order(torch.tensor(PLANE), 3, first).tolist())


def test_the_covering_radius_is_at_most_twice_the_optimum():
    rng = np.random.default_rng(0)
    for trial in range(3):
        points = rng.normal(size=(12, 2)) * rng.uniform(0.5, 4.0, size=(12, 1))
        for k in (2, 3, 4):
            best = min(_radius(points, centers) for centers in itertools.combinations(range(12), k))
            for first in range(12):  # the guarantee holds from any first center
                greedy = _radius(points, k_center_order(torch.tensor(points, dtype=torch.float32), k, first))
                assert greedy <= 2 * best + 1e-5, (trial, k, first)


def test_each_class_gets_its_own_centers_and_a_seed_fixes_the_picks():
    rng = np.random.default_rng(2)
    embeddings = np.concatenate([rng.normal(size=(20, 3)), rng.normal(size=(20, 3)) + 5]).astype(np.float32)
    labels = np.repeat([0, 1], 20)

    def select(seed):
        context = SelectionContext.from_arrays(labels=labels, budget=8, class_budgets=[3, 5],
                                               embeddings=embeddings, seed=seed)
        return KCenterGreedy().select(context).indices

    first = select(4)
    assert np.bincount(labels[first]).tolist() == [3, 5]
    np.testing.assert_array_equal(first, select(4))
    assert len({tuple(select(seed)) for seed in range(6)}) > 1  # the first center is random


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'first'"):
        create_selector("kcenter_greedy", {"first": 0})
