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


def gallery_positions(predictions: np.ndarray, labels: np.ndarray, count: int) -> np.ndarray:
    """The test images a gallery shows: right when clean (an image wrong when clean shows no attack), one per
    class in class order while classes last, then the next right ones; sorted."""
    right = np.flatnonzero(predictions == labels)
    chosen = []
    for label in np.unique(labels[right]):
        chosen.append(int(right[labels[right] == label][0]))
    chosen = chosen[:count]
    chosen += [int(p) for p in right if p not in chosen][:count - len(chosen)]
    return np.sort(np.asarray(chosen, dtype=np.int64))


def gallery_arrays(model, images, labels, spec: AttackSpec, kept: dict[float, torch.Tensor],
                   positions: np.ndarray, headline_eps: float) -> dict:
    """The chosen test images, clean and as the attack left them at two eps (the headline eps, or the grid's
    nearest, and the largest), with the model's predictions."""
    eps_values = sorted(spec.eps)
    nearest = min(eps_values, key=lambda e: abs(e - headline_eps))
    chosen = [nearest] if nearest == eps_values[-1] else [nearest, eps_values[-1]]
    x, y = batch(images, labels, positions)
    with torch.no_grad():
        shown = {"attack": spec.name, "eps": np.asarray(chosen, dtype=np.float64), "labels": y.cpu().numpy(),
                 "positions": positions, "clean": images[torch.as_tensor(positions, device=images.device)].cpu()
                 .numpy(), "clean_predictions": model(x).argmax(1).cpu().numpy()}
        for i, eps in enumerate(chosen):
            shown[f"predictions_{i}"] = model(kept[eps]).argmax(1).cpu().numpy()
            shown[f"adversarial_{i}"] = (kept[eps] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return shown
