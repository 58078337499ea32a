"""Facility location (as in Iyer, Khargonkar, Bilmes, Asnani, ALT 2021), maximised greedily with submodlib.

Per group (per class when balanced, else the pool) the selected set S maximises

    f(S) = sum_{i in V} max_{j in S} s_ij,

how well every point of the group is represented by its most similar selected point: a monotone submodular
function (Mirchandani & Francis, Discrete Location Theory, 1990), so the greedy is within 1 - 1/e of the best
set. s_ij is the cosine similarity between last-layer gradient embeddings (`features="gradients"`, the closed
form of benchmark.similarity, never the C*D-wide vectors) or between proxy embeddings (`features="embeddings"`).

Citation: the ALT 2021 paper of the submodlib authors, which defines facility location among the functions
it studies, as DeepCore's benchmark (Guo, Zhao, Bai, DEXA 2022) does for its facility-location selector and
as `graphcut` does here: the three submodular selectors (graphcut, facility_location, log_determinant) then
share one citation and one optimiser and differ only in the function. Facility location was used for data
subset selection before (Wei, Iyer, Bilmes, ICML 2015; CRAIG, Mirzasoleiman et al., ICML 2020, which also
weights each pick by the points it represents); this selector returns no weights, like DeepCore's.

Choices:
- Features: gradients by default, as DeepCore's submodular selectors and `graphcut` do.
- Kernel: submodlib starts every point's best similarity at 0, i.e. it maximises sum_i max(0, max_{j in S} s_ij),
  which differs from f when some s_ij < 0. Adding a constant c to every s_ij adds n c to f(S) for every non-empty
  S, so it changes no greedy pick; we shift by c = max(0, -min s_ij), the least shift that makes the kernel
  non-negative, after which submodlib's function is exactly f (+ n c) and its lazy greedy is the plain greedy.
  Within one class gradient cosines are never negative for non-negative (ReLU) embeddings (see graphcut), so
  the shift is then 0.
- Optimiser: submodlib's LazyGreedy (exact for a submodular f); equal gains are ordered by submodlib.
- Balanced mode maximises f within each class; unbalanced mode once over the pool, up to MAX_GROUP_SIZE points.

Cost: an N x N float32 kernel per group, built with torch and handed to submodlib as a numpy array (which its
C++ code copies once: about 8 bytes per entry in all). Measured on one CPU core for one 4,500 x 1,280 class
(random features, gradient cosines): 5.1 s for 450 picks, 8.7 s for 2,250, about 3 s of it the kernel, so a
class-balanced 45,000-point CIFAR-10 pool takes about 50 s at 10 % and 90 s at 50 % (less with two threads for the
kernel's matrix products).
"""

from dataclasses import dataclass

import numpy as np

from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.submodular import check_dense, check_features, group_similarities, lazy_greedy

# The kernel lives twice (numpy and submodlib's C++ copy), 8 bytes per entry, and building gradient cosines
# takes about two more n x n float32 temporaries: 20,000 points peak near 5 GB, a 50,000-point pool near 30 GB.
MAX_GROUP_SIZE = 20_000


@register
@dataclass(frozen=True)
class FacilityLocation(Selector):
    name = "facility_location"
    paper = ("Iyer, Khargonkar, Bilmes, Asnani. Submodular Combinatorial Information Measures with "
             "Applications in Machine Learning. ALT 2021")
    url = "https://arxiv.org/abs/2006.15412"

    features: str = "gradients"  # "gradients" (last-layer gradient embeddings) or "embeddings"

    def __post_init__(self):
        check_features(self.features)

    def select(self, context: SelectionContext) -> Selection:
        chosen = []
        for indices, budget in context.groups():
            if budget >= len(indices):  # submodlib refuses a budget equal to the ground set
                chosen.append(indices)
                continue
            check_dense(len(indices), MAX_GROUP_SIZE, "facility_location")
            similarities = group_similarities(context, indices, self.features)
            similarities -= similarities.min().clamp(max=0.0)  # in place: the numpy kernel shares this memory
            kernel = similarities.cpu().numpy()
            from submodlib import FacilityLocationFunction

            function = FacilityLocationFunction(n=len(indices), mode="dense", sijs=kernel, separate_rep=False)
            chosen.append(indices[lazy_greedy(function, budget)[0]])
        return Selection(indices=np.sort(np.concatenate(chosen)))

