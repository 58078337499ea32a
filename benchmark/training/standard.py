"""Standard training: the cross-entropy of each (augmented) clean image."""

from dataclasses import dataclass

from benchmark.training import TrainingMethod, cross_entropy_on, register


@register
@dataclass(frozen=True)
class Standard(TrainingMethod):
    name = "standard"
    paper = "Empirical risk minimisation on clean images (cross-entropy)"
    adversarial = False

    def losses(self, forward, images, labels, *, generator):
        return cross_entropy_on(forward, images, labels)
