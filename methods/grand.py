"""GraNd: Paul, Ganguli & Dziugaite, "Deep learning on a data diet: finding important examples early in
training", NeurIPS 2021 (https://arxiv.org/abs/2107.07075).

The GraNd score of (x, y) is the expected L2 norm of its loss gradient over all the network's
parameters, E_w ||grad_w L(f_w(x), y)||, the expectation taken over independent initialisations of a
network trained for a few epochs; the points with the highest scores are kept. Here the expectation is
a mean over `repeats` proxies (10, as in the paper) from `context.proxy_models`, and the per-sample
gradients come from `benchmark.gradients.gradient_norms` (torch.func, eval-mode batch norm).

- `epochs` (default 10): the paper scores early in training (at initialisation and a few epochs in,
  e.g. epoch 20 of 200 on CIFAR-10). 10 is the standard preset's proxy length and 5 % of its 200-epoch
  final training; each proxy runs a complete (cosine) schedule, so it is further along than epoch 10
  of a long run would be. Ten proxies cost 100 epochs, half the final training.
  Epoch 0 is not the default: scores here use batch norm's running statistics, which mean nothing
  before training, and a replication study ("Does 'Deep Learning on a Data Diet' reproduce? Overall
  yes, but GraNd at initialization does not") could not reproduce the at-initialisation result.
- `last_layer=True`: the gradient of the last linear layer only, whose norm has the closed form
  ||p - onehot(y)|| * sqrt(1 + ||h||^2) (`benchmark.gradients.last_layer_gradient_norms`): one forward
  pass per proxy instead of per-sample backward passes.
"""

from dataclasses import dataclass

import torch

from benchmark.gradients import gradient_norms, last_layer_gradient_norms
from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register
from benchmark.train import predict


@register
@dataclass(frozen=True)
class GraNd(Selector):
    name = "grand"
    paper = ("Paul, Ganguli & Dziugaite. Deep learning on a data diet: finding important examples early in "
             "training. NeurIPS 2021")
    url = "https://arxiv.org/abs/2107.07075"
    uses_proxy = False  # it trains its own `repeats` proxies; the shared one is not needed
    repeats: int = 10
    epochs: int = 10
    last_layer: bool = False

    def __post_init__(self):
        if self.repeats < 1 or self.epochs < 0:
            raise ValueError(f"repeats must be at least 1 and epochs at least 0, got {self.repeats} and {self.epochs}")

    def own_proxies(self) -> tuple[int, int]:
        return (self.repeats, self.epochs) if self.epochs > 0 else (0, 0)

    def select(self, context: SelectionContext) -> Selection:
        images = context.pool_images()
        labels = context.labels_tensor().to(images.device)
        total = torch.zeros(len(labels), dtype=torch.float64, device=images.device)
        for model in context.proxy_models(self.repeats, self.epochs):
            if self.last_layer:
                logits, embeddings = predict(model, images, embed=True)
                norms = last_layer_gradient_norms(embeddings, logits.softmax(1), labels)
            else:
                norms = gradient_norms(model, images, labels)
            total += norms.to(total.device, torch.float64)
        return keep_highest(context, (total / self.repeats).cpu().numpy())
