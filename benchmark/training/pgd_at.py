"""PGD adversarial training (Madry, Makelov, Schmidt, Tsipras & Vladu, "Towards deep learning models resistant
to adversarial attacks", ICLR 2018): the model learns from the end of `steps` projected signed-gradient steps
of size `rel_step * eps / steps` from a uniform random start in the eps-ball (10 steps of 2/255 at 8/255 by
default, as Rice, Wong & Kolter 2020 train; the same step rule as the `pgd` attack)."""

from dataclasses import dataclass

from benchmark.attacks import linf_clip, uniform_linf_start
from benchmark.training import IterativeTrainingAttack, cross_entropy_on, input_gradient, register


@register
@dataclass(frozen=True)
class PGDAdversarialTraining(IterativeTrainingAttack):
    name = "pgd-at"
    paper = ("Madry, Makelov, Schmidt, Tsipras & Vladu. Towards Deep Learning Models Resistant to Adversarial "
             "Attacks. ICLR 2018")
    url = "https://arxiv.org/abs/1706.06083"

    def losses(self, forward, images, labels, *, generator):
        adversarial = uniform_linf_start(images, self.eps, generator)
        for _ in range(self.steps):
            gradient = input_gradient(forward, adversarial, labels)
            adversarial = linf_clip(adversarial + self.step_size() * gradient.sign(), images, self.eps)
        return cross_entropy_on(forward, adversarial.detach(), labels)
