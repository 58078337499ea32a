"""GRAD-MATCH: Killamsetty, Sivasubramanian, Ramakrishnan, De & Iyer, "GRAD-MATCH: Gradient matching based
data subset selection for efficient deep model training", ICML 2021 (https://arxiv.org/abs/2103.00123).

A weighted subset whose weighted gradient sum matches the group's: per group V (one class when balanced, else
the pool), with g_i the loss gradient of point i,

    min_{S, |S| = budget} min_{w >= 0} E(S, w) = || sum_{i in V} g_i - sum_{j in S} w_j g_j ||^2 + lam ||w||^2,

solved greedily by (non-negative) orthogonal matching pursuit: add the point most correlated with the current
residual, refit the weights, repeat.

Choices the paper leaves open, and what is done here:
- Gradients: the closed-form gradient of the cross-entropy w.r.t. the proxy's last linear layer,
  g = [e, e outer h] (e = p - onehot(y), h the embedding), as the paper's last-layer approximation. Everything
  runs on their Gram G_ij = <e_i, e_j>(1 + <h_i, h_j>) (benchmark.similarity.gradient_gram): the target's
  correlations are the row sums of G, and the C + C*D wide gradients are never built. (CORDS' CIFAR configs
  use "PerClassPerGradient", which keeps only the rows of the class's own output unit, [e_c, e_c h].)
- Target: the group's summed training gradient (CORDS with valid=False, its CIFAR setting). DeepCore matches
  the mean, which only rescales the weights, and so changes what lam means.
- lam = 0.5, the value of CORDS' GradMatch configs (configs/SL/config_gradmatch*_cifar10.py: lam=0.5,
  eps=1e-100); CORDS' class default is 0 and DeepCore's 1. It must be positive here (see below).
- Non-negativity: the weights are refitted at every step under w >= 0 by the active-set method of Lawson &
  Hanson, warm-started from the previous step: the new point enters; while the unconstrained ridge solution
  on the support has a non-positive weight, the weights move towards it until one reaches 0, and that point
  leaves the support (it may be chosen again later, competing with every other point). After every step the
  weights are the ridge solution on the support and all positive, i.e. the non-negative least squares
  solution there. The whole is Lawson-Hanson NNLS on the group with OMP's entering rule (the largest positive
  residual correlation), stopped once the support holds `budget` points.
- Stopping early: when no point outside the support has a positive residual correlation, no non-negative
  weight can lower E and the pursuit stops. The rest of the budget is then filled as CORDS' GradMatchStrategy
  does: points drawn at random (here from the same group, with `context.rng`, so class budgets hold) with
  weight 1. A budget that covers the whole group keeps it with weight 1.
- Ties in the entering rule go to the lower position in the group.

DeepCore's GradMatch returns only the points with non-zero weights, so fewer than the budget when the
pursuit stalls or its final NNLS zeroes weights; it also solves NNLS with G_SS + lam I as the design
matrix (not the ridge objective) and only after the last step, picking each step by unconstrained weights.

Algorithm (Gram-space OMP, each step O(n k) for k selected points): with M = G_SS + lam I = L L^T (a
Cholesky factor grown one row per step), the n x k matrix U = G[:, S] L^-T and z = L^-1 c_S (c the target's
correlations) give the residual correlations rho = c - G[:, S] w = c - U z, updated per step by one new column
of U, and, because lam > 0, the ridge weights for free: lam w_S = rho_S (the normal equations). A point that
leaves the support is rotated out of L, U and z with Givens rotations. The pursuit is float64 throughout
(the weights come from rho, so its rounding must stay far below lam). Measured on one class of 4,500 random
points (D = 1280, C = 10) on one CPU thread: 1.7 s at 10 % and 10 s at 50 % (1.6 s of it the Gram; 7 points
left the support on the way); ten classes thus take about 17 s and 100 s.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from benchmark.methods.craig import MAX_GROUP_SIZE

from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.similarity import gradient_gram
from benchmark.submodular import check_dense

# The pursuit stops when no point's residual correlation exceeds this fraction of the largest target
# correlation (rounding noise on a vanished residual is far smaller).
RELATIVE_TOLERANCE = 1e-10


class _Factorization:
    """The support S (ordered), the Cholesky factor L of G_SS + lam I, U = G[:, S] L^-T (stored as k x n
    rows), z = L^-1 c_S and the residual correlations rho = c - U z, kept consistent as points enter and
    leave."""

    def __init__(self, gram: np.ndarray, target: np.ndarray, capacity: int, lam: float):
        self.gram, self.target, self.lam = gram, target, lam
        self.size = 0
        self.support = np.empty(capacity, dtype=np.int64)
        self.factor = np.zeros((capacity, capacity))
        self.basis = np.empty((capacity, len(gram)))
        self._basis = torch.from_numpy(self.basis)  # the same memory: torch's (MKL) matrix-vector product is faster
        self.coords = np.empty(capacity)
        self.residual = target.copy()

    def append(self, j: int) -> None:
        k = self.size
        row = self.basis[:k, j].copy()  # L^-1 G_Sj: row j of U
        pivot = math.sqrt(max(self.gram[j, j] + self.lam - row @ row, 1e-12 * (self.gram[j, j] + self.lam)))
        column = (self.gram[j] - torch.mv(self._basis[:k].T, torch.from_numpy(row)).numpy()) / pivot
        self.factor[k, :k], self.factor[k, k] = row, pivot
        self.coords[k] = (self.target[j] - row @ self.coords[:k]) / pivot
        self.basis[k] = column
        self.support[k] = j
        self.residual -= column * self.coords[k]
        self.size = k + 1

    def remove(self, p: int) -> None:
        """Drop the point at position p: L's trailing block absorbs L's column p below the diagonal (a rank-one
        Cholesky update by Givens rotations); the same rotations act on U's rows and z, and the direction left
        over is added back to rho."""
        k = self.size
        spill = self.factor[p + 1:k, p].copy()
        out_basis, out_coord = self.basis[p].copy(), self.coords[p]
        for i in range(p + 1, k):
            a, b = self.factor[i, i], spill[i - p - 1]
            radius = math.hypot(a, b)
            c, s = a / radius, b / radius
            column = self.factor[i:k, i].copy()
            self.factor[i:k, i] = c * column + s * spill[i - p - 1:]
            spill[i - p - 1:] = c * spill[i - p - 1:] - s * column
            kept = self.basis[i].copy()
            self.basis[i] = c * kept + s * out_basis
            out_basis = c * out_basis - s * kept
            self.coords[i], out_coord = c * self.coords[i] + s * out_coord, c * out_coord - s * self.coords[i]
        self.residual += out_basis * out_coord
        keep = np.r_[0:p, p + 1:k]
        self.factor[:k - 1, :k - 1] = self.factor[np.ix_(keep, keep)]
        self.factor[k - 1, :k] = 0.0
        self.factor[:k, k - 1] = 0.0
        self.basis[p:k - 1] = self.basis[p + 1:k]
        self.coords[p:k - 1] = self.coords[p + 1:k]
        self.support[p:k - 1] = self.support[p + 1:k]
        self.size = k - 1

    def weights(self) -> np.ndarray:
        """The ridge weights on the support: (G_SS + lam I) w = c_S, i.e. lam w = rho_S."""
        return self.residual[self.support[:self.size]] / self.lam


def nonnegative_omp(gram: np.ndarray, budget: int, lam: float) -> tuple[np.ndarray, np.ndarray]:
    """Non-negative OMP on the points whose gradient Gram is `gram` (float64), matching their gradient sum:
    (positions in the group, positive weights) of at most `budget` points (fewer when it stops early)."""
    n = len(gram)
    target = gram.sum(1)
    state = _Factorization(gram, target, budget, lam)
    tolerance = RELATIVE_TOLERANCE * max(float(np.abs(target).max()), np.finfo(float).tiny)
    outside = np.ones(n, dtype=bool)  # candidates: not in the support, not barred
    weights = np.empty(0)
    for _ in range(4 * budget + 16):  # Lawson-Hanson terminates; this only guards against rounding loops
        if state.size == budget:
            break
        scores = np.where(outside, state.residual, -np.inf)
        j = int(np.argmax(scores))
        if not scores[j] > tolerance:
            break
        state.append(j)
        outside[j] = False
        previous = np.append(weights, 0.0)  # the feasible weights, the new point at 0
        for round_ in range(budget + 1):  # each round takes one point out of the support
            current = state.weights()
            if state.size == 0 or current.min() > 0:
                weights = current
                break
            blocking = np.flatnonzero(current <= 0)
            gaps = previous[blocking] - current[blocking]  # > 0 unless a point enters and leaves at 0
            ratios = np.divide(previous[blocking], gaps, out=np.zeros(len(gaps)), where=gaps > 0)
            step = ratios.min()
            previous = previous + step * (current - previous)
            previous[blocking[ratios <= step]] = 0.0
            for p in np.flatnonzero(previous <= 0)[::-1]:
                leaving = int(state.support[p])
                state.remove(int(p))
                # the entering point's ridge weight is positive, so its leaving at once is rounding: it is
                # barred, or it would be picked forever; any other point may enter again later
                outside[leaving] = round_ > 0 or leaving != j
            previous = previous[previous > 0]
    return state.support[:state.size].copy(), weights


def gradmatch_selection(embeddings: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor,
                        groups: Iterable[tuple[np.ndarray, int]], lam: float, rng: np.random.Generator) -> Selection:
    """GradMatch over each (pool indices, budget) group, on the last-layer gradients that `embeddings`,
    `probabilities` and `labels` (rows = pool points) define; `rng` fills what the pursuit leaves."""
    chosen, weights = [], []
    for indices, budget in groups:
        if budget >= len(indices):
            chosen.append(indices)
            weights.append(np.ones(len(indices)))
            continue
        check_dense(len(indices), MAX_GROUP_SIZE, "gradmatch")
        rows = torch.as_tensor(indices, device=embeddings.device)
        gram = gradient_gram(embeddings[rows], probabilities[rows], labels.to(embeddings.device)[rows])
        positions, group_weights = nonnegative_omp(gram.cpu().numpy(), budget, lam)
        missing = budget - len(positions)
        if missing:  # CORDS: random points of weight 1
            rest = np.setdiff1d(np.arange(len(indices)), positions)
            positions = np.concatenate([positions, rng.choice(rest, size=missing, replace=False)])
            group_weights = np.concatenate([group_weights, np.ones(missing)])
        chosen.append(indices[positions])
        weights.append(group_weights)
    indices, weights = np.concatenate(chosen), np.concatenate(weights)
    order = np.argsort(indices, kind="stable")
    return Selection(indices=indices[order], weights=weights[order])


@register
@dataclass(frozen=True)
class GradMatch(Selector):
    name = "gradmatch"
    paper = ("Killamsetty, Sivasubramanian, Ramakrishnan, De & Iyer. GRAD-MATCH: Gradient matching based data "
             "subset selection for efficient deep model training. ICML 2021")
    url = "https://arxiv.org/abs/2103.00123"

    lam: float = 0.5  # ridge coefficient of the weights (CORDS' CIFAR configs)

    def __post_init__(self):
        if not self.lam > 0:
            raise ValueError(f"lam must be positive (the ridge term keeps the weights' least squares well posed), "
                             f"got {self.lam}")

    def select(self, context: SelectionContext) -> Selection:
        return gradmatch_selection(context.embeddings(), context.probabilities(), context.labels_tensor(),
                                   context.groups(), self.lam, context.rng)
