"""BIM, the basic iterative method, also called I-FGSM (Kurakin, Goodfellow & Bengio, "Adversarial examples
in the physical world", ICLR 2017 workshop): from the clean image, `steps` FGSM steps of size `step`, each
followed by a clip to the eps-ball and to [0, 1]:

    x_0 = x,  x_{k+1} = clip_{x, eps}(x_k + step * sign(grad_x J(theta, x_k, y))).

No random start. The paper's settings: step 1/255, and min(eps + 4, 1.25 eps) steps for eps in 1/255 units
(`steps = 0` asks for that rule: 1, 2, 5, 10 and 20 steps at eps 1, 2, 4, 8, 16 /255).

Cross-check: `torchattacks.BIM` (which implements the same rule for steps=0) on the same images; no random
number is drawn, the iterates must agree exactly: tolerance 0.1 points (exact on fewer than 1,000 images).
"""

from dataclasses import dataclass

import torch
import torchattacks

from benchmark.attacks import Attack, Outcome, iterate, linf_box_clip, register


@register
@dataclass(frozen=True)
class BIM(Attack):
    name = "bim"
    paper = "Kurakin, Goodfellow & Bengio. Adversarial Examples in the Physical World. ICLR 2017 (workshop)"
    url = "https://arxiv.org/abs/1607.02533"
    reference = "torchattacks.BIM"

    step: float = 1 / 255  # in [0, 1] pixel units
    steps: int = 0  # 0: the paper's rule, min(eps * 255 + 4, 1.25 * eps * 255)

    def __post_init__(self):
        if not self.step > 0:
            raise ValueError(f"step must be positive, got {self.step}")
        if self.steps < 0:
            raise ValueError(f"steps must be at least 1 (or 0 for the paper's rule), got {self.steps}")

    def steps_for(self, eps: float) -> int:
        return self.steps or int(min(eps * 255 + 4, 1.25 * eps * 255))

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True) -> Outcome:
        def step(adversarial, clean, gradient):
            return linf_box_clip(adversarial + self.step * gradient.sign(), clean, eps)
        return iterate(model, images, labels, images, self.steps_for(eps), step, early_stop=early_stop)

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        return torchattacks.BIM(model, eps=eps, alpha=self.step, steps=self.steps_for(eps))(images, labels)
