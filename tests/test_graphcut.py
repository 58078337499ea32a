"""GraphCut through submodlib equals a plain greedy on f(S) = sum_{i in V, j in S} s_ij - lam sum_{i,j in S} s_ij
with cosine similarities s between gradient (or proxy) embeddings (Iyer et al. 2021)."""

import numpy as np
import pytest
from benchmark.methods.graphcut import GraphCut

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


def _plain_greedy(s, budget, lam):
    """The objective written out, evaluated from scratch for every candidate at every step."""
    def f(subset):
        return (sum(s[i, j] for i in range(len(s)) for j in subset)
                - lam * sum(s[i, j] for i in subset for j in subset))

    chosen = []
    while len(chosen) < budget:
        gains = {k: f(chosen + [k]) - f(chosen) for k in range(len(s)) if k not in chosen}
        chosen.append(max(gains, key=gains.get))
    return chosen


@pytest.mark.parametrize("lam", [1.0, 0.3])
@pytest.mark.parametrize("features", ["gradients", "embeddings"])
def test_equals_a_plain_greedy_of_the_objective(lam, features):
    context = _context()
    vectors = context.gradient_embeddings() if features == "gradients" else context.embeddings()
    s = _cosines(vectors.numpy())
    assert s.min() < 0  # the raw cosines the objective is stated on, negative entries included
    selection = validate_selection(GraphCut(lam=lam, features=features).select(context), context, "graphcut")
    assert selection.indices.tolist() == sorted(_plain_greedy(s, 5, lam))


def test_balanced_greedy_runs_within_each_class():
    context = _context(n=20, budget=6, balance=True, seed=1)
    s = _cosines(context.gradient_embeddings().numpy())
    expected = []
    for c in (0, 1):
        members = np.flatnonzero(context.labels == c)
        expected += members[_plain_greedy(s[np.ix_(members, members)], 3, 1.0)].tolist()
    assert GraphCut().select(context).indices.tolist() == sorted(expected)


def test_a_budget_equal_to_the_class_takes_the_whole_class():
    context = SelectionContext.from_arrays(labels=[0, 0, 1, 1, 1], budget=3, class_budgets=[2, 1],
                                           embeddings=np.eye(5, 3, dtype=np.float32),
                                           probabilities=np.full((5, 2), 0.5))
    assert GraphCut(features="embeddings").select(context).indices[:2].tolist() == [0, 1]


def test_unknown_features_are_a_clear_error():
    with pytest.raises(UserError, match="features must be"):
        create_selector("graphcut", {"features": "pixels"})


def test_a_group_too_large_for_a_dense_kernel_is_a_clear_error(monkeypatch):
    monkeypatch.setattr("benchmark.methods.graphcut.MAX_GROUP_SIZE", 10)
    with pytest.raises(UserError, match="without --unbalanced"):
        GraphCut().select(_context(n=16, budget=5, balance=False))
