"""PGD in the L-infinity threat model (Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models
resistant to adversarial attacks", ICLR 2018): from a uniformly random point of the eps-ball, `steps`
signed-gradient steps of size `rel_step * eps / steps`, each projected back onto the ball and [0, 1];
`restarts` independent random starts, and an image is robust only if it survives all of them.

The step size follows Madry et al.'s rule of thumb that the steps should be able to cross the ball a few
times (2.5 eps in total, as their robustness library does), so one setting serves every eps of the grid.

Cross-check: `torchattacks.PGD` with the same step size and steps, its random start drawn from the RNG state
the in-house first restart draws from; the final iterates must agree: tolerance 0.1 points.
"""

from dataclasses import dataclass

import torch
import torchattacks

from benchmark.attacks import Attack, Outcome, iterate, linf_clip, register, reseeded, uniform_linf_start


@register
@dataclass(frozen=True)
class PGD(Attack):
    name = "pgd"
    paper = ("Madry, Makelov, Schmidt, Tsipras & Vladu. Towards Deep Learning Models Resistant to Adversarial "
             "Attacks. ICLR 2018")
    url = "https://arxiv.org/abs/1706.06083"
    reference = "torchattacks.PGD"

    steps: int = 20
    rel_step: float = 2.5  # step size = rel_step * eps / steps
    restarts: int = 1

    def __post_init__(self):
        if self.steps < 1 or self.restarts < 1:
            raise ValueError(f"steps and restarts must be at least 1, got {self.steps} and {self.restarts}")
        if not self.rel_step > 0:
            raise ValueError(f"rel_step must be positive, got {self.rel_step}")

    def step_size(self, eps: float) -> float:
        return self.rel_step * eps / self.steps

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True, seeds=None) -> Outcome:
        alpha = self.step_size(eps)

        def step(adversarial, clean, gradient):
            return linf_clip(adversarial + alpha * gradient.sign(), clean, eps)

        outcome = None
        for restart in range(self.restarts):  # later restarts attack only the images every earlier one missed
            todo = torch.arange(len(images), device=images.device) if outcome is None else \
                torch.nonzero(outcome.robust)[:, 0]
            if len(todo) == 0:
                break
            these = reseeded(seeds, restart)[todo.cpu()] if seeds is not None else None
            start = uniform_linf_start(images[todo], eps, generator, these)
            this = iterate(model, images[todo], labels[todo], start, self.steps, step, early_stop=early_stop)
            if outcome is None:
                outcome = this
            else:
                outcome.robust[todo] = this.robust
                outcome.final_correct[todo] &= this.final_correct
                outcome.adversarial[todo] = this.adversarial
        return outcome

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        attack = torchattacks.PGD(model, eps=eps, alpha=self.step_size(eps), steps=self.steps, random_start=True)
        return attack(images, labels)
