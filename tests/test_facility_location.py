"""Facility location through submodlib equals a plain greedy on f(S) = sum_{i in V} max_{j in S} s_ij with cosine
similarities s between gradient (or proxy) embeddings."""

import numpy as np
import pytest
from benchmark.methods.facility_location import FacilityLocation

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection


def _context(n=16, budget=5, balance=False, seed=0):
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


def _is_a_greedy_outcome(s, selected, chosen=(), tolerance=1e-5):
    """Whether a plain greedy on the objective, written out and evaluated from scratch for every candidate at
    every step, can end in `selected`: at each step some candidate of (nearly) largest gain is in it, trying
    every such candidate in turn. Equal gains are common here (two points that only represent each other gain
    the same), and submodlib orders them its own way, so any order of equal gains is accepted."""
    def f(subset):
        return sum(max(s[i, j] for j in subset) for i in range(len(s))) if subset else 0.0

    if len(chosen) == len(selected):
        return True
    gains = {k: f([*chosen, k]) - f(list(chosen)) for k in range(len(s)) if k not in chosen}
    best = max(gains.values())
    return any(_is_a_greedy_outcome(s, selected, (*chosen, k), tolerance)
               for k, gain in gains.items() if gain >= best - tolerance and k in set(selected))


def test_the_picks_on_four_directions_worked_by_hand():
    # 0: e1, 1: e2, 2: e1 + e2, 3: e3. Cosines: 0-2 and 1-2 are 1/sqrt(2) = 0.707, every other pair 0.
    # Step 1, f({j}) = column sums: 0 -> 1.707, 1 -> 1.707, 2 -> 2.414, 3 -> 1: take 2.
    # Step 2, best similarities so far (0.707, 0.707, 1, 0): gains 0 -> 0.293, 1 -> 0.293, 3 -> 1: take 3.
    embeddings = np.array([[1, 0, 0], [0, 1, 0], [1, 1, 0], [0, 0, 1]], np.float32)
    context = SelectionContext.from_arrays(labels=[0] * 4, budget=2, embeddings=embeddings)
    selection = validate_selection(FacilityLocation(features="embeddings").select(context), context,
                                   "facility_location")
    assert selection.indices.tolist() == [2, 3]


@pytest.mark.parametrize("features", ["gradients", "embeddings"])
def test_equals_a_plain_greedy_of_the_objective(features):
    context = _context()
    vectors = context.gradient_embeddings() if features == "gradients" else context.embeddings()
    s = _cosines(vectors.numpy())
    assert s.min() < 0  # the raw cosines the objective is stated on, negative entries included
    selection = validate_selection(FacilityLocation(features=features).select(context), context, "facility_location")
    assert _is_a_greedy_outcome(s, selection.indices.tolist())
    assert not _is_a_greedy_outcome(s, list(range(5)))  # the check can fail


def test_balanced_greedy_runs_within_each_class():
    context = _context(n=20, budget=6, balance=True, seed=1)
    s = _cosines(context.gradient_embeddings().numpy())
    selected = FacilityLocation().select(context).indices
    for c in (0, 1):
        members = np.flatnonzero(context.labels == c)
        positions = np.flatnonzero(np.isin(members, selected))
        assert len(positions) == 3 and _is_a_greedy_outcome(s[np.ix_(members, members)], positions)


def test_a_budget_equal_to_the_class_takes_the_whole_class():
    context = SelectionContext.from_arrays(labels=[0, 0, 1, 1, 1], budget=3, class_budgets=[2, 1],
                                           embeddings=np.eye(5, 3, dtype=np.float32),
                                           probabilities=np.full((5, 2), 0.5))
    assert FacilityLocation(features="embeddings").select(context).indices[:2].tolist() == [0, 1]


def test_unknown_features_are_a_clear_error():
    with pytest.raises(UserError, match="features must be 'gradients' or 'embeddings'"):
        create_selector("facility_location", {"features": "pixels"})


def test_a_group_too_large_for_a_dense_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("benchmark.methods.facility_location.MAX_GROUP_SIZE", 10)
    with pytest.raises(UserError, match="without --unbalanced"):
        FacilityLocation().select(_context(n=16, budget=5, balance=False))
