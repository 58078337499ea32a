"""Attacks: one file each in this package, registered by name like selectors (plug-ins: entry-point group
``coreset_bench.attacks``). An attack is a frozen dataclass whose fields are its parameters; it says its
threat model (`norm`), its paper, and the independent implementation it is cross-checked against.

Every attack here is written from its paper's formulas ("in-house") and runs on images the model classifies
correctly (an image wrong when clean is not robust, RobustBench's rule). Iterative attacks count an image
as fooled as soon as any iterate is misclassified, as AutoAttack's APGD does: every iterate lies in the
threat model, so this is the stronger reading of the attack. Fooled images then leave the batch (only the
survivors take further steps), which changes nothing for the others (eval-mode models treat samples
independently) and makes an attack on a weak model cost a few steps per image instead of all of them. On a
GPU the shrinking batch is padded to one of a few sizes (`bucket_size`), since the first passes at every new
batch size cost seconds there.

The cross-check (`benchmark.robustness`) runs the same attack without that early stop on a few images,
from the same random start, beside `reference` (another library), and compares the final iterates.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.registry import Registry

NORMS = ("Linf", "L2")


@dataclass
class Outcome:
    """One attack at one eps on a batch of images that are all classified correctly when clean."""

    adversarial: torch.Tensor  # where each image ended: its first misclassified iterate, else the last one
    robust: torch.Tensor  # bool per image: every iterate classified correctly
    final_correct: torch.Tensor  # bool per image: the last iterate classified correctly (early_stop=False)


@dataclass(frozen=True)
class Attack:
    """Base of every attack. Subclasses define `perturb` (and `reference_perturb` for the cross-check)."""

    name: ClassVar[str]
    paper: ClassVar[str]
    url: ClassVar[str] = ""
    reference: ClassVar[str] = ""  # the independent implementation the cross-check compares with
    tolerance_points: ClassVar[float] = 0.1  # largest |in-house - reference| accuracy allowed, in points,
    tolerance_images: ClassVar[int] = 0  # or in images, whichever allows more
    # On a GPU the harness's passes (channels_last, batches padded to bucket sizes) and the reference's (NCHW,
    # exact sizes) run different cuDNN kernels, whose float32 sums differ in the last bits: an image on the
    # decision boundary can fall either way, and no attack agrees exactly. Measured on an H200 (docs/gpu.md):
    # gaps of 1 or 2 images in 500 for FGSM, BIM, PGD and PGD-L2, in 4 of about 50 checks. A wrong step, sign or
    # projection moves many points.
    gpu_tolerance_points: ClassVar[float] = 1.0
    gpu_tolerance_images: ClassVar[int] = 2
    iterative: ClassVar[bool] = True

    @property
    def threat(self) -> str:
        """The norm of the threat model: "Linf" or "L2"."""
        return getattr(self, "norm", "Linf")

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tolerance(self, device: torch.device) -> tuple[float, int]:
        """(points, images) the cross-check allows on this device: the attack's own, at least the GPU's floor
        there."""
        if device.type == "cpu":
            return self.tolerance_points, self.tolerance_images
        return max(self.tolerance_points, self.gpu_tolerance_points), max(self.tolerance_images,
                                                                          self.gpu_tolerance_images)

    def perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
                generator: torch.Generator, early_stop: bool = True, seeds: torch.Tensor | None = None) -> Outcome:
        """`seeds` (int64, one per image), when given, are where each image's random draws come from, so that an
        image's outcome does not depend on the batch it is in (`random_draw`); else `generator` draws for the
        whole batch at once (as the references draw: the cross-check compares the same numbers)."""
        raise NotImplementedError

    def perturb_grid(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps_values: list[float],
                     *, generators: list[torch.Generator], early_stop: bool = True,
                     seeds: list[torch.Tensor] | None = None) -> list[Outcome]:
        """One outcome per eps; an attack that can share work across eps (FGSM's gradient) overrides this."""
        return [self.perturb(model, images, labels, eps, generator=g, early_stop=early_stop,
                             **({"seeds": seeds[i]} if seeds is not None else {}))
                for i, (eps, g) in enumerate(zip(eps_values, generators))]

    def reference_perturb(self, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, eps: float, *,
                          seed: int) -> torch.Tensor:
        """Adversarial images from `reference`, its random start drawn from the global RNG seeded with `seed`
        (the caller forks and restores the RNG)."""
        raise NotImplementedError


ATTACKS = Registry("attack", "benchmark.attacks", "coreset_bench.attacks")
register = ATTACKS.register
available_attacks = ATTACKS.available


# the most any attack may be asked to do: beyond these a run never ends in practice (steps: per eps and batch)
LIMITS = {"steps": 100_000, "restarts": 1_000, "queries": 1_000_000}


def create_attack(name: str, params: dict[str, Any] | None = None) -> Attack:
    """The registered attack `name` with `params`; unknown names and parameters, values of the wrong type and
    counts beyond `LIMITS` are one-line errors."""
    from benchmark.errors import UserError

    attack = ATTACKS.create(name, params)
    for field, limit in LIMITS.items():
        value = getattr(attack, field, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > limit:
            raise UserError(f"attack {name!r}: {field} {value:,} is more than the {limit:,} this benchmark runs")
    return attack


def check_norm(norm: str) -> None:
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}")


class _ContiguousGradient(torch.autograd.Function):
    """The identity, whose gradient is handed back in the contiguous (NCHW) layout."""

    @staticmethod
    def forward(ctx, images):
        return images.clone()

    @staticmethod
    def backward(ctx, gradient):
        return gradient.contiguous()


class LibraryView(nn.Module):
    """The harness's model as other attack libraries expect it: the harness keeps models in channels_last, so
    the gradient with respect to an NCHW input comes back channels_last, and libraries that `.view` it
    (torchattacks' PGDL2, its FAB) fail. Outputs and gradient values are the model's own, bit for bit."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model
        self.train(model.training)  # libraries restore the mode they found, and a new Module is in training mode

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.model(_ContiguousGradient.apply(images.contiguous()))


# --- shared pieces of the in-house attacks -----------------------------------------------------------------
def bucket_size(count: int) -> int:
    """The batch size `count` images are padded to on a GPU: the next number of the form 2^k or 3 * 2^(k-1)
    (1, 2, 3, 4, 6, 8, 12, 16, 24, ...), so at most a third of a padded batch is padding and a batch size
    up to 1,024 takes one of 20 shapes."""
    if count <= 3:
        return count
    power = 1 << (count - 1).bit_length()  # the power of two at or above count
    return power * 3 // 4 if count <= power * 3 // 4 else power


def bucket_floor(count: int) -> int:
    """The largest batch size of `bucket_size`'s form at or below `count`: a GPU's attack batch is chosen so,
    and its full batches then need no padding (281 images would be padded to 384; 256 are not)."""
    if count <= 3:
        return count
    power = 1 << (count.bit_length() - 1)  # the power of two at or below count
    return power * 3 // 2 if power * 3 // 2 <= count else power


def pads_batches(images: torch.Tensor) -> bool:
    """Whether model calls on `images` are padded to `bucket_size`: on a GPU only. There the first passes at
    a batch size the process has not met cost seconds (cuDNN plans, kernels loaded on first use), and an
    attack whose fooled images leave the batch meets a new size at nearly every step: on an H100, BIM's 31
    passes over 9 new sizes took 33 s, 0.6 s when repeated; padded, 3.8 s the first time and 0.5 s after
    (docs/gpu.md). On a CPU there is no such cost, and padding would only add work."""
    return images.is_cuda


def logits_of(model: nn.Module, images: torch.Tensor) -> torch.Tensor:
    """model(images) in float32, the batch padded with copies of its first image where `pads_batches` says so
    (the padding's outputs are dropped; an eval-mode model treats every image on its own)."""
    count = len(images)
    padding = bucket_size(count) - count if count and pads_batches(images) else 0
    if padding:
        filler = images[:1].detach().expand(padding, *images.shape[1:])
        return model(torch.cat([images, filler]))[:count].float()
    return model(images).float()


def losses_and_gradient(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, loss: str = "ce",
                        targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits, per-sample losses, gradient of their sum w.r.t. the images): each image's gradient is that
    of its own loss, whatever else is in the batch. `targets`: each image's target class (targeted losses)."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        logits = logits_of(model, images)
        losses = per_sample_loss(logits, labels, loss, targets)
        (gradient,) = torch.autograd.grad(losses.sum(), images)
    return logits.detach(), losses.detach(), gradient


def per_sample_loss(logits: torch.Tensor, labels: torch.Tensor, loss: str,
                    targets: torch.Tensor | None = None) -> torch.Tensor:
    if loss == "ce":
        return F.cross_entropy(logits, labels, reduction="none")
    if loss == "dlr":
        return dlr_loss(logits, labels)
    if loss == "dlr-targeted":
        return targeted_dlr_loss(logits, labels, targets)
    raise ValueError(f"unknown loss {loss!r}")


def dlr_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce & Hein 2020, eq. 3): -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3),
    with z sorted decreasingly; invariant to shifting and scaling the logits. Needs three or more classes."""
    ordered, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, labels[:, None])[:, 0]
    top_is_true = logits.argmax(1) == labels
    best_other = torch.where(top_is_true, ordered[:, 1], ordered[:, 0])
    return -(true - best_other) / (ordered[:, 0] - ordered[:, 2] + 1e-12)


def targeted_dlr_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Targeted DLR (Croce & Hein 2020, eq. 4): -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2), z sorted
    decreasingly, t the target class; maximising it pushes z_t above z_y. Needs four or more classes."""
    ordered, _ = logits.sort(dim=1, descending=True)
    true = logits.gather(1, labels[:, None])[:, 0]
    target = logits.gather(1, targets[:, None])[:, 0]
    return -(true - target) / (ordered[:, 0] - (ordered[:, 2] + ordered[:, 3]) / 2 + 1e-12)


