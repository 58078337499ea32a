"""Moderate coreset (Xia, Liu, Yu, Shen, Han, Liu, ICLR 2023).

Points far from their class centre are often hard or mislabelled, points close to it redundant; the
paper keeps the ones in between. Each point's score is the Euclidean distance of its proxy embedding to
the mean embedding of its group (its class when balanced, else the pool), and the points whose
distance is closest to the group's median distance are kept:

    score(x) = -| ||h(x) - mean|| - median |.

Ties go to the lower pool index.
"""

from dataclasses import dataclass

import numpy as np

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register


@register
@dataclass(frozen=True)
class ModerateDS(Selector):
    name = "moderate_ds"
    paper = ("Xia, Liu, Yu, Shen, Han, Liu. Moderate Coreset: A Universal Method of Data Selection for "
             "Real-world Data-efficient Deep Learning. ICLR 2023")
    url = "https://openreview.net/forum?id=7D5EECbOaf9"

    def select(self, context: SelectionContext) -> Selection:
        embeddings = context.embeddings()
        scores = np.zeros(context.pool_size)
        for indices, _ in context.groups():
            group = embeddings[indices]
            distances = (group - group.mean(0)).norm(dim=1).double().cpu().numpy()
            scores[indices] = -np.abs(distances - np.median(distances))
        return keep_highest(context, scores)
