"""AutoAttack, standard version (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble
of diverse parameter-free attacks", ICML 2020): APGD-CE, APGD-T (targeted DLR, 9 target classes), FAB-T and
Square (5,000 queries), each on the images the previous ones did not fool; RobustBench ranks by it.

Run through torchattacks, with two corrections to its `AutoAttack(version="standard")`: APGD, APGD-T and FAB-T
get the original's 100 iterations (torchattacks leaves them at 10, which on one model left 0.56 % robust
where 100 left 0 %), and the model is handed over as a `LibraryView` (its FAB fails on channels_last gradients).

Cross-check: the reference implementation (`pyautoattack`, Croce's code on PyPI) with version "standard",
the same eps and seed, on the same images. The two are separate ports of the four attacks (their random
draws and several details differ), so the tolerance is 2 images or 2 points of the cross-checked images,
whichever is larger; a broken attack is far outside it.
"""

from dataclasses import dataclass

import torch
import torchattacks

from benchmark.attacks import Attack, LibraryView, Outcome, check_norm, is_correct, register


@register
@dataclass(frozen=True)
class AutoAttack(Attack):
    name = "autoattack"
    paper = ("Croce & Hein. Reliable Evaluation of Adversarial Robustness with an Ensemble of Diverse "
             "Parameter-free Attacks. ICML 2020 (standard version)")
    url = "https://arxiv.org/abs/2003.01690"
    reference = "pyautoattack.AutoAttack"
    tolerance_points = 2.0
    tolerance_images = 2

    steps: int = 100
    queries: int = 5000
    norm: str = "Linf"

    def __post_init__(self):
        if self.steps < 1 or self.queries < 1:
            raise ValueError(f"steps and queries must be at least 1, got {self.steps} and {self.queries}")
        check_norm(self.norm)

    def perturb(self, model, images, labels, eps, *, generator, early_stop=True) -> Outcome:
        with torch.no_grad():
            classes = model(images[:1]).shape[1]
        attack = torchattacks.AutoAttack(LibraryView(model), norm=self.norm, eps=eps, version="standard",
                                         n_classes=classes, seed=generator.initial_seed() % 2 ** 31)
        for part in attack._autoattack.attacks:
            if isinstance(part, torchattacks.Square):
                part.n_queries = self.queries
            else:  # APGD, APGDT, FAB
                part.steps = self.steps
        adversarial = attack(images.contiguous(), labels)
        robust = is_correct(model, adversarial, labels)
        return Outcome(adversarial, robust, robust.clone())

    def reference_perturb(self, model, images, labels, eps, *, seed) -> torch.Tensor:
        from pyautoattack import AutoAttack as Reference

        attack = Reference(model, norm=self.norm, eps=eps, version="standard", seed=seed, device=images.device)
        attack.verbose = False
        with torch.no_grad():
            targets = min(9, model(images[:1]).shape[1] - 1)  # the standard version's 9 need 10+ classes
        for part in (attack.apgd, attack.apgd_targeted, attack.fab):
            part.n_iter = self.steps
        attack.apgd_targeted.n_target_classes = attack.fab.n_target_classes = targets
        attack.square.n_queries = self.queries
        adversarial, _ = attack.run_standard_evaluation(images.contiguous(), labels, batch_size=len(images))
        return adversarial
