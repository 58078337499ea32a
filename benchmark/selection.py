"""The selector protocol: what a selector receives (`SelectionContext`), what it returns (`Selection`),
how it is registered and found, and the checks every selection passes before anything trains on it.

A selector is a frozen dataclass in one file of `methods/` (or in any installed package that declares
an entry point in the group ``coreset_bench.selectors``). Its fields are its parameters; they are
written into the run record, so runs with different settings never share a record.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.metadata
import pkgutil
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

import numpy as np
import torch

from benchmark.data import stratified_counts
from benchmark.errors import UserError
from benchmark.seeding import numpy_rng, torch_generator

ENTRY_POINT_GROUP = "coreset_bench.selectors"


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


class FeatureSource(Protocol):
    """Where a context gets model-derived quantities. The harness passes a lazily trained, cached
    proxy (`benchmark.proxy.ProxyFeatures`); `ArrayFeatures` wraps plain arrays."""

    def embeddings(self) -> torch.Tensor: ...

    def probabilities(self) -> torch.Tensor: ...

    def validation(self) -> ValidationOutputs: ...

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

    def __init__(self, embeddings=None, probabilities=None, validation: ValidationOutputs | None = None):
        self._embeddings = None if embeddings is None else _as_float_tensor(embeddings, "embeddings")
        self._probabilities = None if probabilities is None else _as_float_tensor(probabilities, "probabilities")
        self._validation = validation

    def _missing(self, what: str):
        return UserError(f"this selector needs {what}, but the context was built from arrays without them: "
                         f"pass {what} to SelectionContext.from_arrays")

    def embeddings(self) -> torch.Tensor:
        if self._embeddings is None:
            raise self._missing("embeddings")
        return self._embeddings

    def probabilities(self) -> torch.Tensor:
        if self._probabilities is None:
            raise self._missing("probabilities")
        return self._probabilities

    def validation(self) -> ValidationOutputs:
        if self._validation is None:
            raise self._missing("validation outputs")
        return self._validation

    def pool_images(self) -> torch.Tensor:
        raise self._missing("images (build the context from a dataset)")

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        raise self._missing("proxy models (build the context from a dataset)")


class SelectionContext:
    """Everything a selector may use: labels, budgets, a seeded RNG and lazily computed proxy outputs."""

    def __init__(self, *, labels, num_classes: int, budget: int, seed: int, features: FeatureSource,
                 balance: bool = True, class_budgets=None, device: str | torch.device = "cpu"):
        self.labels = np.asarray(labels, dtype=np.int64)
        if self.labels.ndim != 1 or len(self.labels) == 0:
            raise UserError("labels must be a non-empty 1-D array")
        if self.labels.min() < 0 or self.labels.max() >= num_classes:
            raise UserError(f"labels must lie in 0..{num_classes - 1}")
        if not 1 <= budget <= len(self.labels):
            raise UserError(f"budget {budget} must be between 1 and the pool size {len(self.labels)}")
        self.num_classes = int(num_classes)
        self.budget = int(budget)
        self.seed = int(seed)
        self.balance = bool(balance)
        self.device = torch.device(device)
        self.features = features
        self.rng = numpy_rng(seed, "selection")
        if class_budgets is None:
            class_budgets = stratified_counts(self.labels, self.num_classes, self.budget)
        self.class_budgets = np.asarray(class_budgets, dtype=np.int64)
        self._check_class_budgets()
        self._cache: dict[str, Any] = {}

    @classmethod
    def from_arrays(cls, *, labels, budget: int, seed: int = 0, num_classes: int | None = None,
                    embeddings=None, probabilities=None, validation: ValidationOutputs | None = None,
                    balance: bool = True, class_budgets=None) -> SelectionContext:
        """A context with no dataset and no model: selectors run on the features given here."""
        labels = np.asarray(labels, dtype=np.int64)
        if num_classes is None:
            num_classes = int(labels.max()) + 1 if len(labels) else 0
        features = ArrayFeatures(embeddings, probabilities, validation)
        for name, tensor in (("embeddings", features._embeddings), ("probabilities", features._probabilities)):
            if tensor is not None and len(tensor) != len(labels):
                raise UserError(f"{name} have {len(tensor)} rows but there are {len(labels)} labels")
        return cls(labels=labels, num_classes=num_classes, budget=budget, seed=seed, features=features,
                   balance=balance, class_budgets=class_budgets)

    def _check_class_budgets(self) -> None:
        if self.class_budgets.shape != (self.num_classes,) or (self.class_budgets < 0).any():
            raise UserError(f"class budgets must be {self.num_classes} non-negative integers")
        if self.balance and self.class_budgets.sum() != self.budget:
            raise UserError(f"class budgets sum to {self.class_budgets.sum()}, not the budget {self.budget}")
        counts = np.bincount(self.labels, minlength=self.num_classes)
        short = np.flatnonzero(self.class_budgets > counts)
        if self.balance and len(short):
            c = int(short[0])
            raise UserError(f"class {c} has {counts[c]} points but a budget of {self.class_budgets[c]}: "
                            f"lower the fraction or select with balance=False")

    # --- sizes and groups -------------------------------------------------------------------------
    @property
    def pool_size(self) -> int:
        return len(self.labels)

    def class_indices(self, c: int) -> np.ndarray:
        return np.flatnonzero(self.labels == c)

    def groups(self) -> Iterator[tuple[np.ndarray, int]]:
        """(pool indices, budget) pairs to select within: one per class when balanced, else the pool."""
        if self.balance:
            for c in range(self.num_classes):
                if self.class_budgets[c] > 0:
                    yield self.class_indices(c), int(self.class_budgets[c])
        else:
            yield np.arange(self.pool_size), self.budget

    def torch_generator(self, purpose: str = "selection") -> torch.Generator:
        return torch_generator(self.seed, purpose)

    # --- proxy outputs (lazy, cached) -------------------------------------------------------------
    def _cached(self, key: str, compute):
        if key not in self._cache:
            value = compute()
            if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all():
                # a diverged proxy: no selector can mean anything by NaN distances or scores
                raise UserError(f"the proxy's {key} contain NaN or infinite values (its training diverged): lower "
                                f"the proxy's learning rate or batch size, then run again")
            self._cache[key] = value
        return self._cache[key]

    def embeddings(self) -> torch.Tensor:
        """Penultimate-layer features of the proxy on the pool, N x D, float32 on `device`."""
        return self._cached("embeddings", lambda: self.features.embeddings().to(self.device, torch.float32))

    def probabilities(self) -> torch.Tensor:
        """Softmax outputs of the proxy on the pool, N x C, float32 on `device`."""
        return self._cached("probabilities",
                            lambda: self.features.probabilities().to(self.device, torch.float32))

    def validation(self) -> ValidationOutputs:
        def move():
            v = self.features.validation()
            return ValidationOutputs(v.labels.to(self.device), v.embeddings.to(self.device, torch.float32),
                                     v.probabilities.to(self.device, torch.float32))
        return self._cached("validation", move)

    def gradient_embeddings(self, indices=None) -> torch.Tensor:
        """Closed-form gradient of the cross-entropy loss w.r.t. the proxy's last linear layer:
        [dL/db, dL/dW] = [p - y, (p - y) outer h], flattened to C + C*D columns."""
        index = slice(None) if indices is None else torch.as_tensor(np.asarray(indices), device=self.device)
        labels = torch.as_tensor(self.labels, device=self.device)[index]
        return last_layer_gradients(self.embeddings()[index], self.probabilities()[index], labels)

    def pool_images(self) -> torch.Tensor:
        return self.features.pool_images()

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        """`count` proxies from distinct derived seeds, each trained `epochs` epochs on the pool (cached)."""
        return self.features.proxy_models(count, epochs)


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
    """Base of every selector. Subclasses are frozen dataclasses whose fields are their parameters."""

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


_REGISTRY: dict[str, type[Selector]] = {}
_discovered = False


def register(cls: type[Selector]) -> type[Selector]:
    """Class decorator: makes a selector available under `cls.name`."""
    for attribute in ("name", "paper"):  # the leaderboard cites the paper of every method it ranks
        value = getattr(cls, attribute, None)
        if not isinstance(value, str) or not value:
            raise TypeError(f"selector {cls.__qualname__} needs a class attribute `{attribute}` (a non-empty string)")
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name].__qualname__ != cls.__qualname__:
        warnings.warn(f"selector {name!r} registered twice; {cls.__module__}.{cls.__qualname__} replaces "
                      f"{_REGISTRY[name].__module__}.{_REGISTRY[name].__qualname__}", stacklevel=2)
    _REGISTRY[name] = cls
    return cls


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    import methods

    for module in pkgutil.iter_modules(methods.__path__):
        importlib.import_module(f"methods.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            loaded = entry_point.load()
            if isinstance(loaded, type) and issubclass(loaded, Selector):
                register(loaded)
        except Exception as error:  # a broken plug-in must not take the benchmark down with it
            warnings.warn(f"selector plug-in {entry_point.name!r} failed to load: {error}", stacklevel=2)


def available_selectors() -> dict[str, type[Selector]]:
    _discover()
    return dict(sorted(_REGISTRY.items()))


def create_selector(name: str, params: dict[str, Any] | None = None) -> Selector:
    """The one factory: unknown names and unknown or ill-typed parameters fail with what is known."""
    selectors = available_selectors()
    if name not in selectors:
        raise UserError(f"unknown method {name!r}; known methods: {', '.join(selectors)}")
    cls = selectors[name]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    converted = {}
    for key, value in (params or {}).items():
        if key not in fields:
            known = ", ".join(fields) or "none"
            raise UserError(f"method {name!r} has no parameter {key!r}; its parameters: {known}")
        converted[key] = _convert(value, fields[key], name)
    try:
        return cls(**converted)
    except (TypeError, ValueError) as error:
        raise UserError(f"method {name!r}: {error}") from None


def _convert(value: Any, field: dataclasses.Field, method: str) -> Any:
    if not isinstance(value, str):
        return value
    kind = field.type if isinstance(field.type, str) else getattr(field.type, "__name__", "str")
    try:
        if kind == "bool":
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
    except ValueError:
        raise UserError(f"method {method!r}: parameter {field.name} must be {kind}, got {value!r}") from None
    return value


def validate_selection(selection: Selection, context: SelectionContext, method: str) -> Selection:
    """Every selection is checked here: integer, unique, in range, exactly the budget unless weighted."""
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
    if indices.size and (indices.min() < 0 or indices.max() >= context.pool_size):
        fail(f"indices outside 0..{context.pool_size - 1}")
    if len(np.unique(indices)) != len(indices):
        fail(f"{len(indices) - len(np.unique(indices))} duplicate indices")
    weights = selection.weights
    if weights is None:
        if len(indices) != context.budget:
            fail(f"{len(indices)} indices for a budget of {context.budget}")
    else:
        weights = np.asarray(weights, dtype=np.float64)
        if weights.shape != indices.shape or not np.isfinite(weights).all() or (weights < 0).any():
            fail("weights that are not one finite non-negative number per index")
        if not 1 <= len(indices) <= context.budget:
            fail(f"{len(indices)} weighted indices for a budget of {context.budget}")
    scores = selection.scores
    if scores is not None:
        scores = np.asarray(scores, dtype=np.float64)
        if scores.shape != (context.pool_size,):
            fail(f"scores of shape {scores.shape}; expected one per pool point ({context.pool_size})")
    return Selection(indices=indices, weights=weights, scores=scores)
