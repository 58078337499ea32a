"""Training methods: how a model learns from its images, one file each in this package, registered by name like
selectors and attacks (plug-ins: entry-point group ``coreset_bench.training``). A method is a frozen dataclass
whose fields are its parameters. The loop in `benchmark.train` owns everything else (batches, augmentation, the
optimizer, checkpoints); it hands the method each augmented batch and takes back one loss per image.

Adversarial methods find their training perturbations with the pieces the attacks use (`uniform_linf_start`,
`linf_clip`), but on the training model as it is in that step (batch norm on batch statistics, autocast on a
GPU), never padded: padding would change a training batch's statistics.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from benchmark.registry import Registry

Forward = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class TrainingMethod:
    """Base of every training method; subclasses define `losses`."""

    name: ClassVar[str]
    paper: ClassVar[str]
    url: ClassVar[str] = ""
    adversarial: ClassVar[bool] = True

    def params(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def step_size(self) -> float | None:
        """The size of each training-attack step in [0, 1] pixel units (None: no attack)."""
        return None

    def losses(self, forward: Forward, images: torch.Tensor, labels: torch.Tensor, *,
               generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """(one loss per image, to be averaged and minimised; the logits of the images the model learnt from,
        for the training dynamics). `forward` is the training model (in training mode); `generator`, on the
        images' device, is where random starts come from."""
        raise NotImplementedError


TRAINING = Registry("training method", "benchmark.training", "coreset_bench.training")
register = TRAINING.register
available_training = TRAINING.available


def create_training(name: str, params: dict[str, Any] | None = None) -> TrainingMethod:
    """The registered training method `name` with `params`; unknown names and bad parameters are one-line
    errors (UserError)."""
    return TRAINING.create(name, params)


def check_attack(eps: float, rel_step: float, steps: int = 1) -> None:
    """The training attack's settings: eps in (0, 1], a positive step, at least one step."""
    if not 0 < eps <= 1:
        raise ValueError(f"eps must be in (0, 1] (e.g. 8/255 = 0.0314), got {eps}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if not rel_step > 0:
        raise ValueError(f"rel_step must be positive, got {rel_step}")


@dataclass(frozen=True)
class IterativeTrainingAttack(TrainingMethod):
    """Base of the methods whose training attack takes `steps` projected signed-gradient steps of size
    `rel_step * eps / steps` in the L-infinity ball (PGD-AT, TRADES); not registered itself."""

    eps: float = 8 / 255
    steps: int = 10
    rel_step: float = 2.5  # step = rel_step * eps / steps

    def __post_init__(self):
        check_attack(self.eps, self.rel_step, self.steps)

    def step_size(self) -> float:
        return self.rel_step * self.eps / self.steps


def input_gradient(forward: Forward, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The gradient of the summed cross-entropy with respect to the images: each image's own (batch norm in
    training mode mixes a batch, as every adversarial-training reference does)."""
    images = images.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = F.cross_entropy(forward(images).float(), labels, reduction="sum")
        (gradient,) = torch.autograd.grad(loss, images)
    return gradient


def cross_entropy_on(forward: Forward, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    logits = forward(images)
    return F.cross_entropy(logits, labels, reduction="none"), logits
