"""FGSM robustness, measured twice: with torchattacks and with our own FGSM written from the formula
x_adv = clamp(x + eps * sign(grad_x J(theta, x, y)), 0, 1) (Goodfellow et al. 2015). The two must agree
within `TOLERANCE` (accuracy, in percentage points) or the run fails."""

from __future__ import annotations

import torch
import torch.nn.functional as F
import torchattacks
from torch import nn
from tqdm.auto import tqdm

from benchmark.errors import UserError
from benchmark.train import to_float

TOLERANCE_POINTS = 0.1


class CrossCheckFailed(UserError):
    """torchattacks and the in-house FGSM disagree: one of them (or the model's determinism) is wrong."""


def input_gradient_sign(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """sign(grad_x J) for the summed cross-entropy: the sign is the same as for the mean."""
    images = images.detach().requires_grad_(True)
    loss = F.cross_entropy(model(images), labels, reduction="sum")
    (gradient,) = torch.autograd.grad(loss, images)
    return gradient.sign()


def fgsm(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float) -> torch.Tensor:
    return (images + eps * input_gradient_sign(model, images, labels)).clamp(0, 1).detach()


def fgsm_robustness(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps_values: list[float],
                    batch_size: int = 512) -> list[dict]:
    """Accuracy under FGSM at each eps, from torchattacks and from `fgsm`, in float32 and eval mode.
    Our gradient sign does not depend on eps, so it is computed once per batch and reused."""
    model.eval()
    count = len(images)
    correct = {eps: [0, 0] for eps in eps_values}  # eps -> [torchattacks, in-house]
    max_diff = {eps: 0.0 for eps in eps_values}
    attacks = {eps: torchattacks.FGSM(model, eps=eps) for eps in eps_values}
    for start in tqdm(range(0, count, batch_size), desc="FGSM", unit="batch", leave=False, disable=None):
        x = to_float(images[start:start + batch_size])
        y = labels[start:start + batch_size]
        sign = input_gradient_sign(model, x, y)
        for eps in eps_values:
            ours = (x + eps * sign).clamp(0, 1)
            theirs = attacks[eps](x, y)
            with torch.no_grad():
                correct[eps][0] += (model(theirs).argmax(1) == y).sum().item()
                correct[eps][1] += (model(ours).argmax(1) == y).sum().item()
            max_diff[eps] = max(max_diff[eps], (ours - theirs).abs().max().item())
    results = []
    for eps in eps_values:
        theirs, ours = correct[eps][0] / count, correct[eps][1] / count
        if abs(theirs - ours) * 100 > TOLERANCE_POINTS:
            raise CrossCheckFailed(f"FGSM cross-check failed at eps={eps:.5f}: torchattacks {theirs:.2%} vs "
                                   f"in-house {ours:.2%} (tolerance {TOLERANCE_POINTS} points)")
        results.append({"name": "fgsm", "eps": eps, "accuracy": theirs, "inhouse_accuracy": ours,
                        "max_abs_diff": max_diff[eps]})
    return results
