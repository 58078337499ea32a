"""GRAD-MATCH (Killamsetty et al. 2021): non-negative orthogonal matching pursuit of the group's summed last-layer
gradient, min_{w >= 0} ||sum_i g_i - sum_{j in S} w_j g_j||^2 + lam ||w||^2, exactly `budget` points per group."""

import numpy as np
import pytest
from benchmark.methods.gradmatch import GradMatch
from scipy.optimize import nnls

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection


def test_the_point_that_reproduces_the_target_is_picked_first_with_the_ridge_weight():
    # One class (of two), 1-D embeddings h = -1, 0, 1 and probabilities of the wrong class q = 0.25, 0.5, 0.25:
    # e = p - onehot(0) = q (-1, 1), so g = [e, e h] = q [-1, 1, -h, h]:
    #   g0 = 0.25 [-1, 1, 1, -1], g1 = 0.5 [-1, 1, 0, 0], g2 = 0.25 [-1, 1, -1, 1],
    # and the target b = g0 + g1 + g2 = [-1, 1, 0, 0] = 2 g1. Correlations <g_i, b> = 0.5, 1, 0.5: point 1 first,
    # with the ridge weight argmin_w ||b - w g1||^2 + lam w^2 = <g1, b> / (||g1||^2 + lam) = 1 / (0.5 + lam):
    # 1 at lam = 0.5, and 2 (b exactly) as lam -> 0.
    q = np.array([0.25, 0.5, 0.25])
    context_args = dict(labels=[0, 0, 0], num_classes=2, budget=1, probabilities=np.stack([1 - q, q], 1),
                        embeddings=np.array([[-1.0], [0.0], [1.0]], np.float32))
    for lam, weight in [(0.5, 1.0), (1e-9, 2.0)]:
        context = SelectionContext.from_arrays(**context_args)
        selection = validate_selection(GradMatch(lam=lam).select(context), context, "gradmatch")
        assert selection.indices.tolist() == [1]
        np.testing.assert_allclose(selection.weights, [weight], rtol=1e-6)


def _stalling_context(seed=0):
    # class 0: point 0 is misclassified, points 1-4 are predicted with certainty (p = onehot(y)), so their
    # gradients are 0; class 1 likewise with point 5 and points 6-9
    probabilities = np.tile([1.0, 0.0], (10, 1))
    probabilities[5:] = [0.0, 1.0]
    probabilities[[0, 5]] = [[0.2, 0.8], [0.7, 0.3]]
    embeddings = np.arange(20, dtype=np.float32).reshape(10, 2) / 10
    return SelectionContext.from_arrays(labels=np.repeat([0, 1], 5), budget=6, seed=seed,
                                        embeddings=embeddings, probabilities=probabilities)


def test_exactly_the_budget_when_the_residual_vanishes_early():
    # In each class the target is the one non-zero gradient g: the pursuit picks it (weight ||g||^2 / (||g||^2
    # + lam)), after which every other point's residual correlation is 0 and no non-negative weight can
    # help: it stops after one point. Two more points per class are drawn at random with weight 1, as CORDS
    # does. DeepCore keeps only the points with non-zero weights: 2 indices for a budget of 6.
    context = _stalling_context()
    selection = validate_selection(GradMatch().select(context), context, "gradmatch")
    assert len(selection.indices) == 6
    assert np.bincount(context.labels[selection.indices]).tolist() == [3, 3]
    gradients = context.gradient_embeddings().double().numpy()
    for point in (0, 5):
        squared = gradients[point] @ gradients[point]
        assert point in selection.indices
        np.testing.assert_allclose(selection.weights[selection.indices == point], squared / (squared + 0.5))
    assert (selection.weights[~np.isin(selection.indices, [0, 5])] == 1.0).all()


def test_the_random_fill_is_deterministic_for_a_seed():
    def fill(seed):
        return GradMatch().select(_stalling_context(seed)).indices.tolist()

    assert fill(3) == fill(3)
    assert len({tuple(fill(seed)) for seed in range(8)}) > 1


def _random_context(n=60, budget=24, balance=True, seed=0):
    # embeddings of both signs, so that least squares on the gradients wants negative weights
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, 3)) * 2
    return SelectionContext.from_arrays(
        labels=np.arange(n) % 3, budget=budget, embeddings=rng.normal(size=(n, 5)).astype(np.float32),
        probabilities=np.exp(logits) / np.exp(logits).sum(1, keepdims=True), balance=balance)


