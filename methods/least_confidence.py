"""Least-confidence uncertainty sampling on the shared proxy (Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis,
Liang, Leskovec, Zaharia. Selection via Proxy: Efficient Data Selection for Deep Learning. ICLR 2020).

Selection via proxy (SVP) scores every pool point with a cheap proxy model (here the shared proxy: the
benchmark's architecture trained a few epochs on the pool, one of the proxy kinds the paper studies) and keeps
the points the proxy is least sure about. Least confidence is one minus the largest softmax probability,

    score(x) = 1 - max_c p_c(x),

and the highest-scoring (most uncertain) points of each group are kept: per class when balanced (the class
budgets), else over the whole pool. Ties go to the lower pool index. The labels are not used: the score depends
on the prediction only. Nothing is retrained; the scores are attached to the selection.

What DeepCore does differently (`deepcore/methods/uncertainty.py`):
- its two branches rank in opposite directions. It scores confidence (high = sure) and then keeps the lowest
  scores per class when balanced, but the highest over the pool when unbalanced, so there it
  keeps the most confident points, the opposite of uncertainty sampling. Here both modes keep the most
  uncertain (tests/test_least_confidence.py pins both).
- its "LeastConfidence" takes the largest raw logit, not the largest softmax probability; logits are not
  comparable across points (adding a constant to one point's logits changes nothing in its prediction), so the
  probability is used here, as in the paper's definition.
"""

from dataclasses import dataclass

import torch

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register


@register
@dataclass(frozen=True)
class LeastConfidence(Selector):
    name = "least_confidence"
    paper = ("Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang, Leskovec, Zaharia. Selection via Proxy: "
             "Efficient Data Selection for Deep Learning. ICLR 2020")
    url = "https://arxiv.org/abs/1906.11829"

    def select(self, context: SelectionContext) -> Selection:
        probabilities = context.probabilities().to(torch.float64)
        scores = 1.0 - probabilities.max(1).values
        return keep_highest(context, scores.cpu().numpy())
