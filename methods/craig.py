"""CRAIG: Mirzasoleiman, Bilmes & Leskovec, "Coresets for data-efficient training of machine learning
models", ICML 2020 (https://arxiv.org/abs/1906.01827).

A weighted coreset whose gradients stand in for the whole group's. Per group V (one class when balanced,
else the pool) the selected set S maximises the facility location function

    F(S) = sum_{i in V} max_{j in S} (C - d_ij),   C = max_{i, j in V} d_ij,

greedily (a (1 - 1/e) approximation of the maximum; F is monotone submodular), with d_ij the Euclidean
distance between the points' loss gradients. Each selected point j is weighted by the size of its cluster,

    gamma_j = |{i in V : j is the selected point most similar to i}|,

so that sum_{j in S} gamma_j grad_j approximates sum_{i in V} grad_i within sum_i min_{j in S} d_ij (the
paper's bound). The weights of a group sum to the group's size; every selected point has weight >= 1.

Choices the paper leaves open:
- Gradients: the paper bounds d_ij by last-layer gradients for neural networks, as here: the closed-form
  gradient of the cross-entropy w.r.t. the proxy's last linear layer (b, W), g = [e, e outer h], with
  e = p - onehot(y) and h the embedding. Its Gram <g_i, g_j> = <e_i, e_j> (1 + <h_i, h_j>) (`gradient_gram`)
  gives ||g_i - g_j||^2 = G_ii + G_jj - 2 G_ij without building the C + C*D wide vectors.
- Distances are Euclidean, as in the paper's bound (CORDS and the adversarial-coreset code use squared
  distances; DeepCore uses Euclidean ones).
- C is the largest distance within the group, the least constant that keeps every similarity non-negative
  (DeepCore adds 1e-3 to it; that shifts F by a constant per point and changes no greedy choice).
- Greedy: submodlib's lazy greedy on the dense per-group kernel, exact for a submodular F; equal gains are
  ordered by submodlib. A budget that covers the group keeps the whole group with weight 1.
- Ties in "most similar selected point": a selected point represents itself (so a duplicate of it is never
  left with weight 0); any other point goes to the earliest-selected among its equally near ones.
- Balanced selection runs one greedy per class (as the paper's per-class CRAIG and DeepCore do); unbalanced
  selection runs one greedy over the pool, with distances between classes included.

DeepCore's Craig differs: its weights start at 1 and add the cluster counts, so each selected point counts
itself twice (they sum to group size + budget), and in balanced mode the weights come in pool-index order
while the indices come in greedy order, so weights end up attached to the wrong points.

Speed: one dense n x n kernel per group (4,500 x 4,500 per CIFAR-10 class). Measured on one class of 4,500
random points (D = 1280, C = 10) on one CPU thread: 3.9 s at 10 % and 5.0 s at 50 % (1.6 s of it the Gram),
plus 2.6 s once to import submodlib; ten classes thus take about 40 to 50 s.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch

from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.similarity import gradient_gram
from benchmark.submodular import check_dense

# submodlib copies a dense kernel into Python lists (about 32 bytes per entry) before its C++ code sees
# it: 15,000 points already take about 7 GB.
MAX_GROUP_SIZE = 15_000


def facility_location(gram: torch.Tensor, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Greedy maximiser of F(S) = sum_i max_{j in S} (C - d_ij) over the points whose gradient Gram is `gram`
    (d_ij = ||g_i - g_j||, C = max d_ij), and the cluster sizes of the selected points: (positions in greedy
    order, weights)."""
    n = len(gram)
    if budget >= n:  # submodlib refuses a budget equal to the ground set
        return np.arange(n), np.ones(n)
    norms = gram.diagonal()
    distances = (norms[:, None] + norms[None, :] - 2.0 * gram).clamp_(min=0.0).sqrt_()
    distances.fill_diagonal_(0.0)
    kernel = (distances.max() - distances).to(torch.float32).cpu().numpy()
    from submodlib import FacilityLocationFunction  # here, not at the top: it takes seconds to import

    function = FacilityLocationFunction(n=n, mode="dense", separate_rep=False, sijs=kernel)
    picks = function.maximize(budget=budget, optimizer="LazyGreedy", stopIfZeroGain=False,
                              stopIfNegativeGain=False, verbose=False, show_progress=False)
    positions = np.asarray([position for position, _gain in picks], dtype=np.int64)
    if len(positions) != budget:
        raise RuntimeError(f"submodlib returned {len(positions)} points for a budget of {budget}")
    owner = kernel[positions].argmax(0)  # per point: its most similar selected point (earliest on ties)
    owner[positions] = np.arange(budget)
    return positions, np.bincount(owner, minlength=budget).astype(np.float64)


def craig_selection(embeddings: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor,
                    groups: Iterable[tuple[np.ndarray, int]]) -> Selection:
    """CRAIG over each (pool indices, budget) group, on the last-layer gradients that `embeddings`,
    `probabilities` and `labels` (rows = pool points) define."""
    chosen, weights = [], []
    for indices, budget in groups:
        if budget >= len(indices):
            positions, group_weights = np.arange(len(indices)), np.ones(len(indices))
        else:
            check_dense(len(indices), MAX_GROUP_SIZE, "craig")
            rows = torch.as_tensor(indices, device=embeddings.device)
            gram = gradient_gram(embeddings[rows], probabilities[rows], labels.to(embeddings.device)[rows])
            positions, group_weights = facility_location(gram, budget)
        chosen.append(indices[positions])
        weights.append(group_weights)
    indices, weights = np.concatenate(chosen), np.concatenate(weights)
    order = np.argsort(indices, kind="stable")
    return Selection(indices=indices[order], weights=weights[order])


@register
@dataclass(frozen=True)
class Craig(Selector):
    name = "craig"
    paper = ("Mirzasoleiman, Bilmes & Leskovec. Coresets for data-efficient training of machine learning models. "
             "ICML 2020")
    url = "https://arxiv.org/abs/1906.01827"

    def select(self, context: SelectionContext) -> Selection:
        return craig_selection(context.embeddings(), context.probabilities(), context.labels_tensor(),
                               context.groups())
