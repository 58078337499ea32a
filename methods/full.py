"""Full: the whole pool. Its accuracy is the reference that coreset accuracies are reported against."""

from dataclasses import dataclass

import numpy as np

from benchmark.selection import Selection, SelectionContext, Selector, register


@register
@dataclass(frozen=True)
class Full(Selector):
    name = "full"
    uses_proxy = False
    paper = "The whole training pool (reference for relative accuracy)"
    whole_pool = True  # the harness runs this once per seed at fraction 1.0

    def select(self, context: SelectionContext) -> Selection:
        return Selection(indices=np.arange(context.pool_size))
