"""GraphCut (Iyer, Khargonkar, Bilmes, Asnani, ALT 2021), maximised greedily with submodlib.

Per group (per class when balanced, else the pool) the selected set S maximises

    f(S) = sum_{i in V, j in S} s_ij - lam * sum_{i, j in S} s_ij,

a representation term minus a redundancy term, with s_ij the cosine similarity between last-layer
gradient embeddings (`features="gradients"`, the closed form of benchmark.similarity, never the C*D-wide
vectors) or between proxy embeddings (`features="embeddings"`).

Kernel: with negative s_ij f is not submodular, so submodlib's lazy greedy (which relies on marginal
gains only shrinking) can pick differently from the plain greedy. Adding a constant c to every s_ij
(diagonal included) changes every candidate's marginal gain at a given step by the same amount,
c (|V| - lam (2 |S| + 1)), so it leaves the plain greedy's picks unchanged; we therefore shift the
kernel by c = max(0, -min s_ij), the least shift that makes it non-negative, and the lazy greedy on it is
exact. The shift is kept minimal because it slows the lazy greedy (every gain then drops by about 2 lam c
per step, so stale bounds stop pruning): a (1 + s) / 2 kernel took 29 s per 5,000 points on random
features. Within one class the gradient cosines are never negative when the embeddings are not (pooled
ReLU features): <e_i, e_j> > 0 for a shared label and 1 + <h_i, h_j> >= 1, so there the shift is 0.
The kernel is built here with torch and handed over as `ggsijs`: letting submodlib build it from
`data=` is an order of magnitude slower. Equal gains are ordered by submodlib.
"""

from dataclasses import dataclass

import numpy as np

from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.submodular import check_dense, check_features, group_similarities, lazy_greedy

# submodlib copies a dense kernel into Python lists (about 32 bytes per entry) before its C++ code sees
# it: 15,000 points already take about 7 GB, a 50,000-point pool 80 GB.
MAX_GROUP_SIZE = 15_000


@register
@dataclass(frozen=True)
class GraphCut(Selector):
    name = "graphcut"
    paper = ("Iyer, Khargonkar, Bilmes, Asnani. Submodular Combinatorial Information Measures with "
             "Applications in Machine Learning. ALT 2021")
    url = "https://arxiv.org/abs/2006.15412"

    lam: float = 1.0  # weight of the redundancy term (above 0.5 the function is non-monotone)
    features: str = "gradients"  # "gradients" (last-layer gradient embeddings) or "embeddings"

    def __post_init__(self):
        check_features(self.features)
        if self.lam < 0:
            raise ValueError(f"lam must be non-negative, got {self.lam}")

    def select(self, context: SelectionContext) -> Selection:
        chosen = []
        for indices, budget in context.groups():
            if budget >= len(indices):  # submodlib refuses a budget equal to the ground set
                chosen.append(indices)
                continue
            check_dense(len(indices), MAX_GROUP_SIZE, "graphcut")
            similarities = group_similarities(context, indices, self.features)
            from submodlib import GraphCutFunction

            kernel = (similarities - similarities.min().clamp(max=0.0)).cpu().numpy()
            positions, _ = lazy_greedy(GraphCutFunction(n=len(indices), mode="dense", lambdaVal=self.lam,
                                                        ggsijs=kernel), budget)
            chosen.append(indices[positions])
        return Selection(indices=np.sort(np.concatenate(chosen)))
