"""D2 Pruning: Maharana, Yadav & Bansal, "D2 Pruning: Message Passing for Balancing Diversity and Difficulty in
Data Pruning", ICLR 2024 (https://arxiv.org/abs/2310.07931; code: github.com/adymaharana/d2pruning).

The dataset is a graph: each point is a node carrying a difficulty score s_i, joined to its k nearest
neighbours in the proxy's embedding space (Euclidean distance d). Forward message passing lets a node gather
the difficulty of its neighbourhood,

    s_i <- s_i + sum_{j in N(i)} exp(-gamma_forward d(i, j)) s_j,

so points in hard regions rise. Selection then repeats, `budget` times: take the node with the highest score,
and by reverse message passing lower each unselected neighbour's score,

    s_j <- s_j - exp(-gamma_reverse d(i, j)) s_i,

so the next picks come from elsewhere: difficulty balanced against diversity.

Choices, from the paper and its authors' code where the paper leaves them open:
- Graph: the symmetrised k-NN graph (j is i's neighbour when j is among i's k nearest or i among j's), as in the
  authors' code (the paper's graph is undirected). d is the plain (not squared) Euclidean distance between
  the proxy's penultimate embeddings, within a group only. k = min(k, group size - 1).
- Defaults from the authors' CIFAR-10 command (README): k = 5, gamma_reverse = 0.1, forgetting scores. The
  authors' code weights forward messages by exp(-d) (gamma_forward = 1, the default here) and floors a
  neighbour's score at 1e-7 inside a message, so that among points of score 0 the densest regions still
  rank first (their code needs it to find neighbours); both are kept.
- Difficulty (`score`, from the proxy's training dynamics; see `methods/ccs.py`): "forgetting" (default:
  correct-to-incorrect transitions; never-learnt points count E, the number of epochs), "el2n" (the mean of
  1 - p_y over epochs, standing in for EL2N, which needs the whole softmax), or "aum" (max AUM - AUM within the
  group, so harder is higher and no score is negative). With the proxy's few epochs forgetting counts are
  small integers, with many ties.
- Hard cut-off (`beta`): the authors' code first removes the hardest `beta` fraction by AUM (lowest mean
  margin), whatever the difficulty score, as CCS does; their CIFAR-10 command at 90 % pruning uses 0.4.
  "auto" (default) takes 0.4 when the pruning rate is nearest 90 % and otherwise CCS's CIFAR-10 value for the
  nearest rate (0 at 30 % and 50 %, 0.1 at 70 % and 80 %): I found no value of D2's own for those rates. A
  number in [0, 1) given as a string fixes it. floor(beta * n) points of a group go, never leaving fewer than
  its budget; the graph is built on the rest.
- Ties (in the greedy's max) go to the lower pool index. Per group: per class with the class budgets when
  balanced (the authors' CIFAR-10 command also balances classes, `--label-balanced`), over the whole pool with
  `--unbalanced`. The selection's scores are the forward-passed scores; points removed by the cut-off get -inf.
- The greedy keeps a heap of (score, index) with lazy deletion: each pick costs O(degree log n), not O(n).
  Distances are in the proxy's embedding units: where neighbours lie several units apart, exp(-d) is small and
  D2 is close to ranking by difficulty.
DeepCore has no D2 Pruning.
"""

import heapq
from dataclasses import dataclass

import numpy as np
import torch
from benchmark.methods.ccs import PAPER_BETA, hard_cutoff, nearest_rate, parse_beta

from benchmark.dynamics import SCORES, difficulty, importance
from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.similarity import nearest_neighbours

# Hard cut-off by pruning rate: the authors' CIFAR-10 command at 90 %, CCS's table elsewhere.
D2_BETA = {**PAPER_BETA, 0.9: 0.4}
# A neighbour's score inside a forward message is at least this (the authors' code does the same).
MESSAGE_FLOOR = 1e-7
# Entries of the (rows x k x D) neighbour-difference block computed at once.
BLOCK_ENTRIES = 2 ** 24


