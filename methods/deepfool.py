"""DeepFool margins for data selection: DFAL (Ducoffe & Precioso, "Adversarial active learning for deep
networks: a margin based approach", arXiv 2018), which scores each point by the size of its DeepFool
perturbation (Moosavi-Dezfooli, Fawzi & Frossard, "DeepFool: a simple and accurate method to fool deep
neural networks", CVPR 2016) and keeps the points with the SMALLEST perturbations, those closest to the
proxy's decision boundary.

Multi-class DeepFool on the shared proxy f (its logits), started at the image x_0 with predicted class
y = argmax_k f_k(x_0): at x_i = x_0 + (1 + overshoot) r, with w_k = grad f_k(x_i) - grad f_y(x_i) and
f'_k = f_k(x_i) - f_y(x_i),

    l = argmin_{k != y} |f'_k| / ||w_k||,    r <- r + |f'_l| / ||w_l||^2 w_l,

until argmax f(x_0 + (1 + overshoot) r) != y; the score is ||(1 + overshoot) r||_2. On a linear model
f(x) = W x + b the first step lands on the nearest boundary, so the score is (1 + overshoot) times the
distance min_{k != y} (f_y - f_k) / ||W_y - W_k||.

Choices the papers leave open:
- Pixel space: perturbations live in [0, 1] pixel space (`benchmark.train.to_float` of the uint8 pool, before
  the proxy's own normalisation), and the norm is taken over all 3 x H x W values. Iterates are not clipped
  to [0, 1], as in DeepFool.
- The class y is the proxy's prediction, not the label: DeepFool (and DFAL, which scores unlabelled points)
  attacks the prediction, so a misclassified point scores its distance to the edge of its predicted class.
- Overshoot (default 0.02) as in the DeepFool authors' code: each iterate is x_0 + (1 + overshoot) r and the
  score is (1 + overshoot) ||r||; it only pushes points across the boundary, so it barely changes the order.
  (That code also lengthens each step by 1e-4; here the overshoot alone does that work.)
  Every class is a candidate (the authors' code looks at the 10 most likely classes: all of CIFAR-10's).
- A point on a boundary (its class's logit tied with another's, where argmax keeps it in its class) has
  crossed: its score is the perturbation so far (0 for a tie at x_0). A point that has not crossed after
  `max_iter` steps (default 50, as the authors' code), or whose gradient
  differences all vanish so that it cannot move, scores +inf and is kept last. Ties go to the lower pool
  index; per group (per class when balanced, else the whole pool) the `budget` smallest scores are kept.
- Batching: points are attacked in batches (eval mode, so each point's Jacobian is its own). A step costs a
  forward and C backward passes (the logits' Jacobian) and a forward without gradients that checks the
  crossing; a point that has crossed leaves the batch at once and the next point of the pool takes its place.
- `last_layer=True` (a fast approximation, not the paper's method): DeepFool on the proxy's last linear layer
  over its embeddings h, where one step is exact: the score is min_{k != y} (z_y - z_k) / ||W_y - W_k|| for the
  logits z = W h + b, without overshoot, in embedding space. One matrix product over the pool.

Speed: the full-network default needs per-sample input Jacobians, one forward and C backward passes through
the network per DeepFool step. Timed with OMP_NUM_THREADS=1 on this project's 2-core CPU machine,
MobileNetV2-1.0 at 32 x 32 (the standard preset's network) took 24.6 s for 32 images, 100 steps in all
(about 3 per image, at random initialisation), so about 0.25 s per image and step. 45,000 points at about
3 steps each then take about 10 hours on one core, about 5 on two: far beyond the 60 s target, at 10 % and 50 %
alike (every pool point is scored whatever the budget). It is a GPU job; `last_layer=True` takes well under
a second on the CPU.

DeepCore's port (deepcore/methods/deepfool.py) differs: it perturbs the normalised input, not pixels; it has
no overshoot; it scores the squared norm (same order); and a point that never crosses keeps the norm it
reached instead of ranking last.
"""

from dataclasses import dataclass

import numpy as np
import torch

from benchmark.errors import UserError
from benchmark.selection import Selection, SelectionContext, Selector, keep_highest, register
from benchmark.train import to_float


def _batch_size(device: torch.device) -> int:
    """Images per DeepFool batch: the Jacobian is C x 3HW per image and the autograd graph one forward's
    activations; on a CPU larger batches stop paying off."""
    return 256 if device.type == "cuda" else 8


