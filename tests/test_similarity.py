"""The shared computations of benchmark.similarity against plain, naive recomputations."""

import math

import numpy as np
import pytest
import torch

from benchmark.selection import SelectionContext
from benchmark.similarity import (
    cosine_gram,
    gradient_cosine_gram,
    kl_divergence,
    nearest_neighbours,
    symmetric_kl,
    symmetric_kl_factors,
)


def _probabilities(rng, n, c):
    p = rng.dirichlet(np.full(c, 0.5), size=n)
    p[0, 0], p[0, 1] = 0.0, p[0, 0] + p[0, 1]  # an exact zero, as a softmax can underflow to
    return p


def test_nearest_neighbours_match_brute_force_in_small_blocks():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(37, 5))
    points[7] = points[3]  # an exact duplicate: each is the other's nearest, never its own
    # 50 entries per block = one row at a time; 10 * 37 = ten rows at a time, the last block partial
    for block in (50, 370, 10 ** 6):
        found = nearest_neighbours(torch.tensor(points, dtype=torch.float32), k=4, block_entries=block).numpy()
        for i in range(len(points)):
            distances = [math.dist(points[i], points[j]) if j != i else math.inf for j in range(len(points))]
            # the duplicates 3 and 7 are equally near to everyone else: compare distances, not indices
            assert [distances[j] for j in found[i]] == pytest.approx(sorted(distances)[:4], abs=1e-5)
    assert found[3, 0] == 7 and found[7, 0] == 3


def test_nearest_neighbours_reject_k_too_large():
    with pytest.raises(ValueError):
        nearest_neighbours(torch.zeros(3, 2), k=3)


def test_kl_divergences_match_the_definition():
    rng = np.random.default_rng(1)
    p, q = _probabilities(rng, 6, 4), _probabilities(rng, 6, 4)[::-1].copy()
    floor = 1e-12

    def kl(a, b):  # 0 log 0 = 0; a zero in b is floored, as in the module
        return sum(x * (math.log(x) - math.log(max(y, floor))) for x, y in zip(a, b) if x > 0)

    tp, tq = torch.tensor(p), torch.tensor(q)
    expected = [kl(p[i], q[i]) for i in range(6)]
    np.testing.assert_allclose(kl_divergence(tp, tq).numpy(), expected, rtol=1e-9)
    np.testing.assert_allclose(symmetric_kl(tp, tq).numpy(), [kl(p[i], q[i]) + kl(q[i], p[i]) for i in range(6)],
                               rtol=1e-9)
    # broadcasting: one distribution against all rows
    np.testing.assert_allclose(symmetric_kl(tp, tq[2]).numpy(), [kl(p[i], q[2]) + kl(q[2], p[i]) for i in range(6)],
                               rtol=1e-9)
    assert kl_divergence(tp, tp).abs().max() < 1e-12


def test_symmetric_kl_factors_give_the_pairwise_symmetric_kl():
    p = torch.tensor(_probabilities(np.random.default_rng(4), 8, 5))
    left, right, negentropy = symmetric_kl_factors(p)
    pairwise = negentropy[:, None] + negentropy[None, :] - left @ right.T
    expected = torch.stack([symmetric_kl(p, p[j]) for j in range(8)], dim=1)
    np.testing.assert_allclose(pairwise.numpy(), expected.numpy(), atol=1e-10)
    assert expected.min() >= 0 and expected.max() > 1


def test_gradient_cosine_gram_matches_explicit_gradient_embeddings():
    rng = np.random.default_rng(2)
    n, c, d = 9, 4, 6
    labels = rng.integers(0, c, size=n)
    embeddings = rng.normal(size=(n, d)).astype(np.float32)
    probabilities = _probabilities(rng, n, c).astype(np.float32)
    context = SelectionContext.from_arrays(labels=labels, budget=2, num_classes=c, embeddings=embeddings,
                                           probabilities=probabilities)
    explicit = context.gradient_embeddings().double()
    assert explicit.shape == (n, c + c * d)
    expected = torch.nn.functional.normalize(explicit, dim=1) @ torch.nn.functional.normalize(explicit, dim=1).T
    found = gradient_cosine_gram(context.embeddings(), context.probabilities(), torch.as_tensor(labels))
    np.testing.assert_allclose(found.numpy(), expected.numpy(), atol=1e-5)
    assert found.min() < 0  # raw cosines, not yet shifted: negative similarities are there


def test_cosine_gram_matches_pairwise_cosines():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(7, 3))
    x[4] = 0.0
    found = cosine_gram(torch.tensor(x)).numpy()
    for i in range(7):
        for j in range(7):
            norm = np.linalg.norm(x[i]) * np.linalg.norm(x[j])
            expected = x[i] @ x[j] / norm if norm > 0 else 0.0
            assert found[i, j] == pytest.approx(expected, abs=1e-6)
