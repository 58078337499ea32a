"""The selector contract, for contributors (`python -m benchmark check NAME`) and the tests alike: a small,
deterministic selection context (three classes of random 4 x 4 images, made-up embeddings, probabilities,
training dynamics and tiny proxy models) and the checks every selector must pass on it: exactly the budget,
the class budgets, explicit class budgets honoured, the same indices for the same seed, a valid selection over
the whole pool when not balanced, and a paper to cite."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError
from benchmark.models import Classifier
from benchmark.selection import (
    SelectionContext,
    TrainingDynamics,
    ValidationOutputs,
    available_selectors,
    create_selector,
    validate_selection,
)


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


def check_selector(name: str, params: dict | None = None) -> list[tuple[str, str]]:
    """(check, "" when it passed or why it failed) for every check of the contract, on `name` with `params`."""
    cls = available_selectors().get(name) or create_selector(name)  # an unknown name fails with the known ones
    results = []

    def select(**context_args):
        if cls.whole_pool:  # the harness runs these at fraction 1.0
            context_args["budget"] = sum(context_args.get("per_class", (12, 12, 12)))
        context = tiny_context(**context_args)
        return validate_selection(create_selector(name, params).select(context), context, name), context

    def check(what: str, test) -> None:
        try:
            problem = test()
        except UserError as error:
            problem = str(error)
        except Exception as error:  # a contributor's bug: say what it was, in one line
            problem = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        results.append((what, problem or ""))

    def budgets():
        selection, context = select(budget=9)
        counts = np.bincount(context.labels[selection.indices], minlength=context.num_classes).tolist()
        if cls.whole_pool:
            return "" if sorted(selection.indices.tolist()) == list(range(context.pool_size)) else \
                "a whole-pool method must return the whole pool"
        return "" if counts == [3, 3, 3] else f"9 points over three equal classes should be 3, 3, 3, got {counts}"

    def explicit():
        if cls.whole_pool:
            return ""
        selection, context = select(budget=9, class_budgets=[5, 1, 3])
        counts = np.bincount(context.labels[selection.indices], minlength=3).tolist()
        return "" if counts == [5, 1, 3] else f"class budgets 5, 1, 3 asked for, got {counts}"

    def deterministic():
        first, _ = select(seed=3)
        second, _ = select(seed=3)
        return "" if np.array_equal(first.indices, second.indices) else "seed 3 twice gave two selections"

    def unbalanced():
        if cls.whole_pool:
            return ""
        selection, _ = select(per_class=(20, 4, 4), budget=10, balance=False)
        return "" if len(np.unique(selection.indices)) == 10 else "10 distinct points asked for"

    def cited():
        return "" if isinstance(getattr(cls, "paper", ""), str) and cls.paper.strip() else \
            "give the class a `paper` (authors, year, title) and a `url`"

    check("exactly the budget, per class", budgets)
    check("explicit class budgets honoured", explicit)
    check("the same seed, the same indices", deterministic)
    check("over the whole pool when not balanced", unbalanced)
    check("a paper to cite", cited)
    return results
