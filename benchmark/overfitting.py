"""The guards of adversarial training. Every epoch, the model (in evaluation mode) is attacked on a fixed set of
held-out validation images with FGSM and with PGD-10 at the training eps (the attack registry's own attacks).
Catastrophic overfitting (Wong, Rice & Kolter 2020) is the moment a model trained on one-step attacks learns to
defeat them: its PGD accuracy collapses within an epoch while its FGSM accuracy holds or rises. It is flagged
at the first epoch where PGD accuracy falls more than 20 points (the threshold of the paper's early stop) below
the best of the earlier epochs while FGSM accuracy stays within 5 points of its value then, or where FGSM
accuracy exceeds PGD accuracy by more than 25 points (a model that overfits from its first epoch never has a
PGD accuracy to fall from; a robust model's FGSM and PGD-10 accuracies differ by a few points). The rule is
`benchmark.record.overfit_epoch`, so that `validate` checks a record's flag against its own guard."""

from __future__ import annotations

import torch
from torch import nn

from benchmark.record import EpochCheck, Flag, overfit_epoch
from benchmark.seeding import derive_seed

MONITOR_PGD_STEPS = 10


def monitor_indices(count: int, wanted: int) -> torch.Tensor:
    """`wanted` validation images spread evenly over the split (which is stratified, so every class is in), the
    same for every run seed."""
    wanted = min(count, wanted)
    return torch.linspace(0, count - 1, wanted).round().long() if wanted else torch.zeros(0, dtype=torch.long)


def robust_accuracies(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
                      seed: int, purpose: str) -> tuple[float, float, float]:
    """(clean, FGSM, PGD-10) accuracy of an eval-mode `model` on float images at L-infinity `eps`: an image
    counts only if it is right when clean and under the attack."""
    from benchmark.attacks import create_attack, is_correct

    was_training = model.training
    model.eval()
    count = len(images)
    clean = is_correct(model, images, labels)
    right_images, right_labels = images[clean], labels[clean]
    generator = torch.Generator(device=images.device).manual_seed(derive_seed(seed, purpose))
    results = [clean.float().mean().item()]
    for name, params in (("fgsm", {}), ("pgd", {"steps": MONITOR_PGD_STEPS})):
        if len(right_images) == 0:
            results.append(0.0)
            continue
        outcome = create_attack(name, params).perturb(model, right_images, right_labels, eps, generator=generator)
        results.append(outcome.robust.sum().item() / count)
    model.train(was_training)
    return tuple(results)


def catastrophic_overfitting(monitor: tuple[EpochCheck, ...]) -> Flag | None:
    """The flag for the first epoch the rule fires at (see the module's note); None when none does."""
    found = overfit_epoch(monitor)
    return None if found is None else Flag("catastrophic-overfitting", f"epoch {found[0]}: {found[1]}")


def overfitting_flags(monitor: tuple[EpochCheck, ...]) -> tuple[Flag, ...]:
    """The run's flags from its guard, as `evaluation.run_flags` gives the evaluation's (none under standard
    training, which has no guard)."""
    flag = catastrophic_overfitting(monitor)
    return (flag,) if flag is not None else ()
