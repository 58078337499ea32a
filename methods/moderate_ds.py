"""Moderate coreset (Xia, Liu, Yu, Shen, Han, Liu, ICLR 2023).

Points far from their class centre are often hard or mislabelled, points close to it redundant; the
paper keeps the ones in between. Each point's score is the Euclidean distance of its proxy embedding to its
own class's centre, and the points whose distance is closest to the median distance are kept:

    score(x) = -| ||h(x) - centre(y)|| - median |.

Distances are always to the point's class centre, also when selecting over the whole pool (`--unbalanced`),
as the paper and its authors' code do; the median and the picks are then taken over the pool instead of per
class. Ties go to the lower pool index.

Two readings (`reading`):
- "paper" (default): the class centre is the mean embedding, and the kept points are those whose distance
  is closest to the median distance, as the paper's text says.
- "code": the authors' released code takes the coordinate-wise median embedding as the centre and keeps a
  band of distance ranks around the middle (rank order, not closeness in distance). On CIFAR-10 features the
  two readings share about half their picks at 10 %.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register


@register
@dataclass(frozen=True)
class ModerateDS(Selector):
    name = "moderate_ds"
    paper = ("Xia, Liu, Yu, Shen, Han, Liu. Moderate Coreset: A Universal Method of Data Selection for "
             "Real-world Data-efficient Deep Learning. ICLR 2023")
    url = "https://openreview.net/forum?id=7D5EECbOaf9"

    reading: str = "paper"  # "paper" (mean centre, closest to the median distance) or "code" (see above)

    def __post_init__(self):
        if self.reading not in ("paper", "code"):
            raise ValueError(f"reading must be 'paper' or 'code', got {self.reading!r}")

    def select(self, context: SelectionContext) -> Selection:
        embeddings = context.embeddings()
        labels = context.labels_tensor()
        distances = torch.zeros(context.pool_size, dtype=torch.float64, device=embeddings.device)
        for c in range(context.num_classes):
            members = labels == c
            if members.any():
                group = embeddings[members]
                centre = group.mean(0) if self.reading == "paper" else group.median(0).values
                distances[members] = (group - centre).norm(dim=1).double()
        distances = distances.cpu().numpy()
        if self.reading == "paper":
            scores = np.zeros(context.pool_size)
            for indices, _ in context.groups():
                scores[indices] = -np.abs(distances[indices] - np.median(distances[indices]))
            return keep_highest(context, scores)
        chosen = []
        for indices, budget in context.groups():  # the middle band of distance ranks, `budget` wide
            ranked = indices[np.argsort(distances[indices], kind="stable")]
            start = round((len(indices) - budget) / 2)
            chosen.append(ranked[start:start + budget])
        return Selection(indices=np.sort(np.concatenate(chosen)), scores=-distances)
