"""Forgetting: Toneva, Sordoni, Tachet des Combes, Trischler, Bengio & Gordon, "An empirical study of example
forgetting during deep neural network learning", ICLR 2019 (https://arxiv.org/abs/1812.05159).

An example is forgotten when it was classified correctly at one presentation and incorrectly at the next. Its
forgetting count is the number of such transitions over training,

    forgetting(x) = #{ t >= 1 : correct_{t-1}(x) and not correct_t(x) },

read from `context.training_dynamics().correct` (E x N: whether each pool point was classified correctly when
the shared proxy was trained on it, epoch by epoch, recorded from those training forward passes, as in the
paper; nothing is retrained here). Examples forgotten often are the informative ones; "unforgettable" ones
(learnt once and never forgotten) can be removed. The most forgotten points of each group are kept: per class
when balanced (the class budgets), else over the whole pool.

Choices the paper leaves open, and what is done here:
- never-learnt examples (never classified correctly) count as forgotten more than any other: the paper treats
  them as forgotten infinitely often. Their score is E, the number of epochs, as in the authors' code (it
  assigns them the number of presentations); an example that was learnt can be forgotten at most E // 2 < E
  times, so they rank above every learnt one, and the scores stay finite.
- ties: with the proxy's few epochs (10 in the standard preset) most counts are equal. Ties are broken by the
  mean cross-entropy loss over the epochs (`training_dynamics().loss`, higher first: the example the proxy
  found harder), then by the lower pool index.
- the scores attached to the selection are the forgetting counts (never-learnt = E); the loss tie-break is
  not folded into them.

What DeepCore does differently (`deepcore/methods/forgetting.py`): it starts every example as "incorrect" and
counts only correct-to-incorrect steps, so a never-learnt example gets 0 events and ranks with the
unforgettable ones, at the bottom, the opposite of the paper (tests/test_forgetting.py pins this). It trains
its own model for its selection epochs (40 by default) and breaks ties by a reversed unstable argsort.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.dynamics import forgetting_counts
from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, register


@register
@dataclass(frozen=True)
class Forgetting(Selector):
    name = "forgetting"
    paper = ("Toneva, Sordoni, Tachet des Combes, Trischler, Bengio & Gordon. An empirical study of example "
             "forgetting during deep neural network learning. ICLR 2019")
    url = "https://arxiv.org/abs/1812.05159"

    def select(self, context: SelectionContext) -> Selection:
        dynamics = context.training_dynamics()
        if dynamics.epochs < 1:
            raise UserError("forgetting needs the proxy's training dynamics of at least one epoch")
        scores = forgetting_counts(dynamics.correct).cpu().numpy()
        mean_loss = dynamics.loss.to(torch.float64).mean(0).cpu().numpy()
        chosen = []
        for indices, budget in context.groups():
            # np.lexsort sorts by the last key first: count (high first), then mean loss (high first), then index
            order = np.lexsort((indices, -mean_loss[indices], -scores[indices]))
            chosen.append(indices[order[:budget]])
        return Selection(indices=np.sort(np.concatenate(chosen)), scores=scores)
