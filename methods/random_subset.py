"""Random: a uniform sample of the pool, per class when balanced. The baseline every method must beat."""

from dataclasses import dataclass

import numpy as np

from benchmark.selection import Selection, SelectionContext, Selector, register


@register
@dataclass(frozen=True)
class Random(Selector):
    name = "random"
    uses_proxy = False
    paper = "Uniform random sampling (the baseline of every coreset study)"

    def select(self, context: SelectionContext) -> Selection:
        chosen = [context.rng.choice(indices, size=budget, replace=False) for indices, budget in context.groups()]
        return Selection(indices=np.sort(np.concatenate(chosen)))
