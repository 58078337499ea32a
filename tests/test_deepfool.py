"""DeepFool (DFAL) keeps the points whose DeepFool perturbation is smallest (Ducoffe & Precioso 2018)."""

import numpy as np
import pytest
import torch
from benchmark.methods.deepfool import DeepFool
from torch import nn

from benchmark.errors import UserError
from benchmark.models import Classifier
from benchmark.selection import SelectionContext, create_selector, validate_selection

# A linear proxy on 3 x 2 x 1 images (6 pixels): logits = W x + b with small integers, and pixels of 0 or 255
# (x = 0 or 1 exactly), so logits, logit gaps and ||W_y - W_k||^2 are exact integers.
WEIGHT = np.array([[2, 0, 1, 0, -1, 1],
                   [0, 1, 0, 2, 1, 0],
                   [1, 1, -1, 0, 0, 2]], dtype=np.float64)
BIAS = np.array([3.0, 0.0, 1.0])
PIXELS = np.array([[1, 0, 1, 0, 0, 1], [0, 1, 0, 1, 1, 0], [1, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0],
                   [1, 0, 0, 1, 0, 0], [0, 1, 1, 0, 0, 1], [0, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0],
                   [1, 0, 1, 1, 0, 1], [0, 1, 0, 0, 1, 1], [1, 1, 1, 0, 0, 0], [0, 0, 0, 1, 1, 1]], np.float64)
# (the last point, z = (3, 3, 3), lies on a boundary: distance 0)
LABELS = np.array([0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2])  # only the groups use them: DeepFool attacks predictions


def _linear_proxy() -> Classifier:
    head = nn.Linear(6, 3)
    with torch.no_grad():
        head.weight.copy_(torch.tensor(WEIGHT))
        head.bias.copy_(torch.tensor(BIAS))
    return Classifier(nn.Flatten(), head, torch.zeros(3), torch.ones(3)).eval()


def _context(**overrides) -> SelectionContext:
    arrays = dict(labels=LABELS, budget=6, model=_linear_proxy(), embeddings=PIXELS.astype(np.float32),
                  images=torch.tensor(PIXELS.reshape(-1, 3, 2, 1) * 255, dtype=torch.uint8))
    return SelectionContext.from_arrays(**{**arrays, **overrides})


def _closed_form() -> np.ndarray:
    # the distance from x to the nearest boundary of its predicted class y: min_k (z_y - z_k) / ||W_y - W_k||.
    # E.g. x = 0: z = b = (3, 0, 1), y = 0; ||W_0 - W_1||^2 = 4+1+1+4+4+1 = 15 and ||W_0 - W_2||^2 =
    # 1+1+4+0+1+1 = 8, so the distance is min(3 / sqrt(15), 2 / sqrt(8)) = 0.7071 (class 2 is nearer).
    logits = PIXELS @ WEIGHT.T + BIAS
    predicted = logits.argmax(1)
    distances = np.full(len(PIXELS), np.inf)
    for i, y in enumerate(predicted):
        for k in range(3):
            if k != y:
                distances[i] = min(distances[i], (logits[i, y] - logits[i, k]) / np.linalg.norm(WEIGHT[y] - WEIGHT[k]))
    return distances


def test_the_perturbation_of_a_linear_model_is_the_distance_to_the_boundary_times_the_overshoot():
    assert _closed_form()[3] == pytest.approx(2 / np.sqrt(8))
    context = _context()
    selection = validate_selection(DeepFool().select(context), context, "deepfool")
    # one step lands on the nearest boundary and the overshoot carries the point 2 % past it
    np.testing.assert_allclose(selection.scores, 1.02 * _closed_form(), rtol=1e-5)


def test_the_smallest_perturbations_of_each_group_are_kept():
    context = _context()
    scores = DeepFool().select(context).scores
    expected = np.concatenate([np.flatnonzero(LABELS == c)[np.argsort(scores[LABELS == c])[:2]] for c in range(3)])
    assert DeepFool().select(context).indices.tolist() == sorted(expected.tolist())
    pooled = DeepFool().select(_context(balance=False, budget=4))
    assert pooled.indices.tolist() == sorted(np.argsort(1.02 * _closed_form(), kind="stable")[:4].tolist())


def test_the_last_layer_reading_agrees_with_the_network_on_a_linear_model():
    # the embeddings are the pixels themselves (the embedder only flattens), so the two readings see the same
    # geometry; the last-layer distance is exact and carries no overshoot
    context = _context()
    last = DeepFool(last_layer=True).select(context)
    np.testing.assert_allclose(last.scores, _closed_form(), rtol=1e-6)
    network = DeepFool().select(context)
    np.testing.assert_allclose(network.scores, 1.02 * last.scores, rtol=1e-5)
    assert last.indices.tolist() == network.indices.tolist()


class _Curved(nn.Module):
    """Two classes, logits (0, tanh(x_0) - 1/2) of the first pixel: from x_0 = 0 the linearised step (length
    0.5, then 0.51 with the overshoot) falls short, since tanh(0.51) = 0.47 < 0.5; a second step crosses."""

    def forward(self, x):
        first = x[:, 0, 0, 0]
        return torch.stack([torch.zeros_like(first), torch.tanh(first) - 0.5], dim=1)


def test_points_that_do_not_cross_within_max_iter_rank_last():
    images = torch.zeros(2, 3, 1, 1, dtype=torch.uint8)
    images[1, 0] = 255  # x_0 = 1: tanh(1) - 1/2 > 0, already class 1; its boundary is at atanh(0.5) = 0.549
    context = SelectionContext.from_arrays(labels=[0, 0], budget=1, model=_Curved(), images=images)
    one_step = DeepFool(max_iter=1).select(context)
    assert np.isinf(one_step.scores[0]) and np.isfinite(one_step.scores[1])
    assert one_step.indices.tolist() == [1]
    converged = DeepFool().select(context).scores
    assert np.arctanh(0.5) <= converged[0] <= 1.02 * np.arctanh(0.5)  # just past the boundary


class _Flat(nn.Module):
    """Logits that do not depend on the input: no class can be reached."""

    def forward(self, x):
        return torch.stack([x.sum((1, 2, 3)) * 0 + 1, x.sum((1, 2, 3)) * 0], dim=1)


def test_a_point_that_cannot_move_ranks_last():
    context = SelectionContext.from_arrays(labels=[0, 0, 0], budget=1, model=_Flat(),
                                           images=torch.zeros(3, 3, 1, 1, dtype=torch.uint8))
    selection = DeepFool().select(context)
    assert np.isinf(selection.scores).all() and selection.indices.tolist() == [0]


@pytest.mark.parametrize("params, message", [({"max_iter": 0}, "max_iter must be at least 1"),
                                             ({"overshoot": -0.1}, "overshoot must be non-negative")])
def test_bad_parameters_fail_when_built(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("deepfool", params)


def test_the_last_layer_reading_needs_a_linear_head():
    context = SelectionContext.from_arrays(labels=[0, 0], budget=1, model=_Flat(),
                                           embeddings=np.zeros((2, 2), np.float32))
    with pytest.raises(UserError, match="linear `head`"):
        DeepFool(last_layer=True).select(context)
