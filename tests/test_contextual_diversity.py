"""Contextual diversity: k-center greedy over predicted distributions in symmetric KL (Agarwal et al. 2020)."""

import math

import numpy as np
from benchmark.methods.contextual_diversity import ContextualDiversity

from benchmark.selection import SelectionContext, validate_selection


def _symmetric_kl(p, q):
    return sum((a - b) * (math.log(a) - math.log(b)) for a, b in zip(p, q))


def test_one_point_per_cluster_before_a_second_from_any():
    # four tight clusters of predicted distributions, each peaked on a different class
    rng = np.random.default_rng(0)
    clusters = np.repeat(np.arange(4), 6)
    logits = 4.0 * np.eye(4)[clusters] + 0.1 * rng.normal(size=(24, 4))
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    for seed in range(5):  # whatever the first center
        context = SelectionContext.from_arrays(labels=np.zeros(24, int), budget=4, seed=seed,
                                               probabilities=probabilities)
        selection = validate_selection(ContextualDiversity().select(context), context, "contextual_diversity")
        assert sorted(clusters[selection.indices]) == [0, 1, 2, 3]


def _brute_force_k_center(p, budget, first):
    centers = [first]
    while len(centers) < budget:
        gaps = {i: min(_symmetric_kl(p[i], p[c]) for c in centers) for i in range(len(p)) if i not in centers}
        centers.append(max(gaps, key=gaps.get))
    return centers


def _documented_first_centers(seed, sizes):
    """The documented first centers: uniform draws, one per group in order, from the context's generator."""
    rng = SelectionContext.from_arrays(labels=[0], budget=1, seed=seed).rng
    return [int(rng.integers(size)) for size in sizes]


def test_equals_a_brute_force_k_center():
    rng = np.random.default_rng(1)
    n, budget, seed = 15, 6, 7
    p = rng.dirichlet(np.ones(5), size=n)
    context = SelectionContext.from_arrays(labels=rng.integers(0, 3, size=n), budget=budget, seed=seed,
                                           probabilities=p, balance=False)
    selection = ContextualDiversity().select(context)
    [first] = _documented_first_centers(seed, [n])
    assert selection.indices.tolist() == sorted(_brute_force_k_center(p, budget, first))


def test_balanced_runs_a_brute_force_k_center_within_each_class():
    rng = np.random.default_rng(2)
    labels = np.repeat([0, 1, 2], 8)
    p = rng.dirichlet(np.ones(3), size=24)
    budgets = [1, 2, 3]
    context = SelectionContext.from_arrays(labels=labels, budget=6, seed=3, probabilities=p, class_budgets=budgets)
    selection = ContextualDiversity().select(context)
    expected = []
    for c, first in enumerate(_documented_first_centers(3, [8, 8, 8])):
        members = np.flatnonzero(labels == c)
        expected += members[_brute_force_k_center(p[members], budgets[c], first)].tolist()
    assert selection.indices.tolist() == sorted(expected)
