"""GraNd: scores are per-sample gradient norms over all parameters (checked one sample at a time with plain
autograd), averaged over proxies; the last-layer option is the norm of the closed-form gradient embedding."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from benchmark.methods.grand import GraNd
from torch import nn

from benchmark.errors import UserError
from benchmark.gradients import gradient_norms, last_layer_gradient_norms
from benchmark.models import Classifier
from benchmark.selection import SelectionContext, create_selector
from benchmark.train import predict, to_float


def conv_model(seed: int, num_classes: int = 3) -> Classifier:
    """Conv -> batch norm (non-trivial running statistics) -> ReLU -> pool -> linear head."""
    torch.manual_seed(seed)
    embedder = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.BatchNorm2d(5), nn.ReLU(),
                             nn.AdaptiveAvgPool2d(1), nn.Flatten())
    with torch.no_grad():
        embedder[1].running_mean.uniform_(-0.2, 0.2)
        embedder[1].running_var.uniform_(0.05, 0.3)
        embedder[1].weight.uniform_(0.5, 2.0)
        embedder[1].bias.uniform_(-0.5, 0.5)
    return Classifier(embedder, nn.Linear(5, num_classes), torch.full((3,), 0.5), torch.full((3,), 0.25)).eval()


class Models:
    """A FeatureSource with given images and a fixed list of proxies (the first `count` are handed out)."""

    def __init__(self, images, models):
        self.images, self.models, self.asked = images, models, []

    def pool_images(self):
        return self.images

    def proxy_models(self, count, epochs):
        self.asked.append((count, epochs))
        return self.models[:count]


def autograd_norms(model, images, labels):
    """One sample at a time, plain backward, eval mode: the definition of the GraNd gradient norm."""
    model.eval()
    norms = []
    for i in range(len(images)):
        model.zero_grad()
        F.cross_entropy(model(to_float(images[i:i + 1])), labels[i:i + 1]).backward()
        norms.append(torch.sqrt(sum(p.grad.double().pow(2).sum() for p in model.parameters())))
    return torch.stack(norms)


def _data(per_class=(4, 4, 4), seed=0):
    generator = torch.Generator().manual_seed(seed)
    labels = np.repeat(np.arange(len(per_class)), per_class)
    images = torch.randint(0, 256, (len(labels), 3, 6, 6), generator=generator, dtype=torch.uint8)
    return images, labels


def test_scores_are_mean_per_sample_gradient_norms_over_all_parameters():
    images, labels = _data()
    models = [conv_model(seed) for seed in range(3)]
    features = Models(images, models)
    context = SelectionContext(labels=labels, num_classes=3, budget=6, seed=0, features=features)
    selection = GraNd(repeats=3, epochs=4).select(context)
    assert features.asked == [(3, 4)]
    target = torch.stack([autograd_norms(m, images, torch.as_tensor(labels)) for m in models]).mean(0)
    np.testing.assert_allclose(selection.scores, target.numpy(), rtol=1e-5, atol=1e-5)
    for c in range(3):  # the two highest scores of each class
        rows = np.flatnonzero(labels == c)
        top = rows[np.argsort(-target.numpy()[rows])[:2]]
        assert sorted(top) == sorted(set(selection.indices) & set(rows))


def test_gradient_norms_in_batches_match_autograd_and_include_every_parameter():
    images, labels = _data(seed=1)
    labels = torch.as_tensor(labels)
    model = conv_model(7)
    expected = autograd_norms(model, images, labels)
    for batch_size in (1, 5, 64):
        torch.testing.assert_close(gradient_norms(model, images, labels, batch_size=batch_size).double(), expected,
                                   rtol=1e-5, atol=1e-5)
    # the head alone gives smaller norms: the backbone's parameters are counted
    logits, embeddings = predict(model, images, embed=True)
    head_only = last_layer_gradient_norms(embeddings, logits.softmax(1), labels).double()
    assert (expected > head_only + 1e-3).all()


def test_closed_form_last_layer_norm_matches_autograd_on_the_head():
    images, labels = _data(seed=2)
    labels = torch.as_tensor(labels)
    model = conv_model(3)
    logits, embeddings = predict(model, images, embed=True)
    closed = last_layer_gradient_norms(embeddings, logits.softmax(1), labels)
    for i in range(len(images)):
        model.zero_grad()
        F.cross_entropy(model(to_float(images[i:i + 1])), labels[i:i + 1]).backward()
        norm = torch.sqrt(model.head.weight.grad.pow(2).sum() + model.head.bias.grad.pow(2).sum())
        torch.testing.assert_close(closed[i], norm, rtol=1e-5, atol=1e-6)


def test_last_layer_option_is_the_norm_of_the_gradient_embeddings():
    images, labels = _data(seed=3)
    models = [conv_model(seed) for seed in (11, 12)]
    context = SelectionContext(labels=labels, num_classes=3, budget=6, seed=0, features=Models(images, models))
    scores = GraNd(repeats=2, last_layer=True).select(context).scores
    norms = []
    for model in models:  # the protocol's explicit gradient embedding of each proxy's outputs
        logits, embeddings = predict(model, images, embed=True)
        arrays = SelectionContext.from_arrays(labels=labels, budget=6, embeddings=embeddings,
                                              probabilities=logits.softmax(1))
        norms.append(arrays.gradient_embeddings().norm(dim=1))
    np.testing.assert_allclose(scores, torch.stack(norms).mean(0).numpy(), rtol=1e-5, atol=1e-6)


def planted_model(pixel: int) -> Classifier:
    """Zero head, so p is uniform and ||g||^2 = ||p - y||^2 (1 + h^2) with h = 10 * (pixel value of x)."""
    embedder = nn.Sequential(nn.Flatten(), nn.Linear(6, 1, bias=False))
    head = nn.Linear(1, 2)
    with torch.no_grad():
        embedder[1].weight.zero_()
        embedder[1].weight[0, pixel] = 10.0
        head.weight.zero_()
        head.bias.zero_()
    return Classifier(embedder, head, torch.zeros(3), torch.ones(3)).eval()


def test_averaging_over_initialisations_changes_the_choice():
    # point 0 is bright in pixel 0 (what proxy 0 looks at), point 1 in pixel 1 (what proxies 1, 2 look at)
    images = torch.zeros(2, 3, 1, 2, dtype=torch.uint8)
    images[0, 0, 0, 0], images[0, 0, 0, 1] = 255, 0
    images[1, 0, 0, 0], images[1, 0, 0, 1] = 0, 200
    labels = np.array([0, 0])
    models = [planted_model(0), planted_model(1), planted_model(1)]

    def select(repeats):
        context = SelectionContext(labels=labels, num_classes=2, budget=1, seed=0, features=Models(images, models))
        return GraNd(repeats=repeats).select(context)

    # by hand: ||p - y|| = sqrt(0.5); h = 10 or 7.84 where the proxy looks, else 0
    def norm(h):
        return np.sqrt(0.5 * (1 + h ** 2))

    one, three = select(1), select(3)
    np.testing.assert_allclose(one.scores, [norm(10.0), norm(0.0)], rtol=1e-5)
    np.testing.assert_allclose(three.scores, [(norm(10.0) + 2 * norm(0.0)) / 3,
                                              (norm(0.0) + 2 * norm(10 * 200 / 255)) / 3], rtol=1e-5)
    assert one.indices.tolist() == [0] and three.indices.tolist() == [1]


def test_exact_budget_class_budgets_and_determinism():
    images, labels = _data(per_class=(8, 8, 8), seed=5)
    models = [conv_model(seed) for seed in (21, 22)]

    def select(last_layer, **context_args):
        context = SelectionContext(labels=labels, num_classes=3, seed=4, features=Models(images, models),
                                   **context_args)
        return GraNd(repeats=2, last_layer=last_layer).select(context)

    for last_layer in (False, True):
        first = select(last_layer, budget=9, class_budgets=[5, 1, 3])
        again = select(last_layer, budget=9, class_budgets=[5, 1, 3])
        assert len(first.indices) == 9 and len(np.unique(first.indices)) == 9
        assert np.bincount(labels[first.indices], minlength=3).tolist() == [5, 1, 3]
        np.testing.assert_array_equal(first.indices, again.indices)
        assert np.isfinite(first.scores).all() and first.scores.shape == (24,)
        unbalanced = select(last_layer, budget=7, balance=False)
        assert len(unbalanced.indices) == 7
        assert set(unbalanced.indices) == set(np.argsort(-unbalanced.scores, kind="stable")[:7])


def test_bad_parameters_fail_clearly():
    with pytest.raises(UserError, match="repeats must be at least 1"):  # when it is built, before any data loads
        create_selector("grand", {"repeats": "0"})
