"""Herding keeps the points whose running mean tracks the group's mean embedding (Welling 2009; Chen et al. 2010)."""

import numpy as np
import pytest
import torch
from benchmark.methods.herding import Herding, herding_order

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection

LINE = np.array([[0.0], [2.0], [3.0], [7.0]], np.float32)  # one class on a line, mean mu = 3


def _deepcore_order(points, budget):
    """DeepCore's rule: the same residual (t + 1) mu - sum_S h, but the argmax of the distance to it."""
    points = np.asarray(points, np.float64)
    mu, order = points.mean(0), []
    for t in range(budget):
        residual = (t + 1) * mu - points[order].sum(0)
        distances = np.linalg.norm(points - residual, axis=1)
        distances[order] = -np.inf
        order.append(int(np.argmax(distances)))
    return order


def test_the_order_on_a_line_worked_by_hand():
    # mu = 3. t = 0: target 1 * 3 = 3, distances |3 - x| = 3, 1, 0, 4 -> x = 3 (position 2)
    # t = 1: target 2 * 3 - 3 = 3, remaining 0, 2, 7 at distances 3, 1, 4 -> x = 2 (position 1)
    # t = 2: target 3 * 3 - 5 = 4, remaining 0, 7 at distances 4, 3 -> x = 7 (position 3); then 0 is left
    assert herding_order(torch.tensor(LINE), 4).tolist() == [2, 1, 3, 0]
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 0], budget=2, embeddings=LINE)
    selection = validate_selection(Herding().select(context), context, "herding")
    assert selection.indices.tolist() == [1, 2]  # the first two picks, 3 and 2


def test_deepcore_takes_the_farthest_point_instead():
    # DeepCore: t = 0: the farthest from 3 is 7 (position 3); t = 1: target 6 - 7 = -1, farthest of 0, 2, 3 is
    # 3 (position 2); t = 2: target 9 - 10 = -1, farthest of 0, 2 is 2 (position 1)
    assert _deepcore_order(LINE, 4) == [3, 2, 1, 0]
    assert herding_order(torch.tensor(LINE), 4).tolist() != [3, 2, 1, 0]
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 0], budget=1, embeddings=LINE)
    assert Herding().select(context).indices.tolist() == [2]  # the point at the mean, not the outlier 7


def test_ties_go_to_the_lowest_index():
    # 0, 2, 4 (mu = 2): first 2 (position 1); then target 2 * 2 - 2 = 2, and 0 and 4 are both 2 away: 0 first
    assert herding_order(torch.tensor([[0.0], [2.0], [4.0]]), 3).tolist() == [1, 0, 2]


def test_each_class_is_herded_towards_its_own_mean():
    # class 0 is LINE (first pick position 2); class 1 is 10, 12, 20 (mean 14, first pick 12, position 5).
    # Against the pool mean (54 / 7 = 7.71) class 1 would start from 10 (position 4).
    embeddings = np.concatenate([LINE, [[10.0], [12.0], [20.0]]]).astype(np.float32)
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 0, 1, 1, 1], budget=2, class_budgets=[1, 1],
                                           embeddings=embeddings)
    assert Herding().select(context).indices.tolist() == [2, 5]


def test_equals_a_plain_greedy_on_the_mean_discrepancy():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(30, 5)) * rng.uniform(0.5, 3.0, size=(30, 1))  # unequal norms
    mu, order = points.mean(0), []
    for _ in range(12):  # from scratch: the candidate whose addition puts the mean of the picks nearest mu
        gaps = {x: np.linalg.norm(points[order + [x]].mean(0) - mu) for x in range(30) if x not in order}
        order.append(min(gaps, key=gaps.get))
    assert herding_order(torch.tensor(points, dtype=torch.float32), 12).tolist() == order


def test_the_mean_of_the_picks_approaches_the_group_mean():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(200, 4))
    order = herding_order(torch.tensor(points, dtype=torch.float32), 40)
    gaps = [np.linalg.norm(points[order[:t]].mean(0) - points.mean(0)) for t in (10, 40)]
    random_gaps = [np.linalg.norm(points[rng.choice(200, 40, replace=False)].mean(0) - points.mean(0))
                   for _ in range(20)]
    assert gaps[1] < gaps[0] and gaps[1] < min(random_gaps)


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        create_selector("herding", {"k": 3})