def _plain_pursuit(gradients, budget, lam):
    """Lawson-Hanson NNLS of the summed gradient with OMP's entering rule, on the explicit gradient vectors,
    every least squares solved from scratch; stops at `budget` points or when nothing correlates positively.
    Returns the support, its weights and how many points left the support on the way."""
    target = gradients.sum(0)
    support, weights, left = [], np.zeros(0), 0
    while len(support) < budget:
        residual = target - weights @ gradients[support]
        correlations = gradients @ residual
        correlations[support] = -np.inf
        j = int(np.argmax(correlations))
        if correlations[j] <= 1e-10 * np.abs(gradients @ target).max():
            break
        support, previous = support + [j], np.append(weights, 0.0)
        while True:
            block = gradients[support]
            current = np.linalg.solve(block @ block.T + lam * np.eye(len(support)), block @ target)
            if current.min() > 0:
                weights = current
                break
            blocking = current <= 0
            step = (previous[blocking] / (previous[blocking] - current[blocking])).min()
            previous = previous + step * (current - previous)
            previous[np.isclose(previous, 0, atol=1e-12)] = 0.0
            left += int((previous <= 0).sum())
            support = [s for s, w in zip(support, previous) if w > 0]
            previous = previous[previous > 0]
    return support, weights, left


@pytest.mark.parametrize("balance", [True, False])
def test_equals_a_plain_nonnegative_pursuit_on_the_gradient_vectors(balance):
    lam = 0.05  # a small ridge, so that non-negativity binds and points leave the support
    context = _random_context(balance=balance)
    gradients = context.gradient_embeddings().double().numpy()  # the C + C*D wide vectors themselves
    selection = validate_selection(GradMatch(lam=lam).select(context), context, "gradmatch")
    assert len(selection.indices) == context.budget
    assert (selection.weights > 0).all()
    departures = 0
    for indices, budget in context.groups():
        support, weights, left = _plain_pursuit(gradients[indices], budget, lam)
        assert len(support) == budget  # nothing stalls here: no random fill
        departures += left
        picked = indices[support]
        order = np.argsort(picked)
        assert selection.indices[np.isin(selection.indices, indices)].tolist() == picked[order].tolist()
        # (the selector's Gram takes its products in float32: weights agree to a few parts in 1e4 where the pool's
        # cross-class block makes the ridge system less well conditioned)
        np.testing.assert_allclose(selection.weights[np.isin(selection.indices, indices)], weights[order],
                                   rtol=1e-3)
        # and they are the non-negative ridge solution on the selected points: NNLS of [A_S; sqrt(lam) I] w ~ [b; 0]
        block = gradients[picked].T
        stacked = np.vstack([block, np.sqrt(lam) * np.eye(budget)])
        reference, _ = nnls(stacked, np.concatenate([gradients[indices].sum(0), np.zeros(budget)]))
        np.testing.assert_allclose(weights, reference, rtol=1e-6)
    assert departures > 0  # the path took points out of the support, so that part is checked too


def test_weights_stay_positive_where_plain_ridge_pursuit_goes_negative():
    # the same pool, unbalanced: OMP refitting unconstrained ridge weights ends with negative ones
    lam = 0.05
    context = _random_context(balance=False)
    gradients = context.gradient_embeddings().double().numpy()
    indices, budget = next(context.groups())
    block = gradients[indices]
    target = block.sum(0)
    unconstrained, picked = [], []
    for _ in range(budget):  # plain ridge OMP, for contrast
        weights = unconstrained[-1] if unconstrained else np.zeros(0)
        correlations = block @ (target - weights @ block[picked])
        correlations[picked] = -np.inf
        picked.append(int(np.argmax(correlations)))
        rows = block[picked]
        unconstrained.append(np.linalg.solve(rows @ rows.T + lam * np.eye(len(picked)), rows @ target))
    assert unconstrained[-1].min() < 0
    selection = GradMatch(lam=lam).select(context)
    assert len(selection.indices) == budget and (selection.weights > 0).all()
    assert sorted(selection.indices.tolist()) != sorted(indices[picked].tolist())


def test_a_budget_equal_to_the_class_takes_the_whole_class_with_weight_one():
    context = SelectionContext.from_arrays(labels=[0, 0, 1, 1, 1], budget=4, class_budgets=[2, 2],
                                           embeddings=np.eye(5, 3, dtype=np.float32),
                                           probabilities=np.full((5, 2), 0.5))
    selection = validate_selection(GradMatch().select(context), context, "gradmatch")
    assert selection.indices[:2].tolist() == [0, 1] and selection.weights[:2].tolist() == [1.0, 1.0]
    assert len(selection.indices) == 4


@pytest.mark.parametrize("lam", [0, -1])
def test_a_non_positive_lam_is_a_clear_error(lam):
    with pytest.raises(UserError, match="lam must be positive"):
        create_selector("gradmatch", {"lam": lam})
