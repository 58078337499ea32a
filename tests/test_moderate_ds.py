"""Moderate coreset keeps the points at the median distance from their class centre (Xia et al. 2023)."""

import numpy as np
import pytest
from benchmark.methods.moderate_ds import ModerateDS

from benchmark.errors import UserError
from benchmark.selection import SelectionContext, create_selector, validate_selection


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


def test_unbalanced_still_measures_distances_to_each_class_centre():
    # two clusters: class centres 1 and 11 give distances 1, 0, 1 | 0, 1, 1 (median over the pool 1); the
    # pool mean (x = 6) would give 6, 5, 4, 5, 6, 4 and keep [1, 3], the bug this test pins
    embeddings = np.array([[0.0], [1.0], [2.0], [11.0], [12.0], [10.0]], np.float32)
    context = SelectionContext.from_arrays(labels=[0, 0, 0, 1, 1, 1], budget=2, embeddings=embeddings,
                                           balance=False)
    selection = ModerateDS().select(context)
    np.testing.assert_allclose(selection.scores, -np.abs(np.array([1, 0, 1, 0, 1, 1]) - 1.0), atol=1e-5)
    assert selection.indices.tolist() == [0, 2]


def test_the_code_reading_uses_the_median_centre_and_a_band_of_ranks():
    # one class, coordinate-wise median (0, 0) vs mean (2, 0): the readings keep different points
    embeddings = np.array([[0, 0], [1, 0], [-1, 0], [0, 1], [0, -2], [12, 1]], np.float32)
    context = SelectionContext.from_arrays(labels=[0] * 6, budget=2, embeddings=embeddings)
    code = ModerateDS(reading="code").select(context)
    # distances to (0, 0): 0, 1, 1, 1, 2, 12.04; ranks sorted: 0 | 1 2 3 | 4 | 5; the middle two ranks (2, 3)
    assert code.indices.tolist() == [2, 3]
    paper = ModerateDS(reading="paper").select(context)
    # mean (2, 0): distances 2, 1, 3, 2.24, 2.83, 10.05; median 2.53: closest 2.24 (3) and 2.83 (4)
    assert paper.indices.tolist() == [3, 4]


def test_an_unknown_reading_fails_when_built():
    with pytest.raises(UserError, match="reading must be 'paper' or 'code'"):
        create_selector("moderate_ds", {"reading": "blog"})