@register
@dataclass(frozen=True)
class D2Pruning(Selector):
    name = "d2_pruning"
    paper = ("Maharana, Yadav & Bansal. D2 Pruning: Message Passing for Balancing Diversity and Difficulty in "
             "Data Pruning. ICLR 2024")
    url = "https://arxiv.org/abs/2310.07931"

    k: int = 5  # nearest neighbours per node before symmetrising
    gamma_forward: float = 1.0  # forward message weight exp(-gamma_forward d)
    gamma_reverse: float = 0.1  # reverse message weight exp(-gamma_reverse d)
    score: str = "forgetting"  # node difficulty: "forgetting", "el2n" or "aum"
    beta: str = "auto"  # hard cut-off by AUM: "auto" or a fraction such as "0.4"

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")
        if self.gamma_forward < 0 or self.gamma_reverse < 0:
            raise ValueError(f"gamma_forward and gamma_reverse must be non-negative, got {self.gamma_forward} "
                             f"and {self.gamma_reverse}")
        if self.score not in SCORES:
            raise ValueError(f"score must be one of {', '.join(SCORES)}, got {self.score!r}")
        parse_beta(self.beta)

    def select(self, context: SelectionContext) -> Selection:
        dynamics = context.training_dynamics()
        if dynamics.epochs < 1:
            raise UserError("d2_pruning needs the proxy's training dynamics of at least one epoch")
        hardness = difficulty(importance(dynamics, self.score), self.score)
        aum = importance(dynamics, "aum")
        beta = parse_beta(self.beta)
        if beta is None:
            beta = nearest_rate(D2_BETA, 1.0 - context.budget / context.pool_size)
        embeddings = context.embeddings()
        scores = np.full(context.pool_size, -np.inf)
        chosen = []
        for indices, budget in context.groups():
            lowest_aum_first = indices[np.lexsort((indices, aum[indices]))]
            nodes = np.sort(hard_cutoff(lowest_aum_first, beta, budget))
            node_scores = hardness[nodes] - (hardness[nodes].min() if self.score == "aum" else 0.0)
            if len(nodes) == 1:
                scores[nodes] = node_scores
                chosen.append(nodes)
                continue
            source, target, distance = _graph(embeddings[torch.as_tensor(nodes, device=embeddings.device)], self.k)
            forward = node_scores + np.bincount(
                source, weights=np.exp(-self.gamma_forward * distance) * np.maximum(node_scores[target], MESSAGE_FLOOR),
                minlength=len(nodes))
            scores[nodes] = forward
            picks = _reverse_greedy(forward, source, target, np.exp(-self.gamma_reverse * distance), budget)
            chosen.append(nodes[picks])
        return Selection(indices=np.sort(np.concatenate(chosen)).astype(np.int64), scores=scores)


def _graph(points: torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The symmetrised k-NN graph as directed edge lists (source, target, Euclidean distance), each undirected
    edge once in each direction, sorted by source."""
    n = len(points)
    k = min(k, n - 1)
    neighbours = nearest_neighbours(points, k)
    points = points.to(torch.float32)
    distances = torch.empty(n, k, dtype=torch.float32, device=points.device)
    rows = max(1, BLOCK_ENTRIES // (k * points.shape[1]))
    for start in range(0, n, rows):
        block = slice(start, start + rows)
        distances[block] = (points[block, None, :] - points[neighbours[block]]).norm(dim=2)
    source = np.repeat(np.arange(n), k)
    target = neighbours.flatten().cpu().numpy()
    distance = distances.flatten().double().cpu().numpy()
    # both directions, each pair once (a mutual pair was found twice: keep its first distance)
    source, target = np.concatenate([source, target]), np.concatenate([target, source])
    _, first = np.unique(source * n + target, return_index=True)  # sorted by (source, target)
    return source[first], target[first], np.concatenate([distance, distance])[first]


def _reverse_greedy(scores: np.ndarray, source: np.ndarray, target: np.ndarray, weights: np.ndarray,
                    budget: int) -> np.ndarray:
    """`budget` picks, each the highest current score (ties to the lower node), each lowering its unpicked
    neighbours j by weight(i, j) * score_i. Edges are sorted by source, so a node's neighbours are one slice."""
    scores = scores.astype(np.float64).copy()
    starts = np.searchsorted(source, np.arange(len(scores) + 1))
    picked = np.zeros(len(scores), dtype=bool)
    heap = [(-value, node) for node, value in enumerate(scores.tolist())]
    heapq.heapify(heap)
    picks = []
    while len(picks) < budget:
        negative, node = heapq.heappop(heap)
        if picked[node] or -negative != scores[node]:
            continue  # a stale entry: the node was picked or its score changed since
        picked[node] = True
        picks.append(node)
        edges = slice(starts[node], starts[node + 1])
        open_ = ~picked[target[edges]]
        neighbours = target[edges][open_]
        scores[neighbours] -= weights[edges][open_] * scores[node]
        for neighbour in neighbours.tolist():
            heapq.heappush(heap, (-scores[neighbour], neighbour))
    return np.asarray(picks, dtype=np.int64)

