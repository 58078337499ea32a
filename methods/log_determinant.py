"""Log-determinant (as in Iyer, Khargonkar, Bilmes, Asnani, ALT 2021), maximised greedily.

Per group (per class when balanced, else the pool) the selected set S maximises

    f(S) = log det(K_S + lam I),

with K_S the rows and columns of a positive semi-definite similarity kernel K indexed by S: the log-volume
spanned by the picks, the log-probability of S under a determinantal point process. It rewards picks that
are dissimilar to each other (diversity), with no term for how well they represent the rest. For a PSD K,
f is submodular; the greedy adds the point with the largest Schur complement K_xx + lam - k_xS (K_S +
lam I)^-1 k_Sx, i.e. the point least explained by those already picked.

Citation: as for `graphcut` and `facility_location`, the ALT 2021 paper of the submodlib authors, which DeepCore
(Guo, Zhao, Bai, DEXA 2022) cites for its submodular selectors.

Choices:
- Kernel: cosine similarities, K = U U^T with U the L2-normalised rows of the features. A Gram matrix is
  PSD by construction, so every Schur complement is at least lam > 0 and the logarithm is always defined
  (an RBF kernel would also do, but needs a bandwidth, one more parameter the paper does not fix). The diagonal
  is set to exactly 1 (the cosine of a vector with itself; a zero gradient row keeps 0), so that the first pick
  is an exact tie rather than decided by float rounding.
- Features: last-layer gradient embeddings (`features="gradients"`, default, as DeepCore's submodular
  selectors and `graphcut` use; their cosine Gram is the Gram of the unit gradient vectors, hence PSD) or
  proxy embeddings (`features="embeddings"`).
- lam (submodlib's `lambdaVal`), default 1.0: with cosines (K_xx = 1) every gain is then between log(lam) and
  log(1 + lam); lam = 1 keeps gains non-negative (f monotone), and lam > 0 keeps K_S + lam I invertible even when
  the group has more points than the features have dimensions (K then has rank at most D).
- Optimiser: the plain greedy, run as Chen, Zhang, Zhou's incremental Cholesky (NeurIPS 2018) in torch
  float64: each pick costs one n x |S| matrix-vector product, so a group costs O(n budget^2) in BLAS rather than
  submodlib's scalar C++ (which first copies the kernel into Python lists). Equal gains go to the earliest
  position, so the first pick (always a tie: every K_xx + lam is 1 + lam) is the group's first point.
- Balanced mode maximises f within each class; unbalanced mode once over the pool, up to MAX_GROUP_SIZE points.

DeepCore's LogDeterminant (deepcore/methods/methods_utils/submodular_function.py) scores a candidate x by
k_xS K_S^+ k_Sx, the part of x already explained by S, instead of log(K_xx - k_xS K_S^-1 k_Sx): its greedy
takes the most redundant point, the opposite of the gain.

Cost: the n x n kernel (float32 built, float64 greedy) and an n x budget float64 Cholesky factor per group;
measured in docs/selectors.md.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.submodular import check_dense, check_features, group_similarities

# The float32 kernel, its float64 copy and the n x budget factor: 15,000 points at 50 % take about 4 GB.
MAX_GROUP_SIZE = 15_000


@register
@dataclass(frozen=True)
class LogDeterminant(Selector):
    name = "log_determinant"
    paper = ("Iyer, Khargonkar, Bilmes, Asnani. Submodular Combinatorial Information Measures with "
             "Applications in Machine Learning. ALT 2021")
    url = "https://arxiv.org/abs/2006.15412"

    lam: float = 1.0  # added to the kernel's diagonal (submodlib's lambdaVal); must be positive
    features: str = "gradients"  # "gradients" (last-layer gradient embeddings) or "embeddings"

    def __post_init__(self):
        check_features(self.features)
        if not self.lam > 0:
            raise ValueError(f"lam must be positive (it keeps K_S + lam I invertible), got {self.lam}")

    def select(self, context: SelectionContext) -> Selection:
        chosen = []
        for indices, budget in context.groups():
            if budget >= len(indices):
                chosen.append(indices)
                continue
            check_dense(len(indices), MAX_GROUP_SIZE, "log_determinant")
            kernel = group_similarities(context, indices, self.features)
            diagonal = kernel.diagonal()
            diagonal.copy_(torch.where(diagonal > 0.5, 1.0, 0.0))  # exactly 1, or 0 for a zero row
            positions, _ = greedy_log_determinant(kernel, budget, self.lam)
            chosen.append(indices[positions])
        return Selection(indices=np.sort(np.concatenate(chosen)))


def greedy_log_determinant(kernel: torch.Tensor, budget: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """The greedy maximiser of log det(K_S + lam I) for a PSD `kernel` K: (positions in pick order, gains).

    With L the Cholesky factor of (K + lam I)_S, a candidate's gain is log d_x^2, d_x^2 = K_xx + lam - ||c_x||^2
    its Schur complement, c_x its row of K_xS L^-T. Picking j appends to every c_x the entry
    (K_xj - <c_x, c_j>) / d_j, which lowers d_x^2 by that entry squared."""
    kernel = kernel.to(torch.float64)
    n = len(kernel)
    residuals = kernel.diagonal() + lam
    factors = kernel.new_empty(budget, n)  # row t: the t-th column of every c_x
    positions, gains = [], []
    for t in range(budget):
        j = int(residuals.argmax())
        residual = float(residuals[j])
        if not residual > 0:  # a PSD kernel keeps every residual >= lam; below that, rounding broke it
            raise UserError(f"log_determinant: a Schur complement fell to {residual:.3g} (the kernel is not "
                            f"positive definite enough for lam={lam}): use a larger lam")
        column = (kernel[j] - factors[:t].T @ factors[:t, j]) / residual ** 0.5
        factors[t] = column
        residuals -= column.square()
        residuals[j] = -torch.inf
        positions.append(j)
        gains.append(float(np.log(residual)))
    return np.asarray(positions, dtype=np.int64), np.asarray(gains)
