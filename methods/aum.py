"""AUM: Pleiss, Zhang, Elenberg & Weinberger, "Identifying mislabeled data using the area under the margin
ranking", NeurIPS 2020 (https://arxiv.org/abs/2001.10528).

The margin of a training example at epoch t is its assigned (labelled) logit minus the largest other logit,
positive when it is classified correctly; its area under the margin is the mean over the epochs,

    AUM(x, y) = (1 / E) sum_t [ z_y^t(x) - max_{c != y} z_c^t(x) ],

read from `context.training_dynamics().margin` (E x N, recorded from the shared proxy's training forward passes,
as the paper records them; nothing is retrained here). A low AUM marks an example the network keeps arguing
against its label: a hard or a mislabelled one.

What it keeps, and why: Pleiss et al. use AUM to find mislabelled data and remove it (the examples whose AUM
falls below a threshold learnt from deliberately mislabelled "threshold samples"), then train on the rest.
A coreset selector has the opposite task, keeping a small informative subset of (here clean) data; data-pruning
work uses AUM as a difficulty score and keeps the hardest examples, those with the LOWEST AUM, as forgetting and
EL2N keep their hardest (e.g. the AUM baseline of Zheng, Liu, Lai & Prakash, "Coverage-centric coreset selection
for high pruning rates", ICLR 2023, CCS). This selector does the same: the lowest AUM of each group is kept, per
class when balanced (the class budgets), else over the whole pool; ties go to the lower pool index. Zheng et al.
also show that keeping only the hardest examples collapses at high pruning rates, which is what CCS corrects.

Other choices: the mean runs over all the shared proxy's epochs (the paper averages up to its first
learning-rate drop; the proxy's short cosine schedule has none). The attached scores are the AUM values
themselves, so lower means kept. DeepCore has no AUM.
"""

from dataclasses import dataclass

import numpy as np

from benchmark.dynamics import area_under_margin
from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, register


@register
@dataclass(frozen=True)
class AUM(Selector):
    name = "aum"
    paper = ("Pleiss, Zhang, Elenberg & Weinberger. Identifying mislabeled data using the area under the margin "
             "ranking. NeurIPS 2020")
    url = "https://arxiv.org/abs/2001.10528"

    def select(self, context: SelectionContext) -> Selection:
        dynamics = context.training_dynamics()
        if dynamics.epochs < 1:
            raise UserError("aum needs the proxy's training dynamics of at least one epoch")
        aum = area_under_margin(dynamics.margin).cpu().numpy()
        chosen = [indices[np.argsort(aum[indices], kind="stable")[:budget]] for indices, budget in context.groups()]
        return Selection(indices=np.sort(np.concatenate(chosen)), scores=aum)
