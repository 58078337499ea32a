"""The gallery: a few test images, clean and as an attack left them, with the model's predictions; the arrays
of a record's `.gallery.npz`."""

from __future__ import annotations

import numpy as np
import torch

from benchmark.evaluation.suite import batch, build
from benchmark.record import AttackSpec

GALLERY_IMAGES = 6


def gallery_attack(suite: list[AttackSpec]) -> AttackSpec | None:
    """The attack whose examples the gallery shows: the suite's first iterative L-infinity attack."""
    for spec in suite:
        attack = build(spec)
        if attack.iterative and attack.threat == "Linf":
            return spec
    return None


def gallery_arrays(model, images, labels, spec: AttackSpec, kept: dict[float, torch.Tensor]) -> dict:
    """The first test images, clean and as the attack left them at two eps (the middle and the largest of its
    grid), with the model's predictions."""
    eps_values = sorted(spec.eps)
    chosen = [eps_values[len(eps_values) // 2], eps_values[-1]] if len(eps_values) > 1 else eps_values
    count = len(next(iter(kept.values())))
    x, y = batch(images, labels, np.arange(count))
    with torch.no_grad():
        shown = {"attack": spec.name, "eps": np.asarray(chosen, dtype=np.float64), "labels": y.cpu().numpy(),
                 "clean": images[:count].cpu().numpy(), "clean_predictions": model(x).argmax(1).cpu().numpy()}
        for i, eps in enumerate(chosen):
            shown[f"predictions_{i}"] = model(kept[eps]).argmax(1).cpu().numpy()
            shown[f"adversarial_{i}"] = (kept[eps] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return shown
