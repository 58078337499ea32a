"""Targeted APGD, APGD-T (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020), the second attack of AutoAttack's standard version: APGD (`apgd`,
the same step-size schedule) on the targeted DLR loss

    -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2),   z sorted decreasingly,

once per target class t: the classes the clean image's logits rank second, third, ... (`targets` of them; 9
in the standard version on CIFAR-10), each run from a fresh random start on the images the earlier targets
did not fool. On weak models an untargeted loss already finds most examples; the targeted runs find those
whose nearest wrong class the untargeted gradient does not point at (on a published cifar10-cpu model they
lowered robust accuracy at 2/255 from 8.0 % to 7.1 %).

Cross-check: the reference implementation (`pyautoattack`'s APGDAttack_targeted, Croce's own code) with the
same steps, eps, targets and seed, on the same images. Both draw every target's random start from one CPU
generator seeded once, in the same order and shapes, so they start alike; they differ where `apgd` says,
hence the same tolerance: 2 images or 2 points of the cross-checked images, whichever is larger.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from benchmark.attacks import Attack, Outcome, check_norm, correct, register, reseeded
from benchmark.attacks.apgd import apgd
from benchmark.errors import UserError


@register
@dataclass(frozen=True)
class APGDTargeted(Attack):
    name = "apgd-t"
    paper = ("Croce & Hein. Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse "
             "Parameter-free Attacks. ICML 2020 (APGD-T, the targeted DLR loss)")
    url = "https://arxiv.org/abs/2003.01690"
    reference = "pyautoattack.autopgd_base.APGDAttack_targeted"
    tolerance_points = 2.0
    tolerance_images = 2

    steps: int = 100
    targets: int = 9  # target classes per image, by the clean logits' rank (second, third, ...)
    norm: str = "Linf"

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.targets < 1:
            raise ValueError(f"targets must be at least 1, got {self.targets}")
        check_norm(self.norm)

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True, seeds=None) -> Outcome:
        with torch.no_grad():
            logits = model(images).float()
        classes = logits.shape[1]
        if classes < 4:
            raise UserError("apgd-t's targeted DLR loss needs at least 4 classes: use apgd")
        ranked = logits.argsort(dim=1, descending=True)
        robust = correct(logits, labels)
        outcome = Outcome(images.clone(), robust, robust.clone())
        # one CPU generator for every target, seeded once, as the reference seeds its global generator once
        starts = torch.Generator().manual_seed(generator.initial_seed())
        for round_, rank in enumerate(range(1, min(self.targets, classes - 1) + 1)):
            todo = torch.nonzero(outcome.robust)[:, 0]
            if len(todo) == 0:
                break
            this = apgd(model, images[todo], labels[todo], eps, steps=self.steps, loss="dlr-targeted",
                        norm=self.norm, generator=starts, early_stop=early_stop, targets=ranked[todo, rank],
                        seeds=None if seeds is None else reseeded(seeds[todo.cpu()], round_))
            outcome.robust[todo] = this.robust
            outcome.final_correct[todo] = this.final_correct
            fooled = todo[~this.robust]
            outcome.adversarial[fooled] = this.adversarial[~this.robust]
        return outcome

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        from pyautoattack.autopgd_base import APGDAttack_targeted

        with torch.no_grad():
            classes = model(images[:1]).shape[1]
        attack = APGDAttack_targeted(model, n_iter=self.steps, norm=self.norm, n_restarts=1, eps=eps, seed=seed,
                                     n_target_classes=min(self.targets, classes - 1), device=images.device)
        return attack.perturb(images, labels)
