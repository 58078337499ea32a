"""Log-determinant's greedy equals a plain greedy on f(S) = log det(K_S + lam I) with K the cosine Gram
of gradient (or proxy) embeddings."""

import numpy as np
import pytest
import torch
from benchmark.methods.log_determinant import LogDeterminant, greedy_log_determinant

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection


def _context(n=16, budget=8, balance=False, seed=0):
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    logits = rng.normal(size=(n, 3)) * 2
    return SelectionContext.from_arrays(
        labels=labels, budget=budget, num_classes=3, embeddings=rng.normal(size=(n, 4)).astype(np.float32),
        probabilities=np.exp(logits) / np.exp(logits).sum(1, keepdims=True), balance=balance)


def _cosines(vectors):
    vectors = np.asarray(vectors, np.float64)
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    return unit @ unit.T


def _gains(k, chosen, lam):
    """log det(K_{S + x} + lam I) - log det(K_S + lam I) for every x not in S, from scratch with numpy."""
    def f(subset):
        return np.linalg.slogdet(k[np.ix_(subset, subset)] + lam * np.eye(len(subset)))[1] if subset else 0.0

    return {x: f(chosen + [x]) - f(chosen) for x in range(len(k)) if x not in chosen}


def _is_a_greedy_outcome(k, selected, lam, chosen=(), tolerance=1e-5):
    """Whether the plain greedy can end in `selected`: at each step some candidate of (nearly) largest gain is in
    it, trying every such candidate in turn. The first step is always a tie (every K_xx + lam is 1 + lam), which
    the selector gives to the first position."""
    if len(chosen) == len(selected):
        return True
    gains = _gains(k, list(chosen), lam)
    best = max(gains.values())
    return any(_is_a_greedy_outcome(k, selected, lam, (*chosen, x), tolerance)
               for x, gain in gains.items() if gain >= best - tolerance and x in set(selected))


def test_the_picks_on_four_directions_worked_by_hand():
    # 0: e1 + e2, 1: e1, 2: e2, 3: e3; lam = 1. Cosines: 0-1 and 0-2 are 1/sqrt(2), every other pair 0.
    # Step 1: every gain is log(1 + 1) = log 2, a tie that goes to the first position, 0.
    # Step 2: the gain of x is log(2 - K_x0^2 / 2): 1 -> log 1.75, 2 -> log 1.75, 3 -> log 2: take 3 (e3).
    embeddings = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32)
    context = SelectionContext.from_arrays(labels=[0] * 4, budget=2, embeddings=embeddings)
    selection = validate_selection(LogDeterminant(features="embeddings").select(context), context,
                                   "log_determinant")
    assert selection.indices.tolist() == [0, 3]
    k = _cosines(embeddings)
    np.fill_diagonal(k, 1.0)  # as the selector does: an exact tie, not one decided by rounding
    positions, gains = greedy_log_determinant(torch.as_tensor(k), 2, 1.0)
    assert positions.tolist() == [0, 3] and np.allclose(gains, [np.log(2), np.log(2)])
    # DeepCore scores a candidate by the part of it that S explains, K_x0^2 / K_00: 1 -> 0.5, 2 -> 0.5, 3 -> 0,
    # and its greedy takes the largest, 1: the point most similar to the one already picked
    explained = {x: _cosines(embeddings)[x, 0] ** 2 for x in (1, 2, 3)}
    assert max(explained, key=explained.get) == 1


def test_gains_are_the_increments_of_the_log_determinant():
    k = _cosines(np.random.default_rng(3).normal(size=(30, 5)))
    positions, gains = greedy_log_determinant(torch.as_tensor(k), 12, 0.5)
    for t in range(1, 13):
        subset = positions[:t]
        assert np.isclose(gains[:t].sum(), np.linalg.slogdet(k[np.ix_(subset, subset)] + 0.5 * np.eye(t))[1])
    assert _is_a_greedy_outcome(k, positions.tolist(), 0.5)


@pytest.mark.parametrize("lam", [1.0, 0.3])
@pytest.mark.parametrize("features", ["gradients", "embeddings"])
def test_equals_a_plain_greedy_of_the_objective(lam, features):
    context = _context()  # 8 picks of 16 points in 4 dimensions: K has rank 4, K_S + lam I is still invertible
    vectors = context.gradient_embeddings() if features == "gradients" else context.embeddings()
    k = _cosines(vectors.numpy())
    assert len(set(np.round(list(_gains(k, [], lam).values()), 12))) == 1  # step 1: a tie
    selection = validate_selection(LogDeterminant(lam=lam, features=features).select(context), context,
                                   "log_determinant")
    assert _is_a_greedy_outcome(k, selection.indices.tolist(), lam)
    assert not _is_a_greedy_outcome(k, list(range(8)), lam)  # the check can fail


def test_balanced_greedy_runs_within_each_class():
    context = _context(n=20, budget=6, balance=True, seed=1)
    k = _cosines(context.gradient_embeddings().numpy())
    selected = LogDeterminant().select(context).indices
    for c in (0, 1):
        members = np.flatnonzero(context.labels == c)
        positions = np.flatnonzero(np.isin(members, selected))
        assert len(positions) == 3 and _is_a_greedy_outcome(k[np.ix_(members, members)], positions, 1.0)


def test_a_budget_equal_to_the_class_takes_the_whole_class():
    context = SelectionContext.from_arrays(labels=[0, 0, 1, 1, 1], budget=3, class_budgets=[2, 1],
                                           embeddings=np.eye(5, 3, dtype=np.float32),
                                           probabilities=np.full((5, 2), 0.5))
    assert LogDeterminant(features="embeddings").select(context).indices[:2].tolist() == [0, 1]


@pytest.mark.parametrize("params, message", [({"lam": 0.0}, "lam must be positive"),
                                             ({"lam": -1.0}, "lam must be positive"),
                                             ({"features": "pixels"}, "features must be 'gradients' or")])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("log_determinant", params)


def test_a_group_too_large_for_a_dense_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("benchmark.methods.log_determinant.MAX_GROUP_SIZE", 10)
    with pytest.raises(UserError, match="without --unbalanced"):
        LogDeterminant().select(_context(n=16, budget=5, balance=False))
