"""The selector protocol: what a selector receives (`SelectionContext`), what it returns (`Selection`),
how it is registered and found, and the checks every selection passes before anything trains on it.

A selector is a frozen dataclass in one file of `benchmark.methods` (the repository's `methods/`), or in any
installed package that declares an entry point in the group ``coreset_bench.selectors``. Its fields are its
parameters; they are checked when it is built (`__post_init__`) and written into the run record, so runs
with different settings never share a record.

A context hands out copies of what the harness holds (labels and budgets read-only, images and validation
labels cloned), so a selector cannot change what is trained on or what another selector sees.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from benchmark.data import stratified_counts
from benchmark.errors import UserError
from benchmark.registry import Registry
from benchmark.seeding import numpy_rng, torch_generator


@dataclass(frozen=True)
class Selection:
    """Indices into the selection pool; optional per-sample weights (same length) and per-pool scores."""

    indices: np.ndarray
    weights: np.ndarray | None = None
    scores: np.ndarray | None = None


@dataclass(frozen=True)
class ValidationOutputs:
    """Proxy outputs on the held-out validation split (never the test set)."""

    labels: torch.Tensor
    embeddings: torch.Tensor
    probabilities: torch.Tensor


@dataclass(frozen=True)
class TrainingDynamics:
    """What the shared proxy saw of each pool point while it trained, recorded from the training forward
    passes themselves (augmented images, train-mode batch norm, the weights before that step's update), as
    Toneva et al. and Pleiss et al. record them. Rows are proxy epochs, columns pool points:

    - `correct`: whether the point was classified correctly when it was presented (bool, E x N),
    - `margin`: its logit minus the largest other logit (AUM's margin; float32, E x N),
    - `loss`: its cross-entropy loss (float32, E x N); exp(-loss) is the probability of its label.
    """

    correct: torch.Tensor
    margin: torch.Tensor
    loss: torch.Tensor

    @property
    def epochs(self) -> int:
        return self.correct.shape[0]


class FeatureSource(Protocol):
    """Where a context gets model-derived quantities. The harness passes a lazily trained, cached
    proxy (`benchmark.proxy.ProxyFeatures`); `ArrayFeatures` wraps plain arrays."""

    def embeddings(self) -> torch.Tensor: ...

    def probabilities(self) -> torch.Tensor: ...

    def validation(self) -> ValidationOutputs: ...

    def training_dynamics(self) -> TrainingDynamics: ...

    def proxy_model(self) -> torch.nn.Module: ...

    def pool_images(self) -> torch.Tensor: ...

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]: ...


def _as_float_tensor(values, what: str) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(values) if not torch.is_tensor(values) else values)
    tensor = tensor.to(torch.float32)
    if tensor.ndim != 2:
        raise UserError(f"{what} must be a 2-D array (points x dimensions), got shape {tuple(tensor.shape)}")
    if not torch.isfinite(tensor).all():
        raise UserError(f"{what} contain NaN or infinite values: fix the features before selecting")
    return tensor


class ArrayFeatures:
    """Features given as arrays: for toy data in tests and for selecting on anyone's own features."""

    def __init__(self, embeddings=None, probabilities=None, validation: ValidationOutputs | None = None,
                 training_dynamics: TrainingDynamics | None = None, model: torch.nn.Module | None = None,
                 images: torch.Tensor | None = None):
        self._embeddings = None if embeddings is None else _as_float_tensor(embeddings, "embeddings")
        self._probabilities = None if probabilities is None else _as_float_tensor(probabilities, "probabilities")
        self._validation = validation
        self._dynamics = training_dynamics
        self._model = model
        self._images = images

    def _missing(self, what: str):
        return UserError(f"this selector needs {what}, but the context was built from arrays without them: "
                         f"pass {what} to SelectionContext.from_arrays")

    def _given(self, value, what: str):
        if value is None:
            raise self._missing(what)
        return value

    def embeddings(self) -> torch.Tensor:
        return self._given(self._embeddings, "embeddings")

    def probabilities(self) -> torch.Tensor:
        return self._given(self._probabilities, "probabilities")

    def validation(self) -> ValidationOutputs:
        return self._given(self._validation, "validation outputs")

    def training_dynamics(self) -> TrainingDynamics:
        return self._given(self._dynamics, "training_dynamics")

    def proxy_model(self) -> torch.nn.Module:
        return self._given(self._model, "model")

    def pool_images(self) -> torch.Tensor:
        return self._given(self._images, "images")

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        raise self._missing("proxy models (build the context from a dataset)")


def _read_only(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


class SelectionContext:
    """Everything a selector may use: labels, budgets, a seeded RNG and lazily computed proxy outputs.
    Sizes and budgets are read-only; arrays are read-only copies; tensors are the context's own."""

    def __init__(self, *, labels, num_classes: int, budget: int, seed: int, features: FeatureSource,
                 balance: bool = True, class_budgets=None, device: str | torch.device = "cpu"):
        labels = np.asarray(labels)
        if labels.ndim != 1 or len(labels) == 0 or not np.issubdtype(labels.dtype, np.integer):
            raise UserError("labels must be a non-empty 1-D array of integers")
        if labels.min() < 0 or labels.max() >= num_classes:
            raise UserError(f"labels must lie in 0..{num_classes - 1}")
        if not 1 <= budget <= len(labels):
            raise UserError(f"budget {budget} must be between 1 and the pool size {len(labels)}")
        self._labels = _read_only(labels.astype(np.int64))
        self._num_classes = int(num_classes)
        self._budget = int(budget)
        self._seed = int(seed)
        self._balance = bool(balance)
        self.device = torch.device(device)
        self._features = features
        self.rng = numpy_rng(seed, "selection")
        if class_budgets is None:
            class_budgets = stratified_counts(self._labels, self._num_classes, self._budget)
        self._class_budgets = _read_only(np.asarray(class_budgets, dtype=np.int64))
        self._check_class_budgets()
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_arrays(cls, *, labels, budget: int, seed: int = 0, num_classes: int | None = None,
                    embeddings=None, probabilities=None, validation: ValidationOutputs | None = None,
                    training_dynamics: TrainingDynamics | None = None, model: torch.nn.Module | None = None,
                    images: torch.Tensor | None = None, balance: bool = True,
                    class_budgets=None) -> SelectionContext:
        """A context with no dataset: selectors run on the features (and, where given, model, images and
        training dynamics) passed here."""
        labels = np.asarray(labels, dtype=np.int64)
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        features = ArrayFeatures(embeddings, probabilities, validation, training_dynamics, model, images)
        for name, tensor in (("embeddings", features._embeddings), ("probabilities", features._probabilities)):
            if tensor is not None and len(tensor) != len(labels):
                raise UserError(f"{name} have {len(tensor)} rows but there are {len(labels)} labels")
        return cls(labels=labels, num_classes=num_classes, budget=budget, seed=seed, features=features,
                   balance=balance, class_budgets=class_budgets)

    def _check_class_budgets(self) -> None:
        if self._class_budgets.shape != (self._num_classes,) or (self._class_budgets < 0).any():
            raise UserError(f"class budgets must be {self._num_classes} non-negative integers")
        if self._balance and self._class_budgets.sum() != self._budget:
            raise UserError(f"class budgets sum to {self._class_budgets.sum()}, not the budget {self._budget}")
        counts = np.bincount(self._labels, minlength=self._num_classes)
        short = np.flatnonzero(self._class_budgets > counts)
        if self._balance and len(short):
            c = int(short[0])
            raise UserError(f"class {c} has {counts[c]} points but a budget of {self._class_budgets[c]}: "
                            f"lower the fraction or select with --unbalanced (over the whole pool)")

    # --- sizes and groups (read-only) -------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        return self._labels

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def budget(self) -> int:
        return self._budget

    @property
    def class_budgets(self) -> np.ndarray:
        return self._class_budgets

    @property
    def seed(self) -> int:
        return self._seed

    @property
    def balance(self) -> bool:
        return self._balance

    @property
    def pool_size(self) -> int:
        return len(self._labels)

    def labels_tensor(self) -> torch.Tensor:
        """The labels as an int64 tensor on `device` (a copy)."""
        return torch.tensor(self._labels, device=self.device)

    def class_indices(self, c: int) -> np.ndarray:
        return np.flatnonzero(self._labels == c)

    def groups(self) -> Iterator[tuple[np.ndarray, int]]:
        """(pool indices, budget) pairs to select within: one per class when balanced, else the pool."""
        if self._balance:
            for c in range(self._num_classes):
                if self._class_budgets[c] > 0:
                    yield self.class_indices(c), int(self._class_budgets[c])
        else:
            yield np.arange(self.pool_size), self._budget

    def torch_generator(self, purpose: str = "selection") -> torch.Generator:
        return torch_generator(self._seed, purpose)

    # --- proxy outputs (lazy, cached) -------------------------------------------------------------
    def _cached(self, key: str, compute):
        if key not in self._cache:
            value = compute()
            tensors = dataclasses.astuple(value) if dataclasses.is_dataclass(value) else (value,)
            if any(isinstance(t, torch.Tensor) and t.is_floating_point() and not torch.isfinite(t).all()
                   for t in tensors):
                # a diverged proxy: no selector can mean anything by NaN distances or scores
                raise UserError(f"the proxy's {key} contain NaN or infinite values (its training diverged): lower "
                                f"the proxy's learning rate or batch size, then run again")
            self._cache[key] = value
        return self._cache[key]

    def embeddings(self) -> torch.Tensor:
        """Penultimate-layer features of the proxy on the pool, N x D, float32 on `device`."""
        return self._cached("embeddings", lambda: self._features.embeddings().to(self.device, torch.float32))

    def probabilities(self) -> torch.Tensor:
        """Softmax outputs of the proxy on the pool, N x C, float32 on `device`."""
        return self._cached("probabilities",
                            lambda: self._features.probabilities().to(self.device, torch.float32))

    def validation(self) -> ValidationOutputs:
        def move():
            v = self._features.validation()
            return ValidationOutputs(v.labels.to(self.device).clone(), v.embeddings.to(self.device, torch.float32),
                                     v.probabilities.to(self.device, torch.float32))
        return self._cached("validation", move)

    def training_dynamics(self) -> TrainingDynamics:
        """Per epoch and pool point, what the shared proxy saw while training (see `TrainingDynamics`)."""
        def move():
            d = self._features.training_dynamics()
            return TrainingDynamics(d.correct.to(self.device), d.margin.to(self.device, torch.float32),
                                    d.loss.to(self.device, torch.float32))
        return self._cached("training dynamics", move)

    def gradient_embeddings(self, indices=None) -> torch.Tensor:
        """Closed-form gradient of the cross-entropy loss w.r.t. the proxy's last linear layer:
        [dL/db, dL/dW] = [p - y, (p - y) outer h], flattened to C + C*D columns."""
        index = slice(None) if indices is None else torch.as_tensor(np.asarray(indices), device=self.device)
        return last_layer_gradients(self.embeddings()[index], self.probabilities()[index],
                                    self.labels_tensor()[index])

    def proxy_model(self) -> torch.nn.Module:
        """The shared proxy itself (eval mode, a fresh copy), for selectors that need gradients of the
        network, not only its outputs."""
        return self._features.proxy_model()

    def pool_images(self) -> torch.Tensor:
        """The pool's images, uint8 N x 3 x H x W (a copy)."""
        return self._features.pool_images().clone()

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        """`count` proxies from distinct derived seeds, each trained `epochs` epochs on the pool (cached)."""
        return self._features.proxy_models(count, epochs)


def keep_highest(context: SelectionContext, scores: np.ndarray) -> Selection:
    """The highest-scoring points of each group (ties to the lower pool index), with the scores attached."""
    chosen = [indices[np.argsort(-scores[indices], kind="stable")[:budget]] for indices, budget in context.groups()]
    return Selection(indices=np.sort(np.concatenate(chosen)), scores=scores)


def last_layer_gradients(embeddings: torch.Tensor, probabilities: torch.Tensor,
                         labels: torch.Tensor) -> torch.Tensor:
    error = probabilities.clone()
    error[torch.arange(len(labels), device=error.device), labels] -= 1.0
    outer = (error[:, :, None] * embeddings[:, None, :]).flatten(1)
    return torch.cat([error, outer], dim=1)


# --- selectors and their registry ----------------------------------------------------------------
@dataclass(frozen=True)
class Selector:
    """Base of every selector. Subclasses are frozen dataclasses whose fields are their parameters; they
    check them in `__post_init__` (raise ValueError), so a bad value fails before any data loads."""

    name: ClassVar[str]
    paper: ClassVar[str]
    url: ClassVar[str] = ""
    whole_pool: ClassVar[bool] = False  # True: ignores the fraction and is run once at fraction 1.0
    uses_proxy: ClassVar[bool] = True  # False: the harness need not train the shared proxy first

    def select(self, context: SelectionContext) -> Selection:
        raise NotImplementedError

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def own_proxies(self) -> tuple[int, int]:
        """(count, epochs) of the proxies it trains itself, per seed, through `context.proxy_models`: the dry
        run counts them, and the Ray executor trains them once per seed before the method's runs."""
        return 0, 0


SELECTORS = Registry("method", "benchmark.methods", "coreset_bench.selectors")
ENTRY_POINT_GROUP = SELECTORS.group
register = SELECTORS.register
available_selectors = SELECTORS.available


def create_selector(name: str, params: dict[str, Any] | None = None) -> Selector:
    """The one factory: unknown names and unknown, ill-typed or invalid parameters fail with what is known."""
    return SELECTORS.create(name, params)


def validate_selection(selection: Selection, context: SelectionContext | None = None, method: str = "", *,
                       budget: int | None = None, pool_size: int | None = None) -> Selection:
    """Every selection is checked here: integer, unique, in range, exactly the budget unless weighted; weights
    finite, non-negative and not all zero. The harness passes the budget and pool size it set itself (not
    whatever the selector's context says); tests may pass the context instead."""
    budget = context.budget if budget is None else budget
    pool_size = context.pool_size if pool_size is None else pool_size
    def fail(problem: str):
        raise UserError(f"selector {method!r} returned {problem}")

    if not isinstance(selection, Selection):
        fail(f"a {type(selection).__name__}, not a Selection")
    indices = np.asarray(selection.indices)
    if indices.ndim != 1:
        fail(f"indices of shape {indices.shape}; expected a 1-D array")
    if indices.size and not np.issubdtype(indices.dtype, np.integer):
        fail(f"indices of type {indices.dtype}; expected integers")
    indices = indices.astype(np.int64)
    if indices.size and (indices.min() < 0 or indices.max() >= pool_size):
        fail(f"indices outside 0..{pool_size - 1}")
    if len(np.unique(indices)) != len(indices):
        fail(f"{len(indices) - len(np.unique(indices))} duplicate indices")
    weights = selection.weights
    if weights is None:
        if len(indices) != budget:
            fail(f"{len(indices)} indices for a budget of {budget}")
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != indices.shape or not np.isfinite(weights).all() or (weights < 0).any():
            fail("weights that are not one finite non-negative number per index")
        if not weights.sum() > 0:
            fail("weights that are all zero (nothing would be trained on)")
        if not 1 <= len(indices) <= budget:
            fail(f"{len(indices)} weighted indices for a budget of {budget}")
    scores = selection.scores
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (pool_size,):
            fail(f"scores of shape {scores.shape}; expected one per pool point ({pool_size})")
    return Selection(indices=indices, weights=weights, scores=scores)
