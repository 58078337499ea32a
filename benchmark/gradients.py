"""Per-sample gradients of the cross-entropy loss, shared by the gradient-based selectors.

- `gradient_norms`: the L2 norm of each sample's loss gradient with respect to *every* trainable
  parameter, with `torch.func` (`vmap` of `grad` over `functional_call`), a batch of samples at a time.
  The model is put in eval mode: batch norm then uses its running statistics, so each sample's
  gradient is its own and not coupled to the other samples of the batch.
- `last_layer_gradient_norms`: the closed form for the last linear layer only. The gradient of the loss
  w.r.t. (b, W) is (e, e h^T) with e = p - onehot(y), so its squared norm is ||e||^2 (1 + ||h||^2); the
  C + C*D gradient embedding is never materialised.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, vmap

from benchmark.train import to_float


def default_batch_size(device: torch.device) -> int:
    """Per-sample gradients hold one parameter-sized tensor per sample of the batch: 256 samples of
    MobileNetV2-1.0 (2.2 M parameters) are 2.3 GB on a GPU; on a CPU larger batches stop paying off."""
    return 256 if device.type == "cuda" else 64


def gradient_norms(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *,
                   batch_size: int | None = None) -> torch.Tensor:
    """||d loss(x_i, y_i) / d theta||_2 over all trainable parameters theta, one value per sample.

    `images` are uint8 (converted with `benchmark.train.to_float`) or already float in [0, 1]; they and
    `labels` are moved to the model's device batch by batch."""
    model.eval()
    device = next(model.parameters()).device
    batch_size = batch_size or default_batch_size(device)
    params = {name: p.detach() for name, p in model.named_parameters() if p.requires_grad}
    buffers = {name: b.detach() for name, b in model.named_buffers()}

    def loss(params, x, y):
        logits = functional_call(model, (params, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(logits, y.unsqueeze(0))

    def squared_norm(params, x, y):
        # reduced inside vmap, so only the batch's gradients are alive at once, never the pool's
        return sum(g.pow(2).sum() for g in grad(loss)(params, x, y).values())

    per_sample = vmap(squared_norm, in_dims=(None, 0, 0))
    norms = []
    for start in range(0, len(images), batch_size):
        x = images[start:start + batch_size].to(device)
        x = to_float(x) if x.dtype == torch.uint8 else x
        y = labels[start:start + batch_size].to(device)
        norms.append(per_sample(params, x, y).sqrt())
    return torch.cat(norms) if norms else torch.zeros(0, device=device)


def last_layer_gradient_norms(embeddings: torch.Tensor, probabilities: torch.Tensor,
                              labels: torch.Tensor) -> torch.Tensor:
    """||[dL/db, dL/dW]||_2 = ||p - onehot(y)|| * sqrt(1 + ||h||^2), the norm of each row of
    `benchmark.selection.last_layer_gradients` without building those rows."""
    error = probabilities.clone()
    error[torch.arange(len(labels), device=error.device), labels.to(error.device)] -= 1.0
    return error.norm(dim=1) * (1.0 + embeddings.pow(2).sum(1)).sqrt()
