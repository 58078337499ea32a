"""What the submodular selectors (graphcut, facility_location, log_determinant) share: the per-group
similarity kernels they are built on, the guard against dense kernels too large to hold, and submodlib's
lazy greedy called one way (submodlib is imported only when a selection runs: it takes seconds to import)."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.similarity import cosine_gram, gradient_cosine_gram

FEATURES = ("gradients", "embeddings")


def check_features(features: str) -> None:
    if features not in FEATURES:
        raise ValueError(f"features must be 'gradients' or 'embeddings', got {features!r}")


def group_similarities(context, indices: np.ndarray, features: str) -> torch.Tensor:
    """n x n cosine similarities of one group's points: of their closed-form last-layer gradients
    ("gradients") or of their proxy embeddings ("embeddings")."""
    rows = torch.as_tensor(indices, device=context.device)
    if features == "embeddings":
        return cosine_gram(context.embeddings()[rows])
    return gradient_cosine_gram(context.embeddings()[rows], context.probabilities()[rows],
                                context.labels_tensor()[rows])


def check_dense(size: int, limit: int, method: str) -> None:
    if size > limit:
        raise UserError(f"{method} needs a dense {size} x {size} kernel, beyond the {limit:,}-point limit: select "
                        f"per class (without --unbalanced)")


def lazy_greedy(function, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """submodlib's lazy greedy run to exactly `budget` picks (never stopping at zero or negative gains):
    (positions in greedy order, their gains)."""
    picks = function.maximize(budget=budget, optimizer="LazyGreedy", stopIfZeroGain=False, stopIfNegativeGain=False,
                              verbose=False, show_progress=False)
    return (np.asarray([position for position, _ in picks], dtype=np.int64),
            np.asarray([gain for _, gain in picks], dtype=np.float64))
