"""CAL keeps the points whose predictions disagree most with their neighbours' (Margatina et al. 2021)."""

import math

import numpy as np
from benchmark.methods.cal import CAL

from benchmark.selection import SelectionContext, validate_selection

AGREE, DISAGREE = [0.9, 0.1], [0.1, 0.9]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q))


def test_a_point_that_disagrees_with_its_neighbours_is_chosen_first():
    # 30 points on a line, all predicted AGREE except point 14, predicted DISAGREE
    n = 30
    embeddings = np.stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)], axis=1)
    probabilities = np.tile(AGREE, (n, 1))
    probabilities[14] = DISAGREE
    context = SelectionContext.from_arrays(labels=np.zeros(n, int), budget=1, embeddings=embeddings,
                                           probabilities=probabilities)
    selection = validate_selection(CAL(k=10).select(context), context, "cal")
    assert selection.indices.tolist() == [14]
    # its ten neighbours all disagree with it; points whose neighbourhood misses it score 0
    assert selection.scores[14] == np.float64(selection.scores.max())
    np.testing.assert_allclose(selection.scores[14], _kl(AGREE, DISAGREE), rtol=1e-5)
    np.testing.assert_allclose(selection.scores[[0, 1, 28, 29]], 0.0, atol=1e-6)
    # its neighbours see it as one of ten: KL(DISAGREE || AGREE) / 10 each
    np.testing.assert_allclose(selection.scores[13], _kl(DISAGREE, AGREE) / 10, rtol=1e-5)


def test_scores_are_mean_kl_from_neighbours_to_the_candidate():
    # points at 0, 1 and 3 on a line with k=1: the neighbours are 0 -> 1, 1 -> 0, 3 -> 1
    embeddings = np.array([[0.0], [1.0], [3.0]], np.float32)
    p = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.1, 0.1, 0.8]]
    context = SelectionContext.from_arrays(labels=[0, 0, 0], budget=1, embeddings=embeddings, probabilities=p)
    selection = CAL(k=1).select(context)
    expected = [_kl(p[1], p[0]), _kl(p[0], p[1]), _kl(p[1], p[2])]
    np.testing.assert_allclose(selection.scores, expected, rtol=1e-5)
    assert selection.indices.tolist() == [int(np.argmax(expected))]  # the highest score, not the lowest


def test_balanced_neighbours_stay_within_the_class():
    # two classes interleaved on a line, each class internally unanimous: within a class nothing disagrees,
    # across the pool every neighbourhood mixes the two predictions
    n = 20
    labels = np.arange(n) % 2
    embeddings = np.stack([np.arange(n, dtype=np.float32), np.zeros(n, np.float32)], axis=1)
    probabilities = np.where(labels[:, None] == 0, AGREE, DISAGREE)
    arrays = dict(labels=labels, budget=4, embeddings=embeddings, probabilities=probabilities)
    balanced = CAL(k=3).select(SelectionContext.from_arrays(**arrays))
    np.testing.assert_allclose(balanced.scores, 0.0, atol=1e-6)
    assert balanced.indices.tolist() == [0, 1, 2, 3]  # all tied at 0: the lowest indices of each class
    pooled = CAL(k=3).select(SelectionContext.from_arrays(**arrays, balance=False))
    assert (pooled.scores > 0.1).all()
