"""GLISTER: Killamsetty, Sivasubramanian, Ramakrishnan & Iyer, "GLISTER: Generalization based data
subset selection for efficient and robust learning", AAAI 2021 (https://arxiv.org/abs/2012.10630).

Choose the subset S whose gradient step most increases the held-out validation log-likelihood,
    max_S LL_V(theta - eta * sum_{i in S} grad L_T(x_i, y_i; theta)),
greedily, with the paper's first-order Taylor approximation of each candidate's marginal gain
    gain(i | S) = eta * <grad L_T(x_i, y_i; theta_S), grad L_V(theta_S)>,
on the proxy's last linear layer (b, W). There the loss gradient of a point is (e, e h^T) with
e = p - onehot(y), so gains factorise: gain(i) = eta * e_i^T (G_b + G_W h_i), where
(G_b, G_W) = mean_v (e_v, e_v h_v^T) is the validation gradient, one C x D matrix. The candidates'
gradients stay those of the proxy (theta); after each pick the model takes that pick's step,
theta_S <- theta_S - eta * (e_i, e_i h_i^T), the validation logits move by -eta (1 + H_v h_i) e_i^T,
and the validation gradient is recomputed from their softmax. A greedy step costs two C-column matrix
products and a matrix-vector product, O((candidates + validation points) * C * min(D, validation points)).

Choices this benchmark had to make:
- `eta` (default 1e-3) is the step per picked point on its own (summed, not averaged) loss, as in the
  paper's one-step inner problem, where eta is the model's learning rate (the paper's Eq. 2 takes the
  step theta - eta grad, eta the training lr; its code uses the model's lr). A per-point step of 1e-3 is
  the proxy's SGD step per sample (lr 0.1 / batch 128), so k picks imply about k / 128 proxy steps. eta
  acts only through the update (eta -> 0 is top-k by initial gain). On a CIFAR-10 proxy (MobileNetV2-0.35,
  39 % accuracy) a 10 % balanced selection with eta = 1e-3 shares 71 % of its points with that top-k; 1e-2 shares 33 %.
- Validation gradients are means over validation points (gains are predicted changes of the mean
  validation log-likelihood); a sum would scale every gain alike and pick the same set.
- Balanced selection runs one greedy per class, scored on that class's validation points (unbalanced
  selection uses the whole validation set: the paper's algorithm as written). The class-c greedy moves
  the model with class-c points alone; scored on the whole validation set, that step looks harmful to
  the other classes (whose own greedies would offset it): on the proxy above 35 % of the picks had a
  negative gain even as eta -> 0, 98 % at eta = 1e-3, and the picks drifted to easy points. On class
  c's own points, gains of non-negative (ReLU) features stay non-negative and shrink as those points
  become well fit. CORDS's per-class GLISTER makes the same choice. A class with no validation points
  uses the whole set.
- Scores: a picked point's gain when it was picked; any other point's gain as the next pick after its
  group's last one (classes with no budget: at the proxy's parameters). They are comparable within a
  group but do not reproduce the greedy order.
"""

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.selection import Selection, SelectionContext, Selector, register


def greedy(train_errors: torch.Tensor, train_embeddings: torch.Tensor, val_logits: torch.Tensor,
           val_labels: torch.Tensor, val_embeddings: torch.Tensor, budget: int, eta: float):
    """Greedy GLISTER over one candidate set. `train_errors` are p - onehot(y) of the candidates (n x C),
    `val_logits` the proxy's validation logits (up to a per-row constant). Returns the picks (positions
    in the candidate set, in greedy order), their gains when picked, and every candidate's gain after
    the last pick."""
    num_classes = train_errors.shape[1]
    if len(val_embeddings) < train_embeddings.shape[1]:
        # candidates' embeddings enter only through inner products with validation embeddings (G_W is
        # a combination of them): in an orthonormal basis of their span the same numbers need min(V, D)
        # dimensions, e.g. 500 instead of 1280 for one CIFAR-10 class's validation points
        basis = torch.linalg.qr(val_embeddings.T).Q
        train_embeddings, val_embeddings = train_embeddings @ basis, val_embeddings @ basis
    logits = val_logits.clone()
    val_targets = F.one_hot(val_labels, num_classes).to(logits.dtype)
    available = torch.ones(len(train_errors), dtype=torch.bool, device=train_errors.device)
    picks = torch.empty(budget, dtype=torch.long)
    picked_gains = torch.empty(budget, dtype=train_errors.dtype)
    for step in range(budget + 1):
        val_errors = (logits.softmax(1) - val_targets) / len(logits)  # gradient of the mean loss
        bias_grad, weight_grad = val_errors.sum(0), val_errors.T @ val_embeddings  # C, C x D
        gains = eta * (train_errors * (bias_grad + train_embeddings @ weight_grad.T)).sum(1)
        if step == budget:
            return picks, picked_gains, gains
        best = int(torch.argmax(gains.masked_fill(~available, -torch.inf)))
        picks[step], picked_gains[step] = best, gains[best]
        available[best] = False
        # theta <- theta - eta * (e, e h^T): logits z_v = W h_v + b move by -eta * e (1 + h . h_v)
        logits -= eta * (1.0 + val_embeddings @ train_embeddings[best])[:, None] * train_errors[best]


@register
@dataclass(frozen=True)
class Glister(Selector):
    name = "glister"
    paper = ("Killamsetty, Sivasubramanian, Ramakrishnan & Iyer. GLISTER: Generalization based data subset "
             "selection for efficient and robust learning. AAAI 2021")
    url = "https://arxiv.org/abs/2012.10630"
    eta: float = 1e-3

    def __post_init__(self):
        if not self.eta > 0:
            raise ValueError(f"eta must be positive, got {self.eta}")

    def select(self, context: SelectionContext) -> Selection:
        embeddings, probabilities = context.embeddings(), context.probabilities()
        labels = context.labels_tensor().to(embeddings.device)
        errors = probabilities - F.one_hot(labels, context.num_classes).to(probabilities.dtype)
        val = context.validation()
        # logits up to a per-row constant, which softmax ignores; the clamp keeps log(0) finite
        val_logits = val.probabilities.clamp_min(torch.finfo(torch.float32).tiny).log()
        val_labels = val.labels.to(embeddings.device).long()

        def run(indices: np.ndarray, budget: int):
            rows = torch.as_tensor(indices, device=embeddings.device)
            keep = val_labels == int(context.labels[indices[0]])
            if not context.balance or not keep.any():  # whole validation set (see the module docstring)
                keep = torch.ones_like(keep)
            v = (val_logits[keep], val_labels[keep], val.embeddings[keep])
            return greedy(errors[rows], embeddings[rows], *v, budget=budget, eta=self.eta)

        scores = np.zeros(context.pool_size)
        covered = np.zeros(context.pool_size, dtype=bool)
        chosen = []
        for indices, budget in context.groups():
            picks, picked_gains, final_gains = run(indices, budget)
            scores[indices] = final_gains.cpu().numpy()
            scores[indices[picks.numpy()]] = picked_gains.numpy()
            covered[indices] = True
            chosen.append(indices[picks.numpy()])
        for c in np.unique(context.labels[~covered]):  # classes with no budget: gains at theta
            indices = np.flatnonzero(context.labels == c)
            scores[indices] = run(indices, 0)[2].cpu().numpy()
        return Selection(indices=np.sort(np.concatenate(chosen)), scores=scores)
