"""FGSM adversarial training from a random start (Wong, Rice & Kolter, "Fast is better than free: revisiting
adversarial training", ICLR 2020): for each batch, delta drawn uniformly from the eps-ball, one signed-gradient
step of size `rel_step * eps` (1.25 eps in the paper), projected back onto the ball and the [0, 1] box, and the
model learns from x + delta. Without the random start (`random_start=false`) this is plain FGSM training, which
the paper shows overfits catastrophically; the harness watches for that every epoch (`benchmark.overfitting`)."""

from dataclasses import dataclass

from benchmark.attacks import linf_clip, uniform_linf_start
from benchmark.training import TrainingMethod, check_attack, cross_entropy_on, input_gradient, register


@register
@dataclass(frozen=True)
class FGSMRandomStart(TrainingMethod):
    name = "fgsm-rs"
    paper = "Wong, Rice & Kolter. Fast is better than free: Revisiting adversarial training. ICLR 2020"
    url = "https://arxiv.org/abs/2001.03994"

    eps: float = 8 / 255
    rel_step: float = 1.25  # step = rel_step * eps
    random_start: bool = True

    def __post_init__(self):
        check_attack(self.eps, self.rel_step)

    def step_size(self) -> float:
        return self.rel_step * self.eps

    def losses(self, forward, images, labels, *, generator):
        start = uniform_linf_start(images, self.eps, generator) if self.random_start else images
        gradient = input_gradient(forward, start, labels)
        adversarial = linf_clip(start + self.step_size() * gradient.sign(), images, self.eps)
        return cross_entropy_on(forward, adversarial.detach(), labels)
