"""EL2N: Paul, Ganguli & Dziugaite, "Deep learning on a data diet: finding important examples early in
training", NeurIPS 2021 (https://arxiv.org/abs/2107.07075).

The EL2N score of (x, y) is the expected L2 norm of the error vector of a network trained a few epochs,

    EL2N(x, y) = E_w || softmax(f_w(x)) - onehot(y) ||_2,

the expectation taken over independent initialisations; the points with the highest scores (the hardest ones,
those the early networks get most wrong) are kept, per class when balanced (the class budgets), else over the
whole pool. Ties go to the lower pool index. The scores are attached to the selection.

Choices, following `methods/grand.py` (the same paper's other score), so the two can share their proxies:
- the expectation is a mean over `repeats` proxies (default 10, as in the paper) from `context.proxy_models`,
  each from its own seed and trained `epochs` epochs (default 10: the standard preset's proxy length and 5 %
  of its 200-epoch final training, where the paper scores at e.g. epoch 20 of 200 on CIFAR-10). Each proxy
  runs a complete (cosine) schedule, so it is further along than epoch 10 of a long run would be.
- `epochs` must be at least 1 (GraNd allows 0): the paper uses EL2N a few epochs into training, where the
  error vector has come to carry the information of the gradient norm; before any training it reflects the
  random initialisation more than the example.
- one forward pass per proxy in eval mode (`benchmark.train.predict`: batch norm's running statistics, no
  augmentation); no gradients, so it costs far less than GraNd's per-sample backward passes.
Speed: the score itself is a few vector operations, but its inputs are `repeats` forward passes of the
benchmark's network over the whole pool, which the 60 s budget cannot hold on CPU: MobileNetV2 at 32 x 32 took
about 30 s per 1,024 images on 2 (busy) CPU cores, so 10 proxies x 45,000 images is of the order of hours
there (on a GPU, seconds). DeepCore has no EL2N.
"""

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register
from benchmark.train import predict


@register
@dataclass(frozen=True)
class EL2N(Selector):
    name = "el2n"
    paper = ("Paul, Ganguli & Dziugaite. Deep learning on a data diet: finding important examples early in "
             "training. NeurIPS 2021")
    url = "https://arxiv.org/abs/2107.07075"
    uses_proxy = False  # it trains its own `repeats` proxies; the shared one is not needed
    repeats: int = 10
    epochs: int = 10

    def __post_init__(self):
        if self.repeats < 1 or self.epochs < 1:
            raise ValueError(f"repeats and epochs must be at least 1, got {self.repeats} and {self.epochs}")

    def own_proxies(self) -> tuple[int, int]:
        return self.repeats, self.epochs

    def select(self, context: SelectionContext) -> Selection:
        images = context.pool_images()
        labels = context.labels_tensor().to(images.device)
        total = torch.zeros(len(labels), dtype=torch.float64, device=images.device)
        for model in context.proxy_models(self.repeats, self.epochs):
            probabilities = predict(model, images).to(total.device, torch.float64).softmax(1)
            error = probabilities - F.one_hot(labels, probabilities.shape[1]).to(torch.float64)
            total += error.norm(dim=1)
        return keep_highest(context, (total / self.repeats).cpu().numpy())
