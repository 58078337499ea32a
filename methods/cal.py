"""CAL: contrastive active learning (Margatina et al., EMNLP 2021).

A "contrastive" example is one whose predicted class distribution differs from those of its nearest
neighbours in the model's feature space: close in input, far in prediction. Each point is scored by

    score(x) = mean over the k nearest neighbours n of x of KL(p(y | n) || p(y | x)),

with neighbours taken in the proxy's embedding space (Euclidean) among the points of the same group
(the same class when balanced, else the whole pool), and the highest-scoring points are kept, as in
the paper. (DeepCore's port keeps the lowest scores, which selects the least contrastive points.)
The paper finds neighbours among the labelled set; with no labelled set in a coreset, the pool is it.

Ties in score are broken towards the lower pool index. A group with a single point scores it 0.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register
from benchmark.similarity import kl_divergence, nearest_neighbours

# Rows of the (rows x k x C) neighbour-probability block gathered at once.
ROWS_PER_BLOCK = 4096


@register
@dataclass(frozen=True)
class CAL(Selector):
    name = "cal"
    paper = ("Margatina, Vernikos, Barrault, Aletras. Active Learning by Acquiring Contrastive Examples. "
             "EMNLP 2021")
    url = "https://arxiv.org/abs/2109.03764"

    k: int = 10  # neighbours per point (the paper's default)

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")

    def select(self, context: SelectionContext) -> Selection:
        embeddings, probabilities = context.embeddings(), context.probabilities()
        scores = np.zeros(context.pool_size)
        for indices, _ in context.groups():
            scores[indices] = self._scores(embeddings[indices], probabilities[indices])
        return keep_highest(context, scores)

    def _scores(self, embeddings: torch.Tensor, probabilities: torch.Tensor) -> np.ndarray:
        n = len(embeddings)
        if n == 1:
            return np.zeros(1)
        neighbours = nearest_neighbours(embeddings, min(self.k, n - 1))
        scores = torch.empty(n, dtype=torch.float64, device=probabilities.device)
        for start in range(0, n, ROWS_PER_BLOCK):
            rows = slice(start, start + ROWS_PER_BLOCK)
            # KL(p_neighbour || p_candidate): neighbours on the left, the candidate broadcast on the right
            divergences = kl_divergence(probabilities[neighbours[rows]], probabilities[rows, None, :])
            scores[rows] = divergences.mean(1).to(torch.float64)
        return scores.cpu().numpy()
