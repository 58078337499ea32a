"""The attacks of a suite on a trained model, counted the way RobustBench counts, and cross-checked.

- An image counts as robust to an attack at an eps only if the model classifies it correctly when clean and
  under that attack. Every attack runs on the clean-correct images only (the others are not robust).
- Cross-check: each attack at each eps (or, for L-infinity attacks, at the protocol's `cross_check_eps`), on
  `cross_check_images` clean-correct images (the same ones for every attack), is run in-house without its early
  stop and by its independent `reference` from the same random start, in one batch of exactly those images for
  both; their accuracies on those images must agree within the attack's tolerance or the run fails.
- Radii: an image's radius is the smallest eps of the grid at which some L-infinity attack of the suite fooled
  it (an upper bound on its minimal adversarial perturbation, at the grid's resolution; `benchmark.record`). The
  attacks' perturbations sit on the ball's surface (the sign steps of FGSM and APGD), so their own sizes would
  add nothing, and a radius from the grid is the same whether the suite runs as a cascade or not.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.attacks import Attack, LibraryView, bucket_floor, create_attack, logits_of
from benchmark.errors import UserError
from benchmark.progress import progress
from benchmark.record import AttackResult, AttackSpec, CrossCheck, eps_text, pack_mask
from benchmark.seeding import derive_seed, torch_generator
from benchmark.train import to_float

log = logging.getLogger("benchmark")


class CrossCheckFailed(UserError):
    """An attack and its independent reference disagree beyond the tolerance: one of them is wrong."""


class AttackRefused(UserError):
    """An attack returned what the harness does not count: wrong shape or type, not finite, outside [0, 1] or
    outside its eps-ball."""


# float32 rounding of x + eps: a correct L-infinity attack lands within this of its ball; an L2 one within this
# relative to eps (plus the same absolute slack)
BALL_TOLERANCE = 1e-5


def checked_output(adversarial, images: torch.Tensor, eps: float, threat: str, name: str) -> torch.Tensor:
    """`adversarial` if it is what an attack on `images` at `eps` may return, else AttackRefused naming why."""
    where = f"{name} at {eps_text(eps, threat)}"
    if not torch.is_tensor(adversarial) or adversarial.shape != images.shape or adversarial.dtype != images.dtype:
        got = f"{tuple(adversarial.shape)} {adversarial.dtype}" if torch.is_tensor(adversarial) else \
            type(adversarial).__name__
        raise AttackRefused(f"{where} returned {got}, not images of shape {tuple(images.shape)} {images.dtype}")
    adversarial = adversarial.detach().to(images.device)
    if not torch.isfinite(adversarial).all():
        raise AttackRefused(f"{where} returned images with NaN or infinite pixels")
    if adversarial.min() < 0 or adversarial.max() > 1:
        raise AttackRefused(f"{where} returned pixels outside [0, 1] ({float(adversarial.min()):.4g} to "
                            f"{float(adversarial.max()):.4g})")
    delta = (adversarial - images).flatten(1)
    size = delta.abs().amax(1) if threat == "Linf" else delta.norm(dim=1)
    limit = eps + BALL_TOLERANCE * (1 if threat == "Linf" else 1 + eps)
    if (size > limit).any():
        raise AttackRefused(f"{where} moved {int((size > limit).sum())} image(s) outside its eps-ball (up to "
                            f"{float(size.max()):.6g}, {threat} eps {eps:.6g})")
    return adversarial


def build(spec: AttackSpec) -> Attack:
    return create_attack(spec.name, spec.params)


@dataclass(frozen=True)
class AttackRun:
    """One attack of the suite at each of its eps: the record's entries, and what the checks and gallery need."""

    spec: AttackSpec
    attack: Attack
    entries: tuple[AttackResult, ...]
    seconds: float
    cross_check_seconds: float
    kept: dict  # eps -> the adversarial images of the test images at `keep` (clean-correct ones, for the gallery)
    disagreements: dict  # eps -> images where the attack's own report differed from the harness's reading
    attacked: int  # the clean-correct images it ran on
    radii: np.ndarray | None  # per test image, the smallest eps it was fooled at (inf: none; L2 attacks: None)


