"""Entropy uncertainty sampling on the shared proxy (Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang,
Leskovec, Zaharia. Selection via Proxy: Efficient Data Selection for Deep Learning. ICLR 2020).

Selection via proxy (SVP) scores every pool point with a cheap proxy model (here the shared proxy: the
benchmark's architecture trained a few epochs on the pool, one of the proxy kinds the paper studies) and keeps
the points the proxy is least sure about. The entropy of the proxy's softmax output measures that spread,

    score(x) = -sum_c p_c(x) log p_c(x)   (0 for a one-hot prediction, log C for a uniform one),

with log taken through `benchmark.similarity.safe_log` so that a probability that underflowed to 0 adds 0,
as 0 log 0 does by definition. The highest-scoring (most uncertain) points of each group are kept: per class
when balanced (the class budgets), else over the whole pool. Ties go to the lower pool index. The labels are not
used. Nothing is retrained; the scores are attached to the selection.

What DeepCore does differently (`deepcore/methods/uncertainty.py`): it scores the negative entropy
sum_c p_c log(p_c + 1e-6) (high = sure) and then keeps the lowest scores per class when balanced but the
highest over the pool when unbalanced, so there it keeps the most confident points, the
opposite of uncertainty sampling. Here both modes keep the most uncertain (tests/test_entropy.py pins both).
"""

from dataclasses import dataclass

import torch

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register
from benchmark.similarity import safe_log


@register
@dataclass(frozen=True)
class Entropy(Selector):
    name = "entropy"
    paper = ("Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang, Leskovec, Zaharia. Selection via Proxy: "
             "Efficient Data Selection for Deep Learning. ICLR 2020")
    url = "https://arxiv.org/abs/1906.11829"

    def select(self, context: SelectionContext) -> Selection:
        probabilities = context.probabilities().to(torch.float64)
        scores = -(probabilities * safe_log(probabilities)).sum(1)
        return keep_highest(context, scores.cpu().numpy())
