"""Adversarial coreset selection: Dolatabadi, Erfani & Leckie, "Adversarial Coreset Selection for Efficient
Robust Training", IJCV 2023 (https://arxiv.org/abs/2209.05785), extending their ECCV 2022 paper
"l_inf-Robustness and Beyond: Unleashing Efficient Adversarial Training" (https://arxiv.org/abs/2112.00378).

Adversarial training fits the loss at adversarial examples, so the coreset should match the gradients of that
loss: CRAIG (`base="craig"`) or GRAD-MATCH (`base="gradmatch"`) run on the gradients of the loss at each pool
image's adversarial example x_adv instead of at the image itself,

    g_i = grad_theta CE(f_theta(x_adv_i), y_i),   x_adv_i = PGD_eps(f_theta, x_i, y_i),

with the selection, weights and choices of benchmark.methods.craig / benchmark.methods.gradmatch (per class
when balanced; weighted). The proxy is the shared one (`context.proxy_model()`, eval mode).

Choices:
- Gradients: the closed-form last-layer gradient at x_adv, [e, e outer h] with h = model.embed(x_adv) and
  e = softmax(model.head(h)) - onehot(y), for both bases (the last-layer approximation of CRAIG and
  GRAD-MATCH). The authors' CORDS-based code takes last-layer gradients for GradMatch but only the logit
  part e for CRAIG.
- Objective: the l_inf PGD objective (cross-entropy at the adversarial example), the paper's l_inf-PGD
  variant. The TRADES variant's gradient mixes clean and adversarial terms and is not implemented.
- Attack: this project's PGD (benchmark.attacks.pgd) from a uniform random start in the eps-ball, without
  early stop (every image gets all `steps` steps): eps = 8/255 and 10 steps, the CIFAR-10 l_inf setting of
  the authors' code (its README: --epsilon 8 --attack_iters 10 --alpha 1.25). The step is the project's PGD
  rule, rel_step * eps / steps = 2/255 by default; rel_step = 1.5625 gives the authors' 1.25/255. The random
  start comes from the run seed (purpose "adversarial"), on the images' device.
- The paper re-selects every few epochs of adversarial training, with the model being trained; a selector
  here chooses once, before training, on the shared proxy (trained on clean images). Unlike the authors'
  code, which crafts the examples with batch norm in train mode, the proxy stays in eval mode.

Speed: PGD costs steps + 1 forward and `steps` backward passes of the proxy per pool image, and cannot meet
the 60 s / 120 s targets on 2 CPU cores. Measured on one CPU thread, one PGD step takes 0.11 s per image for
MobileNetV2-1.0 with the CIFAR stem (the standard preset): PGD-10 on 45,000 images is about 14 hours on one
thread, 7 on two. For MobileNetV2-0.35 (the cifar10-cpu preset, 2,000 pool images) it is 0.028 s, about
10 minutes on one thread. On a GPU the standard preset's attack should take on the order of a minute
(an estimate from its FLOPs, not measured). The selection after the attack costs what craig / gradmatch cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from benchmark.methods.craig import craig_selection
from benchmark.methods.gradmatch import gradmatch_selection

from benchmark.attacks import create_attack
from benchmark.seeding import torch_generator
from benchmark.selection import Selection, SelectionContext, Selector, register
from benchmark.train import to_float

BASES = ("craig", "gradmatch")


def adversarial_outputs(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, eps: float,
                        steps: int, rel_step: float, generator: torch.Generator,
                        batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(embeddings, probabilities) of the model at the PGD adversarial examples of uint8 `images`, float32 on
    the model's device; the attack's random start is drawn from `generator` (on the images' device)."""
    attack = create_attack("pgd", {"steps": steps, "rel_step": rel_step})
    model.eval()
    device = next(model.parameters()).device
    embeddings, probabilities = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size].to(device))
        y = labels[start:start + batch_size].to(device)
        adversarial = attack.perturb(model, x, y, eps, generator=generator, early_stop=False).adversarial
        with torch.no_grad():
            h = model.embed(adversarial).float()
            embeddings.append(h)
            probabilities.append(model.head(h).float().softmax(1))
    return torch.cat(embeddings), torch.cat(probabilities)


@register
@dataclass(frozen=True)
class AdversarialCoreset(Selector):
    name = "adversarial_coreset"
    paper = ("Dolatabadi, Erfani & Leckie. Adversarial Coreset Selection for Efficient Robust Training. "
             "IJCV 2023")
    url = "https://arxiv.org/abs/2209.05785"

    base: str = "craig"  # "craig" or "gradmatch": the coreset method run on the adversarial gradients
    eps: float = 8 / 255  # l_inf radius of the PGD attack, in [0, 1] pixel units
    steps: int = 10  # PGD steps
    rel_step: float = 2.5  # PGD step size = rel_step * eps / steps
    lam: float = 0.5  # GRAD-MATCH's ridge coefficient (base="gradmatch" only)
    batch_size: int = 256  # images attacked at once

    def __post_init__(self):
        if self.base not in BASES:
            raise ValueError(f"base must be one of {', '.join(BASES)}, got {self.base!r}")
        if not 0 < self.eps <= 1:
            raise ValueError(f"eps must be in (0, 1] (pixel units), got {self.eps}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be at least 1, got {self.steps} and {self.batch_size}")
        if not self.rel_step > 0 or not self.lam > 0:
            raise ValueError(f"rel_step and lam must be positive, got {self.rel_step} and {self.lam}")

    def select(self, context: SelectionContext) -> Selection:
        groups = list(context.groups())
        attacked = np.sort(np.concatenate([indices for indices, _ in groups]))  # classes with no budget: skipped
        images, labels = context.pool_images(), context.labels_tensor()
        generator = torch_generator(context.seed, "adversarial", device=images.device)
        embeddings, probabilities = adversarial_outputs(
            context.proxy_model(), images[torch.as_tensor(attacked, device=images.device)],
            labels[torch.as_tensor(attacked, device=labels.device)], eps=self.eps, steps=self.steps,
            rel_step=self.rel_step, generator=generator, batch_size=self.batch_size)
        rows = torch.as_tensor(attacked, device=embeddings.device)  # back to pool rows; others are never read
        embeddings = embeddings.new_zeros(context.pool_size, embeddings.shape[1]).index_copy_(0, rows, embeddings)
        probabilities = probabilities.new_zeros(context.pool_size, probabilities.shape[1]).index_copy_(
            0, rows, probabilities)
        if self.base == "craig":
            return craig_selection(embeddings, probabilities, labels, groups)
        return gradmatch_selection(embeddings, probabilities, labels, groups, self.lam, context.rng)
