"""EL2N: the mean over proxies of || softmax(f(x)) - onehot(y) ||_2 (Paul et al. 2021), highest kept."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchmark.methods.el2n import EL2N
from torch import nn

from benchmark.errors import UserError
from benchmark.models import Classifier
from benchmark.selection import SelectionContext, create_selector, validate_selection
from benchmark.train import to_float
from tests.conftest import tiny_model

LN3 = math.log(3.0)


class Models:
    """A FeatureSource with given images and a fixed list of proxies (the first `count` are handed out)."""

    def __init__(self, images, models):
        self.images, self.models, self.asked = images, models, []

    def pool_images(self):
        return self.images

    def proxy_models(self, count, epochs):
        self.asked.append((count, epochs))
        return self.models[:count]


def planted_model(channel: int) -> Classifier:
    """h = (value of `channel`) / 255 and logits [ln 3 * h, 0]: p = (3/4, 1/4) at h = 1, (1/2, 1/2) at h = 0."""
    embedder = nn.Sequential(nn.Flatten(), nn.Linear(3, 1, bias=False))
    head = nn.Linear(1, 2)
    with torch.no_grad():
        embedder[1].weight.zero_()
        embedder[1].weight[0, channel] = 1.0
        head.weight.copy_(torch.tensor([[LN3], [0.0]]))
        head.bias.zero_()
    return Classifier(embedder, head, torch.zeros(3), torch.ones(3)).eval()


def _images(*pixels):
    """One 1x1 image per (red, green, blue) triple."""
    return torch.tensor(pixels, dtype=torch.uint8).reshape(len(pixels), 3, 1, 1)


def test_scores_equal_a_hand_computation():
    # the proxy looks at red: points 0 and 1 are red (p = (3/4, 1/4)), point 2 is black (p = (1/2, 1/2))
    # point 0, label 0: ||(-1/4, 1/4)|| = sqrt(2)/4; point 1, label 1: ||(3/4, -3/4)|| = 3 sqrt(2)/4;
    # point 2, label 0: ||(-1/2, 1/2)|| = sqrt(2)/2. The highest (the mislabelled-looking point 1) is kept.
    images = _images((255, 0, 0), (255, 0, 0), (0, 0, 0))
    features = Models(images, [planted_model(0)])
    context = SelectionContext(labels=np.array([0, 1, 0]), num_classes=2, budget=1, seed=0, features=features,
                               balance=False)
    selection = validate_selection(EL2N(repeats=1, epochs=3).select(context), context, "el2n")
    root2 = math.sqrt(2.0)
    np.testing.assert_allclose(selection.scores, [root2 / 4, 3 * root2 / 4, root2 / 2], rtol=1e-6)
    assert selection.indices.tolist() == [1]
    assert features.asked == [(1, 3)]


def test_averaging_over_proxies_is_real():
    # point 0 is red, point 1 green, both label 0. Proxy 0 looks at red, proxies 1 and 2 at green.
    # A proxy that sees the point: sqrt(2)/4 = 0.354; one that sees black: sqrt(2)/2 = 0.707.
    # K = 1: [0.354, 0.707], keep point 1. K = 3: point 0 (0.354 + 2 * 0.707) / 3 = 0.589,
    # point 1 (0.707 + 2 * 0.354) / 3 = 0.471: keep point 0.
    images = _images((255, 0, 0), (0, 255, 0))
    models = [planted_model(0), planted_model(1), planted_model(1)]

    def select(repeats):
        context = SelectionContext(labels=np.array([0, 0]), num_classes=2, budget=1, seed=0,
                                   features=Models(images, models))
        return EL2N(repeats=repeats).select(context)

    low, high = math.sqrt(2.0) / 4, math.sqrt(2.0) / 2
    one, three = select(1), select(3)
    np.testing.assert_allclose(one.scores, [low, high], rtol=1e-6)
    np.testing.assert_allclose(three.scores, [(low + 2 * high) / 3, (high + 2 * low) / 3], rtol=1e-6)
    assert one.indices.tolist() == [1] and three.indices.tolist() == [0]


def test_scores_match_the_definition_on_tiny_proxies_and_classes_keep_their_budgets():
    generator = torch.Generator().manual_seed(0)
    labels = np.repeat(np.arange(3), 8)
    images = torch.randint(0, 256, (24, 3, 4, 4), generator=generator, dtype=torch.uint8)
    models = [tiny_model(3, seed) for seed in (1, 2, 3, 4)]
    context = SelectionContext(labels=labels, num_classes=3, budget=9, seed=0, features=Models(images, models),
                               class_budgets=[5, 1, 3])
    selection = validate_selection(EL2N(repeats=4).select(context), context, "el2n")
    one_hot = F.one_hot(torch.as_tensor(labels), 3).double()
    with torch.no_grad():
        expected = torch.stack([(m(to_float(images)).double().softmax(1) - one_hot).norm(dim=1)
                                for m in models]).mean(0).numpy()
    np.testing.assert_allclose(selection.scores, expected, rtol=1e-5)
    assert np.bincount(labels[selection.indices], minlength=3).tolist() == [5, 1, 3]
    for c, budget in enumerate([5, 1, 3]):
        rows = np.flatnonzero(labels == c)
        assert set(selection.indices) & set(rows) == set(rows[np.argsort(-expected[rows])[:budget]])


def test_it_asks_for_its_own_proxies():
    assert EL2N().own_proxies() == (10, 10)
    assert EL2N(repeats=3, epochs=5).own_proxies() == (3, 5)
    assert not EL2N.uses_proxy


@pytest.mark.parametrize("params", [{"repeats": "0"}, {"epochs": "0"}, {"repeats": "-2", "epochs": "4"}])
def test_bad_parameters_fail_when_built(params):
    with pytest.raises(UserError, match="repeats and epochs must be at least 1"):
        create_selector("el2n", params)
