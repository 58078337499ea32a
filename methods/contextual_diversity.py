"""Contextual diversity (Agarwal, Arora, Anand, Arora, ECCV 2020).

The paper measures how differently two samples are "seen" by the model through their predicted class
distributions, with the symmetric KL divergence KL(p || q) + KL(q || p) as the distance, and picks a
diverse set by k-center greedy under that distance. Here the distributions are the proxy's softmax
outputs and the k-center greedy runs per group (per class when balanced, else over the pool):

    repeat budget times: add the point farthest (in symmetric KL) from its nearest chosen center.

Only the running minimum distance to the chosen set is kept (O(n) memory, one O(n C) update per pick).
The first center of each group is drawn uniformly with `context.rng` (there is no labelled set to start
from); ties for the farthest point go to the lowest index within the group. No per-point scores.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.similarity import symmetric_kl_factors


def k_center_greedy(probabilities: torch.Tensor, budget: int, first: int) -> np.ndarray:
    """Positions (into `probabilities`) of `budget` k-center greedy picks starting from `first`."""
    # symmetric KL from row j to every row as one matrix-vector product (see symmetric_kl_factors)
    left, right, negentropy = symmetric_kl_factors(probabilities)

    def distances_to(j: int) -> torch.Tensor:
        return negentropy + negentropy[j] - left @ right[j]

    chosen = [first]
    nearest = distances_to(first)
    # chosen points must never be picked again, even where a duplicate makes their distance 0 to the set
    taken = torch.zeros(len(probabilities), dtype=torch.bool, device=probabilities.device)
    taken[first] = True
    for _ in range(budget - 1):
        farthest = int(nearest.masked_fill(taken, -torch.inf).argmax())
        chosen.append(farthest)
        taken[farthest] = True
        torch.minimum(nearest, distances_to(farthest), out=nearest)
    return np.asarray(chosen, dtype=np.int64)


@register
@dataclass(frozen=True)
class ContextualDiversity(Selector):
    name = "contextual_diversity"
    paper = "Agarwal, Arora, Anand, Arora. Contextual Diversity for Active Learning. ECCV 2020"
    url = "https://arxiv.org/abs/2008.05723"

    def select(self, context: SelectionContext) -> Selection:
        probabilities = context.probabilities()
        chosen = []
        for indices, budget in context.groups():
            first = int(context.rng.integers(len(indices)))
            chosen.append(indices[k_center_greedy(probabilities[indices], budget, first)])
        return Selection(indices=np.sort(np.concatenate(chosen)))
