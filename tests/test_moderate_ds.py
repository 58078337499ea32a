"""Moderate coreset keeps the points at the median distance from their class centre (Xia et al. 2023)."""

import numpy as np

from benchmark.selection import SelectionContext, validate_selection
from methods.moderate_ds import ModerateDS


def _class(center, scale, radii):
    # pairs at +-r along the first axis: the class mean is exactly `center`, the distances are scale * r
    offsets = np.concatenate([[r, -r] for r in radii])
    points = np.tile(np.asarray(center, np.float64), (len(offsets), 1))
    points[:, 0] += scale * offsets
    return points


def test_points_at_the_median_distance_are_kept_per_class():
    radii = [1, 2, 3, 4, 5]  # near, ..., median (3), ..., far
    embeddings = np.concatenate([_class([0, 0], 1.0, radii), _class([50, 50], 10.0, radii)]).astype(np.float32)
    labels = np.repeat([0, 1], 10)
    context = SelectionContext.from_arrays(labels=labels, budget=4, embeddings=embeddings)
    selection = validate_selection(ModerateDS().select(context), context, "moderate_ds")
    assert selection.indices.tolist() == [4, 5, 14, 15]  # the +-3 pair of each class
    distances = np.tile(np.repeat(radii, 2), 2) * np.repeat([1.0, 10.0], 10)
    expected = -np.abs(distances - np.repeat([3.0, 30.0], 10))
    np.testing.assert_allclose(selection.scores, expected, atol=1e-4)


def test_unbalanced_uses_the_pool_mean_and_median():
    # a tight cluster and a far one: from the pool mean (x = 6) the median distance is 5
    embeddings = np.array([[0.0], [1.0], [2.0], [11.0], [12.0], [10.0]], np.float32)
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 1, 1, 1], budget=2, embeddings=embeddings,
                                           balance=False)
    selection = ModerateDS().select(context)
    np.testing.assert_allclose(selection.scores, -np.abs(np.array([6, 5, 4, 5, 6, 4]) - 5.0), atol=1e-5)
    assert selection.indices.tolist() == [1, 3]
