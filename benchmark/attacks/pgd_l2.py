"""PGD in the L2 threat model (Madry et al., ICLR 2018, as in their L2 experiments): from a random point of the
eps-ball, `steps` steps of size `rel_step * eps / steps` along the L2-normalised input gradient, each
projected back onto the ball (delta * min(1, eps / ||delta||)) and [0, 1]. Typical CIFAR-10 budgets are
eps = 0.25 and 0.5 (pixels in [0, 1]).

The random start is drawn as torchattacks draws it (a Gaussian direction, a radius uniform in [0, eps]),
from the same RNG state, so the cross-check against `torchattacks.PGDL2` compares the same trajectories;
tolerance 0.1 points.
"""

from dataclasses import dataclass

import torch
import torchattacks

from benchmark.attacks import Attack, Outcome, iterate, l2_clip, l2_normalized, random_draw, register, reseeded


@register
@dataclass(frozen=True)
class PGDL2(Attack):
    name = "pgd-l2"
    paper = ("Madry, Makelov, Schmidt, Tsipras & Vladu. Towards Deep Learning Models Resistant to Adversarial "
             "Attacks. ICLR 2018 (L2 threat model)")
    url = "https://arxiv.org/abs/1706.06083"
    reference = "torchattacks.PGDL2"

    steps: int = 20
    rel_step: float = 2.5

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if not self.rel_step > 0:
            raise ValueError(f"rel_step must be positive, got {self.rel_step}")

    @property
    def threat(self) -> str:
        return "L2"

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True, seeds=None) -> Outcome:
        alpha = self.rel_step * eps / self.steps
        direction = random_draw(tuple(images.shape), lambda t, g: t.normal_(generator=g), generator=generator,
                                seeds=seeds, device=images.device)
        radius = random_draw((len(images), 1, 1, 1), lambda t, g: t.uniform_(0, 1, generator=g), generator=generator,
                             seeds=reseeded(seeds, 1), device=images.device)
        norms = direction.flatten(1).norm(dim=1)[:, None, None, None]
        start = (images + direction * (radius / norms * eps)).clamp(0, 1)

        def step(adversarial, clean, gradient):
            return l2_clip(adversarial + alpha * l2_normalized(gradient), clean, eps)
        return iterate(model, images, labels, start, self.steps, step, early_stop=early_stop)

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        attack = torchattacks.PGDL2(model, eps=eps, alpha=self.rel_step * eps / self.steps, steps=self.steps,
                                    random_start=True)
        return attack(images, labels)
