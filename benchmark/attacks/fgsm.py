"""FGSM, the fast gradient sign method (Goodfellow, Shlens & Szegedy, "Explaining and harnessing adversarial
examples", ICLR 2015): one step of size eps along the sign of the input gradient of the loss,

    x' = clip(x + eps * sign(grad_x J(theta, x, y)), 0, 1),

in the L-infinity threat model. The gradient does not depend on eps, so it is computed once per batch for
the whole eps grid.

Cross-check: `torchattacks.FGSM` on the same images. Both compute the same formula on the same inputs, so
their adversarial images, and hence the images each fools, must be identical: the tolerance is 0.1
percentage points (on fewer than 1,000 images, exact agreement).
"""

from dataclasses import dataclass

import torch
import torchattacks

from benchmark.attacks import Attack, Outcome, is_correct, losses_and_gradient, register


@register
@dataclass(frozen=True)
class FGSM(Attack):
    name = "fgsm"
    paper = "Goodfellow, Shlens & Szegedy. Explaining and Harnessing Adversarial Examples. ICLR 2015"
    url = "https://arxiv.org/abs/1412.6572"
    reference = "torchattacks.FGSM"
    iterative = False

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True) -> Outcome:
        return self.perturb_grid(model, images, labels, [eps], generators=[generator])[0]

    def perturb_grid(self, model, images, labels, eps_values, *, generators, early_stop=True) -> list[Outcome]:
        _, _, gradient = losses_and_gradient(model, images, labels)
        sign = gradient.sign()
        outcomes = []
        for eps in eps_values:
            adversarial = (images + eps * sign).clamp(0, 1)
            right = is_correct(model, adversarial, labels)
            outcomes.append(Outcome(adversarial, right, right))
        return outcomes

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        return torchattacks.FGSM(model, eps=eps)(images, labels)
