"""Adversarial coreset selection (Dolatabadi et al. 2023): CRAIG or GRAD-MATCH on the last-layer gradients at
each pool image's PGD adversarial example."""

import numpy as np
import pytest
import torch
from benchmark.methods.adversarial_coreset import AdversarialCoreset
from benchmark.methods.craig import Craig
from benchmark.methods.gradmatch import GradMatch
from torch import nn

from benchmark.errors import UserError
from benchmark.models import Classifier
from benchmark.selection import SelectionContext, create_selector, validate_selection
from benchmark.train import to_float
from tests.conftest import tiny_context

EPS = 8 / 255


def _linear_proxy():
    # logits = W x + b on the flattened image (12 values): the embedding is the image itself
    head = nn.Linear(12, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[0.0] * 12, [1.0, -1.0, 0.5, -0.5, 2.0, -2.0] * 2]))
        head.bias.copy_(torch.tensor([0.3, -0.3]))
    return Classifier(nn.Flatten(), head, torch.zeros(3), torch.ones(3)).eval()


def _data(seed=0):
    rng = np.random.default_rng(seed)
    images = torch.as_tensor(rng.integers(0, 256, size=(16, 3, 2, 2)), dtype=torch.uint8)
    return images, np.repeat([0, 1], 8)


def _by_hand(model, images, labels):
    # The cross-entropy's input gradient is W^T (p - onehot(y)): for y = 0 it is p_1 (w_1 - w_0), for y = 1
    # p_0 (w_0 - w_1), so its sign is the same at every iterate, s = sign(w_{1-y} - w_y). PGD's steps of
    # 2.5 eps / 10 move each coordinate 2.5 eps that way in total, more than the 2 eps that separate any random
    # start from the far face of the ball, so every iterate ends at x_adv = clip(x + eps s, 0, 1).
    w = model.head.weight.detach()
    direction = torch.stack([torch.sign(w[1] - w[0]), torch.sign(w[0] - w[1])])[torch.as_tensor(labels)]
    x = to_float(images).flatten(1)
    adversarial = (x + EPS * direction).clamp(0, 1)
    with torch.no_grad():
        return adversarial, model.head(adversarial).softmax(1)


@pytest.mark.parametrize("base, plain", [("craig", Craig()), ("gradmatch", GradMatch())])
def test_equals_the_base_method_on_the_hand_computed_adversarial_features(base, plain):
    model = _linear_proxy()
    images, labels = _data()
    embeddings, probabilities = _by_hand(model, images, labels)
    assert not torch.equal(embeddings, to_float(images).flatten(1))
    context = SelectionContext.from_arrays(labels=labels, budget=6, model=model, images=images)
    selection = validate_selection(AdversarialCoreset(base=base).select(context), context, "adversarial_coreset")
    expected = plain.select(SelectionContext.from_arrays(labels=labels, budget=6, embeddings=embeddings.numpy(),
                                                         probabilities=probabilities.numpy()))
    assert selection.indices.tolist() == expected.indices.tolist()
    np.testing.assert_allclose(selection.weights, expected.weights, rtol=1e-6)


def test_the_adversarial_features_change_the_choice():
    # on clean images the same proxy and CRAIG pick differently
    model = _linear_proxy()
    images, labels = _data()
    x = to_float(images).flatten(1)
    with torch.no_grad():
        clean = Craig().select(SelectionContext.from_arrays(labels=labels, budget=6, embeddings=x.numpy(),
                                                            probabilities=model.head(x).softmax(1).numpy()))
    context = SelectionContext.from_arrays(labels=labels, budget=6, model=model, images=images)
    assert AdversarialCoreset().select(context).indices.tolist() != clean.indices.tolist()


@pytest.mark.parametrize("base", ["craig", "gradmatch"])
def test_same_seed_same_selection(base):
    # the tiny tanh proxy: here the random start matters
    first = AdversarialCoreset(base=base, steps=3).select(tiny_context(seed=5))
    second = AdversarialCoreset(base=base, steps=3).select(tiny_context(seed=5))
    np.testing.assert_array_equal(first.indices, second.indices)
    np.testing.assert_array_equal(first.weights, second.weights)


@pytest.mark.parametrize("params, message", [
    ({"base": "glister"}, "base must be one of craig, gradmatch"),
    ({"eps": 0}, "eps must be in"),
    ({"steps": 0}, "steps and batch_size must be at least 1"),
    ({"rel_step": -1}, "rel_step and lam must be positive"),
    ({"lam": 0}, "rel_step and lam must be positive"),
])
def test_bad_parameters_are_clear_errors(params, message):
    with pytest.raises(UserError, match=message):
        create_selector("adversarial_coreset", params)