@register
@dataclass(frozen=True)
class DeepFool(Selector):
    name = "deepfool"
    paper = ("Ducoffe & Precioso. Adversarial Active Learning for Deep Networks: a Margin Based Approach. "
             "arXiv 2018 (DeepFool: Moosavi-Dezfooli, Fawzi & Frossard, CVPR 2016)")
    url = "https://arxiv.org/abs/1802.09841"

    max_iter: int = 50  # DeepFool steps per point before it is given up (score +inf)
    overshoot: float = 0.02  # DeepFool's eta: iterates are x_0 + (1 + overshoot) r
    last_layer: bool = False  # True: exact DeepFool on the last linear layer (fast, an approximation)

    def __post_init__(self):
        if self.max_iter < 1:
            raise ValueError(f"max_iter must be at least 1, got {self.max_iter}")
        if self.overshoot < 0:
            raise ValueError(f"overshoot must be non-negative, got {self.overshoot}")

    def select(self, context: SelectionContext) -> Selection:
        norms = self._last_layer_norms(context) if self.last_layer else self._network_norms(context)
        kept = keep_highest(context, -norms)  # the smallest perturbations; +inf last, ties to the lower index
        return Selection(indices=kept.indices, scores=norms)

    def _last_layer_norms(self, context: SelectionContext) -> np.ndarray:
        head = getattr(context.proxy_model(), "head", None)
        if not isinstance(head, torch.nn.Linear):
            raise UserError("deepfool with last_layer=True needs a proxy whose last layer is a linear `head`")
        embeddings = context.embeddings()
        if embeddings.shape[1] != head.in_features:
            raise UserError(f"the embeddings have {embeddings.shape[1]} columns but the proxy's head takes "
                            f"{head.in_features}: last_layer=True needs the proxy's own embeddings")
        weight = head.weight.detach().to(embeddings.device, torch.float64)
        bias = head.bias.detach().to(embeddings.device, torch.float64) if head.bias is not None else 0.0
        logits = embeddings.to(torch.float64) @ weight.T + bias
        predicted = logits.argmax(1)
        gaps = logits.gather(1, predicted[:, None]) - logits  # z_y - z_k >= 0
        distances = torch.cdist(weight, weight)[predicted]  # ||W_y - W_k||, N x C
        ratios = torch.where(distances > 0, gaps / distances.clamp_min(1e-300), torch.inf)
        ratios.scatter_(1, predicted[:, None], torch.inf)
        return ratios.min(1).values.cpu().numpy()

    def _network_norms(self, context: SelectionContext) -> np.ndarray:
        model = context.proxy_model().eval().requires_grad_(False)
        device = next(model.parameters(), torch.empty(0, device=context.device)).device
        images = context.pool_images()
        scale = 1.0 + self.overshoot
        norms = np.full(len(images), np.inf)
        batch = _batch_size(device)
        # the points under attack: pool index, predicted class (-1 until their first forward pass), clean image,
        # perturbation r and steps taken; a point leaves once it has crossed (or is given up) and the next
        # point of the pool takes its place, so every row of a Jacobian is still needed
        index = torch.zeros(0, dtype=torch.long)
        label = torch.zeros(0, dtype=torch.long, device=device)
        steps = torch.zeros(0, dtype=torch.long, device=device)
        origin = torch.zeros((0, *images.shape[1:]), device=device)
        perturbation = torch.zeros_like(origin)
        following = 0
        while following < len(images) or len(index):
            fresh = min(batch - len(index), len(images) - following)
            if fresh > 0:
                new = torch.arange(following, following + fresh)
                following += fresh
                x = to_float(images[new].to(device)).contiguous()
                index = torch.cat([index, new])
                label = torch.cat([label, torch.full((fresh,), -1, device=device)])
                steps = torch.cat([steps, torch.zeros(fresh, dtype=torch.long, device=device)])
                origin = torch.cat([origin, x])
                perturbation = torch.cat([perturbation, torch.zeros_like(x)])
            point = (origin + scale * perturbation).requires_grad_(True)
            logits = model(point).float()
            label = torch.where(label < 0, logits.detach().argmax(1), label)
            step, stuck, on_boundary = self._steps(logits, point, label)
            perturbation, steps = perturbation + step, steps + 1
            with torch.no_grad():
                crossed = on_boundary | ~stuck & (model(origin + scale * perturbation).argmax(1) != label)
            done = crossed | stuck | (steps >= self.max_iter)
            finished = done.nonzero().squeeze(1)
            if len(finished):
                sizes = (scale * perturbation[finished]).flatten(1).norm(dim=1)
                sizes = torch.where(crossed[finished], sizes, torch.inf)  # stuck or given up: ranked last
                norms[index[finished.cpu()].numpy()] = sizes.double().cpu().numpy()
            kept = (~done).nonzero().squeeze(1)
            index, label, steps = index[kept.cpu()], label[kept], steps[kept]
            origin, perturbation = origin[kept], perturbation[kept]
        return norms

    @staticmethod
    def _steps(logits: torch.Tensor, point: torch.Tensor,
               label: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One DeepFool step per row, r_i = |f'_l| / ||w_l||^2 w_l; whether a row is stuck (no class has a
        non-zero gradient difference, so the linearisation has no boundary to step to); and whether it lies on a
        boundary already (a logit tied with its class's). Both of those take a zero step."""
        n, classes = logits.shape
        # the logits' Jacobian: C backward passes over the batch (its rows are independent in eval mode)
        jacobian = torch.stack([
            torch.autograd.grad(logits[:, c].sum(), point, retain_graph=c + 1 < classes)[0].flatten(1)
            for c in range(classes)], dim=1)  # n x C x P
        rows = torch.arange(n, device=logits.device)
        differences = jacobian - jacobian[rows, label][:, None, :]
        gaps = (logits.detach() - logits.detach()[rows, label][:, None]).abs()
        lengths = differences.norm(dim=2)
        ratios = torch.where(lengths > 0, gaps / lengths.clamp_min(1e-30), torch.inf)
        ratios[rows, label] = torch.inf
        nearest = ratios.argmin(1)
        stuck = torch.isinf(ratios[rows, nearest])
        size = torch.where(stuck, 0.0, gaps[rows, nearest] / lengths[rows, nearest].clamp_min(1e-30) ** 2)
        on_boundary = ratios[rows, nearest] == 0
        return (size[:, None] * differences[rows, nearest]).reshape(point.shape), stuck, on_boundary
