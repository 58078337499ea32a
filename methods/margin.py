"""Margin uncertainty sampling on the shared proxy, as grouped with least confidence and entropy under
Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang, Leskovec, Zaharia. Selection via Proxy: Efficient Data
Selection for Deep Learning. ICLR 2020 (the margin criterion itself is Scheffer, Decomain & Wrobel, "Active
hidden Markov models for information extraction", IDA 2001).

Selection via proxy (SVP) scores every pool point with a cheap proxy model (here the shared proxy: the
benchmark's architecture trained a few epochs on the pool) and keeps the points the proxy is least sure about.
The margin criterion looks at the gap between the two most probable classes: a small gap means the proxy
hesitates between two answers. With p_(1) >= p_(2) the two largest softmax probabilities,

    score(x) = -(p_(1)(x) - p_(2)(x)),

and the highest-scoring (smallest-gap, most uncertain) points of each group are kept: per class when balanced
(the class budgets), else over the whole pool. Ties go to the lower pool index. The labels are not used (the
top two classes are the predicted ones, whatever the label). A one-class problem has no second class: the
selector then refuses to run. Nothing is retrained; the scores are attached to the selection.

What DeepCore does differently (`deepcore/methods/uncertainty.py`): it scores the gap p_(1) - p_(2) itself
(high = sure) and then keeps the lowest gaps per class when balanced but the highest over the pool when
unbalanced, so there it keeps the most confident points, the opposite of uncertainty sampling.
Here both modes keep the most uncertain (tests/test_margin.py pins both).
"""

from dataclasses import dataclass

import torch

from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register


@register
@dataclass(frozen=True)
class Margin(Selector):
    name = "margin"
    paper = ("Coleman, Yeh, Mussmann, Mirzasoleiman, Bailis, Liang, Leskovec, Zaharia. Selection via Proxy: "
             "Efficient Data Selection for Deep Learning. ICLR 2020")
    url = "https://arxiv.org/abs/1906.11829"

    def select(self, context: SelectionContext) -> Selection:
        probabilities = context.probabilities().to(torch.float64)
        if probabilities.shape[1] < 2:
            raise UserError("margin needs at least two classes (the gap between the two most probable)")
        top = probabilities.topk(2, dim=1).values
        scores = -(top[:, 0] - top[:, 1])
        return keep_highest(context, scores.cpu().numpy())