def default_batch_size(model: nn.Module, device: torch.device, image_shape: tuple[int, ...]) -> int:
    """Images per attack batch, from the memory one image's forward and backward pass needs (measured with
    forward hooks on one image: every module output is kept for the backward pass, and gradients of the
    same size flow back) against a budget: 1 GiB on a CPU, a quarter of the GPU's memory. On a GPU it is rounded
    down to a size the attacks pad to (`bucket_floor`), so that a full batch is not padded."""
    sizes = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * out.element_size())
                                          if torch.is_tensor(out) else None)
             for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    per_image = max(1, 3 * sum(sizes))
    budget = torch.cuda.get_device_properties(device).total_memory // 4 if device.type == "cuda" else 2 ** 30
    size = int(min(1024, max(8, budget // per_image)))
    return bucket_floor(size) if device.type == "cuda" else size


def clean_predictions(model: nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    predictions = np.zeros(len(images), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = to_float(images[start:start + batch_size]).contiguous()
            predictions[start:start + len(batch)] = model(batch).argmax(1).cpu().numpy()
    return predictions


def cross_check_positions(clean_correct: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The clean-correct test images every attack is cross-checked on (seeded, the same for every attack)."""
    order = np.random.default_rng(derive_seed(seed, "cross-check-images")).permutation(np.flatnonzero(clean_correct))
    return np.sort(order[:count])


def batch(images: torch.Tensor, labels: torch.Tensor, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.as_tensor(positions, device=images.device)
    return to_float(images[index]).contiguous(), labels[index]


def generator(seed: int, purpose: str, device: torch.device) -> torch.Generator:
    return torch_generator(seed, purpose, device=device)


def image_seeds(seed: int, name: str, eps: float, positions: np.ndarray) -> torch.Tensor:
    """Each test image's own seed for an attack at an eps: its draws do not depend on its batch."""
    return torch.tensor([derive_seed(seed, f"attack/{name}/{eps!r}/image/{int(p)}") for p in positions],
                        dtype=torch.int64)


def takes_seeds(attack: Attack) -> bool:
    """Whether the attack draws per image when given seeds (the in-house ones with random starts; a plug-in may
    not, and a deterministic attack need not)."""
    if "seeds" not in inspect.signature(attack.perturb_grid).parameters:
        return False
    if type(attack).perturb_grid is Attack.perturb_grid:  # the base passes them on to perturb
        return "seeds" in inspect.signature(attack.perturb).parameters
    return True


def run_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec,
               clean_correct: np.ndarray, *, seed: int, batch_size: int, checked: np.ndarray,
               keep: np.ndarray | None = None, attacked: dict[float, np.ndarray] | None = None,
               cross_check_eps: tuple[float, ...] | None = None) -> AttackRun:
    """One attack of the suite at each of its eps on the clean-correct images (or, per eps, on `attacked`: a
    cascade's survivors; the others count as fooled), with its cross-check at each eps (or at `cross_check_eps`
    only)."""
    attack = build(spec)
    radii = np.full(len(images), np.inf) if attack.threat == "Linf" else None
    right = np.flatnonzero(clean_correct)
    tick = time.perf_counter()
    robust = {eps: np.zeros(len(images), dtype=bool) for eps in spec.eps}
    disagreements = {eps: 0 for eps in spec.eps}
    keep = np.asarray([] if keep is None else keep, dtype=np.int64)
    kept = {eps: batch(images, labels, keep)[0] for eps in spec.eps}
    per_image = takes_seeds(attack)
    # one pass over the images for every eps at once; a cascade attacks other images at each eps
    rounds = [(list(spec.eps), right)] if attacked is None else \
        [([eps], np.flatnonzero(attacked[eps] & clean_correct)) for eps in spec.eps]
    for eps_values, targets in rounds:
        for start in progress(range(0, len(targets), batch_size), desc=f"{spec.name} at {len(eps_values)} eps",
                              unit="batch"):
            positions = targets[start:start + batch_size]
            attack_batch(model, images, labels, attack, eps_values, positions, seed=seed, per_image=per_image,
                         start=start, robust=robust, disagreements=disagreements, keep=keep, kept=kept,
                         radii=radii)
    seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    entries = tuple(AttackResult(name=spec.name, threat=attack.threat, eps=eps, params=attack.params(),
                                 accuracy=float(robust[eps].mean()), robust=pack_mask(robust[eps]),
                                 cross_check=cross_check(model, attack, images, labels, checked, eps, seed)
                                 if len(checked) and checked_at(eps, attack.threat, cross_check_eps) else None,
                                 cascaded=True if attacked is not None and not attacked[eps].all() else None)
                    for eps in spec.eps)
    cross_seconds = time.perf_counter() - tick
    log.info("%s: %s (%.1f s; cross-check on %d images %.1f s)", spec.name,
             ", ".join(f"{eps_text(eps, attack.threat)} {100 * r.mean():.1f}%" for eps, r in robust.items()), seconds,
             len(checked), cross_seconds)
    return AttackRun(spec, attack, entries, seconds, cross_seconds, kept, disagreements, len(right), radii)


def checked_at(eps: float, threat: str, cross_check_eps: tuple[float, ...] | None) -> bool:
    """Whether an attack of this threat is cross-checked at eps: the chosen eps are L-infinity ones (on the grid);
    an attack of another norm is checked at each of its own."""
    return cross_check_eps is None or threat != "Linf" or any(math.isclose(eps, e, rel_tol=1e-9)
                                                              for e in cross_check_eps)


def attack_batch(model, images, labels, attack: Attack, eps_values: list[float], positions: np.ndarray, *,
                 seed: int, per_image: bool, start: int, robust: dict, disagreements: dict, keep: np.ndarray,
                 kept: dict, radii: np.ndarray | None = None) -> None:
    """The attack on one batch at these eps: each returned image checked, then read by the harness."""
    spec_name = attack.name
    x, y = batch(images, labels, positions)
    generators = [generator(seed, f"attack/{spec_name}/{eps!r}/{start}", images.device) for eps in eps_values]
    seeds = [image_seeds(seed, spec_name, eps, positions) for eps in eps_values] if per_image else None
    outcomes = attack.perturb_grid(model, x, y, list(eps_values), generators=generators,
                                   **({"seeds": seeds} if per_image else {}))
    if not isinstance(outcomes, (list, tuple)) or len(outcomes) != len(eps_values):
        raise AttackRefused(f"{spec_name} returned {type(outcomes).__name__}, not one outcome per eps")
    for eps, outcome in zip(eps_values, outcomes):
        adversarial = checked_output(getattr(outcome, "adversarial", None), x, eps, attack.threat, spec_name)
        with torch.no_grad():  # the harness decides what was fooled, never the attack's own report
            still_right = logits_of(model, adversarial).argmax(1) == y
        reported = getattr(outcome, "robust", None)
        if torch.is_tensor(reported) and reported.shape == still_right.shape:
            disagreements[eps] += int((reported.to(still_right.device).bool() != still_right).sum())
        robust[eps][positions] = still_right.cpu().numpy()
        if radii is not None:
            fooled = positions[~still_right.cpu().numpy()]
            radii[fooled] = np.minimum(radii[fooled], eps)
        shown = np.isin(positions, keep)
        if shown.any():
            slots = np.searchsorted(keep, positions[shown]) if np.all(np.diff(keep) > 0) else \
                np.array([int(np.flatnonzero(keep == p)[0]) for p in positions[shown]])
            kept[eps][torch.as_tensor(slots, device=images.device)] = adversarial[
                torch.as_tensor(shown, device=images.device)]


def cross_check(model: nn.Module, attack: Attack, images: torch.Tensor, labels: torch.Tensor,
                positions: np.ndarray, eps: float, seed: int) -> CrossCheck:
    """The attack without early stop and its reference, from the same random start, on the same images."""
    x, y = batch(images, labels, positions)
    start_seed = derive_seed(seed, f"cross-check/{attack.name}/{eps!r}") % 2 ** 31
    ours = attack.perturb(model, x, y, eps, generator=torch.Generator(device=x.device).manual_seed(start_seed),
                          early_stop=False).final_correct
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(start_seed)
        adversarial = attack.reference_perturb(LibraryView(model), x, y, eps, seed=start_seed)
    model.eval()  # whatever mode the library left it in
    with torch.no_grad():
        theirs = model(adversarial.to(x.device)).argmax(1) == y
    ours_count, theirs_count = int(ours.sum()), int(theirs.sum())
    points, images_allowed = attack.tolerance(x.device)
    allowed = max(points / 100 * len(positions), images_allowed)
    reference = f"{attack.reference} ({_version(attack.reference)})"
    if abs(ours_count - theirs_count) > allowed + 1e-9:
        raise CrossCheckFailed(
            f"{attack.name} cross-check failed at eps={eps_text(eps, attack.threat)}: in-house "
            f"{ours_count}/{len(positions)} robust, {reference} {theirs_count}/{len(positions)} (tolerance "
            f"{points:g} points or {images_allowed} images on {x.device.type})")
    return CrossCheck(reference=reference, images=len(positions), accuracy=ours_count / len(positions),
                      reference_accuracy=theirs_count / len(positions), disagreements=int((ours != theirs).sum()),
                      tolerance_points=points, tolerance_images=images_allowed)


def _version(reference: str) -> str:
    package = {"torchattacks": "torchattacks", "pyautoattack": "pyautoattack"}.get(reference.split(".")[0])
    try:
        return f"{package} {importlib.metadata.version(package)}" if package else "unknown version"
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