def correct(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return logits.argmax(1) == labels


@torch.no_grad()
def is_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return correct(logits_of(model, images), labels)


def linf_clip(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto the eps-ball around `images` and the [0, 1] box: delta = clip(x' - x, -eps, eps),
    x' = clip(x + delta, 0, 1)."""
    delta = (adversarial - images).clamp(-eps, eps)
    return (images + delta).clamp(0, 1)


def linf_box_clip(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """The same projection written as clip(min(max(x', x - eps), x + eps), 0, 1), without forming delta (as
    BIM and APGD are usually written; the two forms can differ in the last bit)."""
    return torch.min(torch.max(adversarial, images - eps), images + eps).clamp(0, 1)


def l2_clip(adversarial: torch.Tensor, images: torch.Tensor, eps: float) -> torch.Tensor:
    """Projection onto the L2 eps-ball (delta * min(1, eps / ||delta||)), then the [0, 1] box."""
    delta = adversarial - images
    norms = delta.flatten(1).norm(dim=1).clamp_min(1e-12)
    factor = (eps / norms).clamp(max=1.0)
    return (images + delta * factor[:, None, None, None]).clamp(0, 1)


def l2_normalized(gradient: torch.Tensor) -> torch.Tensor:
    return gradient / (gradient.flatten(1).norm(dim=1)[:, None, None, None] + 1e-10)


def iterate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, start: torch.Tensor, steps: int,
            step, *, early_stop: bool, loss: str = "ce") -> Outcome:
    """The loop shared by BIM and PGD: from `start`, `steps` times x <- step(x, gradient at x). Every iterate
    (the start, each step's result) is checked; with `early_stop` an image leaves at its first misclassified
    iterate, which is where its adversarial image stays."""
    adversarial = start.clone()
    robust = torch.ones(len(images), dtype=torch.bool, device=images.device)
    active = torch.arange(len(images), device=images.device)
    for _ in range(steps):
        if len(active) == 0:
            break
        logits, _, gradient = losses_and_gradient(model, adversarial[active], labels[active], loss)
        right = correct(logits, labels[active])
        robust[active] &= right
        if early_stop:
            active, gradient = active[right], gradient[right]
        adversarial[active] = step(adversarial[active], images[active], gradient)
    if len(active):
        robust[active] &= is_correct(model, adversarial[active], labels[active])
    final = robust.clone() if early_stop else is_correct(model, adversarial, labels)
    return Outcome(adversarial, robust, final)


def random_draw(shape: tuple[int, ...], fill, *, generator: torch.Generator | None, seeds: torch.Tensor | None,
                device: torch.device) -> torch.Tensor:
    """`fill(tensor, generator)` over a (len, *shape) tensor: from `generator` in one draw, or, with `seeds`,
    row by row from a generator seeded with each row's seed on `device` (the same image gets the same numbers in
    any batch: a cascade that attacks only the survivors finds what the whole suite finds, image by image)."""
    if seeds is None:
        return fill(torch.empty(shape, device=device), generator)
    rows = [fill(torch.empty((1, *shape[1:]), device=device), torch.Generator(device=device).manual_seed(int(seed)))
            for seed in seeds.tolist()]
    return torch.cat(rows) if rows else torch.empty(shape, device=device)


def reseeded(seeds: torch.Tensor | None, round_: int) -> torch.Tensor | None:
    """Each image's seed for a later round of its draws (a restart, another loss): still per image."""
    if seeds is None or round_ == 0:
        return seeds
    return (seeds * 1_000_003 + round_) % (2 ** 62)


def uniform_linf_start(images: torch.Tensor, eps: float, generator: torch.Generator,
                       seeds: torch.Tensor | None = None) -> torch.Tensor:
    """A uniform draw from the eps-ball, clipped to the box: the values torch.empty_like(x).uniform_(-eps,
    eps) gives from the same RNG state (as torchattacks draws them), or each image's own (`random_draw`)."""
    noise = random_draw(tuple(images.shape), lambda t, g: t.uniform_(-eps, eps, generator=g), generator=generator,
                        seeds=seeds, device=images.device)
    return (images + noise).clamp(0, 1)


def tolerance_problems(record) -> list[tuple[str, str]]:
    """Cross-checks whose recorded tolerance is larger than the registered attack allows on the record's device:
    a record states the tolerance its check used, so that `validate` can read the gap against it, and this is
    what keeps a record from widening it. Attacks this checkout does not register (another's plug-in) are not
    read."""
    device = torch.device("cpu" if (record.environment.device or "cpu") == "cpu" else "cuda")
    problems = []
    for i, result in enumerate(record.attacks):
        check = result.cross_check
        if check is None or result.name not in available_attacks():
            continue
        try:
            points, images = create_attack(result.name, result.params).tolerance(device)
        except Exception:  # parameters this version no longer takes: the consistency rules still apply
            continue
        if check.tolerance_points > points + 1e-9 or check.tolerance_images > images:
            problems.append((f"attacks[{i}].cross_check", f"states a tolerance of {check.tolerance_points:g} points "
                             f"or {check.tolerance_images} images, more than {result.name} allows on "
                             f"{device.type} ({points:g} points or {images} images)"))
    return problems
