"""CRAIG (Mirzasoleiman et al. 2020): the greedy maximiser of F(S) = sum_i max_{j in S} (C - d_ij) on the
distances between last-layer gradients, each selected point weighted by the size of its cluster."""

import numpy as np
import pytest
from benchmark.methods.craig import Craig

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection


def _line(positions, budget):
    # one class (of two), every point predicted p = (0.5, 0.5), so e = p - onehot(0) = (-0.5, 0.5) for all and
    # the gradient [e, e h] of a 1-D embedding h is 0.5 * [-1, 1, -h, h]: ||g_i - g_j|| = |h_i - h_j| / sqrt(2),
    # and CRAIG becomes facility location on the line
    n = len(positions)
    return SelectionContext.from_arrays(labels=np.zeros(n, int), num_classes=2, budget=budget,
                                        embeddings=np.asarray(positions, np.float32)[:, None],
                                        probabilities=np.full((n, 2), 0.5))


def test_greedy_picks_and_cluster_sizes_on_a_line():
    # h = 0 1 2 | 9 10 11 12 (indices 0..6), budget 2. Maximising F = sum_i max_S (C - d_ij) is minimising
    # the summed distance of every point to its nearest pick. One pick: the sums (in units of 1/sqrt 2) are
    # 45 40 37 | 30 31 34 39, so index 3 (h = 9) first. With it, the points' distances are 9 8 7 0 1 2 3; a
    # second pick at h = 1 lowers them to 1 0 1 0 1 2 3 (sum 8), better than h = 0 or 2 (9) or any far point.
    # Clusters: {0, 1, 2} -> index 1 (weight 3), {9, 10, 11, 12} -> index 3 (weight 4). (The greedy is not
    # the optimum: {h = 1, h = 10} would sum to 6.)
    context = _line([0, 1, 2, 9, 10, 11, 12], budget=2)
    selection = validate_selection(Craig().select(context), context, "craig")
    assert selection.indices.tolist() == [1, 3]
    # DeepCore attaches 1 + cluster size, in pool order, to the points in greedy order: 5 to index 1, 4 to 3
    assert selection.weights.tolist() == [3.0, 4.0]


def test_a_selected_duplicate_keeps_weight_at_least_one():
    # h = 0 0 0 5, budget 3: the greedy takes a point at 0 and the point at 5, then every gain is 0 and it may
    # take a second 0. The third 0 is as near to both selected 0s; each selected 0 still represents itself.
    context = _line([0, 0, 0, 5], budget=3)
    selection = validate_selection(Craig().select(context), context, "craig")
    assert 3 in selection.indices
    assert sorted(selection.weights.tolist()) == [1.0, 1.0, 2.0]


def _random_context(n=24, budget=8, balance=True, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 2
    return SelectionContext.from_arrays(
        labels=np.arange(n) % 3, budget=budget, embeddings=rng.normal(size=(n, 4)).astype(np.float32),
        probabilities=np.exp(logits) / np.exp(logits).sum(1, keepdims=True), balance=balance)


def _plain_greedy(distances, budget):
    """F evaluated from scratch for every candidate at every step; also the smallest margin between the best
    gain and the next (a near tie would make the comparison a matter of rounding)."""
    similarity = distances.max() - distances

    def f(subset):
        return similarity[:, subset].max(1).sum() if subset else 0.0

    chosen, margin = [], np.inf
    while len(chosen) < budget:
        gains = sorted(((f(chosen + [k]) - f(chosen), k) for k in range(len(distances)) if k not in chosen),
                       reverse=True)
        margin = min(margin, gains[0][0] - gains[1][0])
        chosen.append(gains[0][1])
    return chosen, margin


@pytest.mark.parametrize("balance", [True, False])
def test_equals_a_plain_greedy_of_the_facility_location(balance):
    context = _random_context(balance=balance, seed=1)  # a seed without near ties between gains
    gradients = context.gradient_embeddings().double().numpy()  # the C + C*D wide vectors themselves
    expected_indices, expected_weights = [], []
    for indices, budget in context.groups():
        distances = np.linalg.norm(gradients[indices, None] - gradients[None, indices], axis=2)
        picks, margin = _plain_greedy(distances, budget)
        assert margin > 1e-6
        nearest = np.asarray(picks)[distances[np.ix_(picks, range(len(indices)))].argmin(0)]
        expected_indices += indices[picks].tolist()
        expected_weights += [float((nearest == p).sum()) for p in picks]
    selection = validate_selection(Craig().select(context), context, "craig")
    order = np.argsort(expected_indices)
    assert selection.indices.tolist() == np.asarray(expected_indices)[order].tolist()
    assert selection.weights.tolist() == np.asarray(expected_weights)[order].tolist()
    for indices, _ in context.groups():  # every point is counted once, in its group
        assert selection.weights[np.isin(selection.indices, indices)].sum() == len(indices)
    assert (selection.weights >= 1).all()


def test_a_budget_equal_to_the_class_takes_the_whole_class():
    context = SelectionContext.from_arrays(labels=[0, 0, 1, 1, 1], budget=3, class_budgets=[2, 1],
                                           embeddings=np.eye(5, 3, dtype=np.float32),
                                           probabilities=np.full((5, 2), 0.5))
    selection = Craig().select(context)
    assert selection.indices[:2].tolist() == [0, 1] and selection.weights[:2].tolist() == [1.0, 1.0]
    assert selection.weights[2] == 3.0


def test_it_has_no_parameters():
    with pytest.raises(UserError, match="has no parameter 'k'"):
        create_selector("craig", {"k": 3})


def test_a_group_too_large_for_a_dense_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("benchmark.methods.craig.MAX_GROUP_SIZE", 10)
    with pytest.raises(UserError, match="without --unbalanced"):
        Craig().select(_random_context(balance=False))
