"""Shared fixtures: a tiny feature source that offers everything a selector may ask for (embeddings,
probabilities, validation outputs, images and small proxy models) without training anything big."""

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.models import Classifier
from benchmark.selection import SelectionContext, TrainingDynamics, ValidationOutputs

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    """No test reads or writes the user's cache."""
    monkeypatch.setenv("CORESET_BENCH_CACHE", str(tmp_path / "cache"))


class _Flatten(nn.Module):
    def __init__(self, size: int, width: int, seed: int):
        super().__init__()
        generator = torch.Generator().manual_seed(seed)
        self.linear = nn.Linear(size, width)
        with torch.no_grad():
            self.linear.weight.copy_(torch.randn(width, size, generator=generator) / size ** 0.5)

    def forward(self, x):
        return torch.tanh(self.linear(x.flatten(1)))


def tiny_model(num_classes: int, seed: int, size: int = 3 * 4 * 4, width: int = 8) -> Classifier:
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # the biases too, without touching the global RNG
        generator = torch.Generator().manual_seed(seed + 1000)
        head = nn.Linear(width, num_classes)
        with torch.no_grad():
            head.weight.copy_(torch.randn(num_classes, width, generator=generator))
        return Classifier(_Flatten(size, width, seed), head, torch.zeros(3), torch.ones(3)).eval()


class TinyFeatures:
    """A FeatureSource over random 4x4 images, tiny proxies and made-up training dynamics; deterministic."""

    def __init__(self, labels: np.ndarray, num_classes: int, dim: int = 6, seed: int = 0):
        rng = np.random.default_rng(seed)
        n = len(labels)
        centers = rng.normal(size=(num_classes, dim)) * 3
        self._embeddings = torch.tensor(centers[labels] + rng.normal(size=(n, dim)), dtype=torch.float32)
        logits = torch.tensor(rng.normal(size=(n, num_classes)), dtype=torch.float32)
        logits[torch.arange(n), torch.as_tensor(labels)] += 2
        self._probabilities = logits.softmax(1)
        val_labels = torch.as_tensor(np.arange(max(20, num_classes)) % num_classes)
        val_logits = torch.tensor(rng.normal(size=(len(val_labels), num_classes)), dtype=torch.float32)
        self._validation = ValidationOutputs(
            val_labels, torch.tensor(centers[val_labels.numpy()] + rng.normal(size=(len(val_labels), dim)),
                                     dtype=torch.float32), val_logits.softmax(1))
        self._images = torch.as_tensor(rng.integers(0, 256, size=(n, 3, 4, 4)), dtype=torch.uint8)
        self.num_classes = num_classes
        epochs = 4
        margins = torch.tensor(rng.normal(size=(epochs, n)), dtype=torch.float32)
        margins += torch.linspace(-1, 1, epochs)[:, None]  # learnt over the epochs
        self._dynamics = TrainingDynamics(correct=margins > 0, margin=margins,
                                          loss=torch.nn.functional.softplus(-margins))

    def embeddings(self):
        return self._embeddings

    def probabilities(self):
        return self._probabilities

    def validation(self):
        return self._validation

    def pool_images(self):
        return self._images

    def training_dynamics(self):
        return self._dynamics

    def proxy_model(self):
        return tiny_model(self.num_classes, seed=7)

    def proxy_models(self, count, epochs):
        return [tiny_model(self.num_classes, seed=100 * i + epochs) for i in range(count)]


def tiny_context(*, per_class=(12, 12, 12), budget=9, seed=0, balance=True, class_budgets=None):
    labels = np.repeat(np.arange(len(per_class)), per_class)
    features = TinyFeatures(labels, len(per_class))
    return SelectionContext(labels=labels, num_classes=len(per_class), budget=budget, seed=seed,
                            features=features, balance=balance, class_budgets=class_budgets)


def cifar10_jpeg() -> Path | None:
    """The shared CIFAR-10 JPEG copy, from the environment variable that .ci/run sets."""
    path = os.environ.get("CORESET_BENCH_CIFAR10_JPEG")
    return Path(path) if path and (Path(path) / "train").is_dir() else None
