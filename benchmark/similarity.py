"""Shared distance and similarity computations for selectors, tested once in tests/test_similarity.py.

Everything here works on torch tensors on the caller's device and never builds more than a bounded
block of a pairwise matrix unless the caller asks for the matrix itself (the Gram matrices below).
"""

from __future__ import annotations

import torch

# Probabilities are clamped to this before taking logs, so that a softmax output that underflowed to
# exactly 0 gives a large finite log instead of -inf (0 * log 0 is then 0, as in the definition of KL).
PROBABILITY_FLOOR = 1e-12

# Entries of a distance block computed at once by `nearest_neighbours` (2**25 float32 = 128 MiB).
BLOCK_ENTRIES = 2 ** 25


def safe_log(probabilities: torch.Tensor) -> torch.Tensor:
    return probabilities.clamp_min(PROBABILITY_FLOOR).log()


def kl_divergence(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) = sum_c p_c (log p_c - log q_c) over the last axis; p and q broadcast against each other."""
    return (p * (safe_log(p) - safe_log(q))).sum(-1)


def symmetric_kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """KL(p || q) + KL(q || p) = sum_c (p_c - q_c)(log p_c - log q_c) over the last axis, broadcasting."""
    return ((p - q) * (safe_log(p) - safe_log(q))).sum(-1)


def symmetric_kl_factors(probabilities: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(left, right, negentropy), float64, such that for rows i, j of `probabilities`

        symmetric_kl(p_i, p_j) = negentropy_i + negentropy_j - <left_i, right_j>,

    with negentropy_i = sum_c p_ic log p_ic, left_i = [p_i, log p_i] and right_j = [log p_j, p_j]. The
    distances from one row to all rows are then one matrix-vector product (n x 2C) instead of several
    n x C elementwise passes, and a whole block of them one matrix product. Float64 because the
    expansion subtracts terms of the size of an entropy to get distances that may be far smaller.
    """
    p = probabilities.to(torch.float64)
    log_p = safe_log(p)
    return torch.cat([p, log_p], 1), torch.cat([log_p, p], 1), (p * log_p).sum(1)


def nearest_neighbours(points: torch.Tensor, k: int, block_entries: int = BLOCK_ENTRIES) -> torch.Tensor:
    """Indices (n x k) of the k nearest other points of each point in Euclidean distance, nearest first.

    The n x n distance matrix is computed in row blocks of at most `block_entries` entries, so memory is
    O(block + n k) whatever n is. A point is never its own neighbour, even when it has exact duplicates.
    """
    n = len(points)
    if not 1 <= k < n:
        raise ValueError(f"need 1 <= k < number of points, got k={k} for {n} points")
    points = points.to(torch.float32)
    # ||a - b||^2 = ||a||^2 - 2<a, b> + ||b||^2; the ||a||^2 term is constant along a row, so the
    # ranking within a row only needs ||b||^2 - 2<a, b>.
    squared_norms = (points * points).sum(1)
    rows = max(1, block_entries // n)
    neighbours = torch.empty(n, k, dtype=torch.long, device=points.device)
    for start in range(0, n, rows):
        stop = min(start + rows, n)
        block = squared_norms[None, :] - 2.0 * (points[start:stop] @ points.T)
        own = torch.arange(start, stop, device=points.device)
        block[own - start, own] = float("inf")
        neighbours[start:stop] = block.topk(k, dim=1, largest=False, sorted=True).indices
    return neighbours


def cosine_gram(features: torch.Tensor) -> torch.Tensor:
    """n x n cosine similarities between the rows of `features` (a zero row is similar to nothing: 0)."""
    unit = torch.nn.functional.normalize(features.to(torch.float32), dim=1)
    return (unit @ unit.T).clamp_(-1.0, 1.0)


def gradient_errors(probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """e = p - onehot(y), float32: the cross-entropy gradient with respect to the logits."""
    errors = probabilities.to(torch.float32).clone()
    errors[torch.arange(len(labels), device=errors.device), labels.to(errors.device)] -= 1.0
    return errors


def gradient_gram(embeddings: torch.Tensor, probabilities: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """n x n inner products of the closed-form last-layer gradients g = [e, e outer h], e = p - onehot(y):

        <g_i, g_j> = <e_i, e_j> (1 + <h_i, h_j>),

    computed in float32 (the precision of the proxy's outputs), made exactly symmetric (a blocked matrix
    product need not be) and returned as float64 on the inputs' device."""
    errors = gradient_errors(probabilities, labels)
    embeddings = embeddings.to(torch.float32)
    gram = (embeddings @ embeddings.T).add_(1.0).mul_(errors @ errors.T)
    return gram.add_(gram.T.clone()).mul_(0.5).double()


def gradient_cosine_gram(embeddings: torch.Tensor, probabilities: torch.Tensor,
                         labels: torch.Tensor) -> torch.Tensor:
    """n x n cosine similarities between the closed-form last-layer gradient embeddings
    g = [e, e outer h] with e = p - onehot(y), without materialising the C + C*D wide vectors:

        <g_i, g_j> = <e_i, e_j> + <e_i, e_j><h_i, h_j> = <e_i, e_j> (1 + <h_i, h_j>),

    so the Gram costs one n x n x D and one n x n x C product instead of n x n x C*D.
    """
    errors = gradient_errors(probabilities, labels)
    embeddings = embeddings.to(torch.float32)
    gram = (errors @ errors.T) * (1.0 + embeddings @ embeddings.T)
    # ||g_i||^2 from the same identity; a zero gradient (a perfectly confident, correct prediction)
    # gets norm eps and hence similarity 0 to everything, as `cosine_gram` gives a zero row.
    norms = ((errors * errors).sum(1) * (1.0 + (embeddings * embeddings).sum(1))).sqrt().clamp_min(1e-12)
    gram /= norms[:, None]
    gram /= norms[None, :]
    return gram.clamp_(-1.0, 1.0)
