"""TRADES (Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan, "Theoretically principled trade-off between robustness and
accuracy", ICML 2019): each image's loss is CE(f(x), y) + beta * KL(f(x) || f(x')), where x' maximises the KL
term in the eps-ball: from x plus 0.001 times Gaussian noise, `steps` projected signed-gradient steps of size
`rel_step * eps / steps`. As in the authors' code, x' is searched with the model in evaluation mode (batch
norm on its running statistics) and the loss is taken in training mode; beta = 6 is their CIFAR-10 setting."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.attacks import linf_clip
from benchmark.training import IterativeTrainingAttack, register


def kl_per_image(logits_clean: torch.Tensor, logits_adversarial: torch.Tensor) -> torch.Tensor:
    """KL(softmax(clean) || softmax(adversarial)) for each image."""
    log_clean = F.log_softmax(logits_clean.float(), dim=1)
    log_adversarial = F.log_softmax(logits_adversarial.float(), dim=1)
    return (log_clean.exp() * (log_clean - log_adversarial)).sum(1)


@register
@dataclass(frozen=True)
class TRADES(IterativeTrainingAttack):
    name = "trades"
    paper = ("Zhang, Yu, Jiao, Xing, El Ghaoui & Jordan. Theoretically Principled Trade-off between Robustness "
             "and Accuracy. ICML 2019")
    url = "https://arxiv.org/abs/1901.08573"

    beta: float = 6.0

    def __post_init__(self):
        super().__post_init__()
        if not self.beta >= 0:
            raise ValueError(f"beta must be non-negative, got {self.beta}")

    def losses(self, forward, images, labels, *, generator):
        forward.eval()
        with torch.no_grad():
            target = forward(images).float()
        noise = torch.randn(images.shape, generator=generator, device=images.device)
        adversarial = (images + 0.001 * noise).clamp(0, 1)
        for _ in range(self.steps):
            adversarial = adversarial.detach().requires_grad_(True)
            with torch.enable_grad():
                divergence = kl_per_image(target, forward(adversarial)).sum()
                (gradient,) = torch.autograd.grad(divergence, adversarial)
            adversarial = linf_clip(adversarial + self.step_size() * gradient.sign(), images, self.eps)
        forward.train()
        logits = forward(images)
        robust = kl_per_image(logits, forward(adversarial.detach()))
        return F.cross_entropy(logits, labels, reduction="none") + self.beta * robust, logits
