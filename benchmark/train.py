"""Training and evaluation over device tensors: the images stay uint8 on the device, every epoch is a
permutation of index batches, and augmentation (random crop with zero padding 4, horizontal flip) is
applied to whole batches at once. channels_last everywhere; bf16 autocast on CUDA."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from time import perf_counter

import torch
import torch.nn.functional as F
from torch import nn

from benchmark.errors import UserError
from benchmark.overfitting import robust_accuracies
from benchmark.progress import progress
from benchmark.record import EpochCheck
from benchmark.seeding import derive_seed, torch_generator
from benchmark.storage import read_checkpoint, write_checkpoint
from benchmark.training import TrainingMethod, create_training

log = logging.getLogger("benchmark")
RECALIBRATION_BATCH = 512


@dataclass(frozen=True)
class TrainConfig:
    """One training's settings; the protocol (`benchmark.protocol.Protocol.train_config`) is where their
    values come from."""

    epochs: int
    lr: float
    batch_size: int
    momentum: float
    nesterov: bool
    weight_decay: float
    precise_bn: bool = False  # re-estimate batch-norm statistics on the training images after training
    augment: bool = True
    method: TrainingMethod | None = None  # `benchmark.training`; None: standard

    @property
    def adversarial(self) -> bool:
        return self.method is not None and self.method.adversarial

    def identity(self) -> dict:
        """The settings as a JSON-able dict (for checkpoints and the proxy cache's keys); standard training is
        written as before training methods existed, so those keys did not change."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "method"}
        if self.adversarial:
            values["method"] = {"name": self.method.name, **self.method.params()}
        return values


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> [0, 1] float in channels_last, the faster layout for these convolutions on CPU and GPU."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


PAD = 4  # random crops from images zero-padded by this many pixels


def augmentation_draws(count: int, generator: torch.Generator, pad: int = PAD) -> torch.Tensor:
    """A batch's random crop offsets and flips, 3 x count (dy, dx, flip as 0/1), drawn on the generator's device
    in the order `augment_batch` has always drawn them: the same seed gives the same augmentation on any device."""
    dy = torch.randint(0, 2 * pad + 1, (count,), generator=generator, device=generator.device)
    dx = torch.randint(0, 2 * pad + 1, (count,), generator=generator, device=generator.device)
    flip = torch.rand(count, generator=generator, device=generator.device) < 0.5
    return torch.stack([dy, dx, flip.long()])


def augment_batch(images: torch.Tensor, draws: torch.Tensor | torch.Generator, pad: int = PAD) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy, then a random horizontal flip; one gather. `draws`
    are `augmentation_draws` on the images' device (or a generator to draw them from)."""
    n, _, h, w = images.shape
    if isinstance(draws, torch.Generator):
        draws = augmentation_draws(n, draws, pad).to(images.device)
    dy, dx, flip = draws[0], draws[1], draws[2].bool()
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = dy[:, None] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def epoch_plan(count: int, batches: int, generator: torch.Generator, device: torch.device,
               augment: bool) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
    """An epoch's batches (index tensors) and their augmentation draws, drawn on the CPU generator in the order
    the loop has always drawn them (the permutation, then each batch's draws) and moved to the device in one
    copy: a copy per batch would make the host wait for the GPU at every step."""
    order = torch.randperm(count, generator=generator)
    sizes = [len(part) for part in torch.tensor_split(order, batches)]
    draws = torch.cat([augmentation_draws(size, generator) for size in sizes], dim=1) if augment else None
    if device.type == "cuda":
        order = order.pin_memory().to(device, non_blocking=True)
        draws = draws.pin_memory().to(device, non_blocking=True) if augment else None
    batches_ = list(torch.split(order, sizes))
    return batches_, list(torch.split(draws, sizes, dim=1)) if augment else [None] * len(sizes)


class DynamicsRecorder:
    """Per epoch and training image: whether the forward pass that trained on it classified it correctly, its
    margin (its logit minus the largest other) and its loss. Read off the training forward passes, so it
    costs no extra pass and changes nothing in the training."""

    def __init__(self, epochs: int, count: int, device: torch.device):
        self.correct = torch.zeros(epochs, count, dtype=torch.bool, device=device)
        self.margin = torch.zeros(epochs, count, device=device)
        self.loss = torch.zeros(epochs, count, device=device)

    def record(self, epoch: int, indices: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
               losses: torch.Tensor) -> None:
        logits = logits.detach().float()
        true = logits.gather(1, labels[:, None])[:, 0]
        other = logits.scatter(1, labels[:, None], float("-inf")).amax(1)
        self.correct[epoch, indices] = logits.argmax(1) == labels
        self.margin[epoch, indices] = true - other
        self.loss[epoch, indices] = losses.detach().float()

    def state(self) -> dict:
        return {"correct": self.correct, "margin": self.margin, "loss": self.loss}

    def load(self, state: dict) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)


@dataclass
class Guard:
    """Adversarial training's per-epoch check (`benchmark.overfitting`): held-out images (uint8, on the training
    device), the eps they are attacked at, and what each epoch found (restored with a checkpoint)."""

    images: torch.Tensor
    labels: torch.Tensor
    eps: float
    entries: list = dataclasses.field(default_factory=list)

    def measure(self, model: nn.Module, seed: int, purpose: str) -> tuple[float, float, float]:
        """(clean, FGSM, PGD-10) accuracy of `model` on the held-out images at the guard's eps."""
        return robust_accuracies(model, to_float(self.images), self.labels, self.eps, seed=seed, purpose=purpose)

    def check(self, model: nn.Module, epoch: int, seed: int, purpose: str) -> None:
        clean, fgsm, pgd = self.measure(model, seed, f"{purpose}/guard/{epoch}")
        self.entries.append(EpochCheck(epoch=epoch, clean=clean, fgsm=fgsm, pgd=pgd))


@dataclass
class TrainingClock:
    """Training seconds spent before this process: what the checkpoints it resumed from had recorded. A resumed
    run adds them to its own time, so its record states what the whole training took."""

    carried: float = 0.0


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def compile_mode() -> str | None:
    """The torch.compile mode of the training forward pass on a GPU (`--compile`, or CORESET_BENCH_COMPILE);
    None: eager. "reduce-overhead" replays the step's kernels as CUDA graphs: a small model at batch 128 is
    bound by kernel launches, not by the chip. CPU runs are always eager (their records are bitwise ones)."""
    mode = os.environ.get("CORESET_BENCH_COMPILE") or None
    if mode is not None and mode not in COMPILE_MODES:
        raise UserError(f"CORESET_BENCH_COMPILE={mode!r}: use one of {', '.join(COMPILE_MODES)}")
    return mode


def compiled(model: nn.Module, device: torch.device, adversarial: bool = False):
    """The model's forward for training steps: compiled on a GPU when asked (it shares the model's weights).
    Adversarial training calls the forward several times before one backward (the attack's steps), which CUDA
    graphs cannot replay safely (a later replay overwrites the outputs an earlier call's backward needs): its
    steps are compiled without them (untried on a GPU so far: docs/gpu.md)."""
    mode = compile_mode()
    if adversarial and mode in ("reduce-overhead", "max-autotune"):
        mode = "max-autotune-no-cudagraphs" if mode == "max-autotune" else "default"
    return torch.compile(model, mode=mode) if mode and device.type == "cuda" else model


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    return model.to(device, memory_format=torch.channels_last)


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, *,
                seed: int, purpose: str, desc: str = "train", sample_weights: torch.Tensor | None = None,
                checkpoint: Path | None = None, dynamics: DynamicsRecorder | None = None,
                clock: TrainingClock | None = None, guard: Guard | None = None) -> nn.Module:
    """SGD (Nesterov momentum, weight decay) with a per-step cosine schedule, on the losses of the config's
    training method (standard: clean cross-entropy; adversarial ones attack each batch first). `images` are uint8 on the
    device the model is on; the batch order and the augmentation draw from seeds derived from `seed`.
    `sample_weights` (from weighted selectors) scale each image's loss; they are normalised to mean 1.

    With `checkpoint`, the whole training state is saved there (atomically) after every epoch, and a
    checkpoint found there at the start is resumed from: on CPU the result is bitwise the same as an
    uninterrupted training. The caller deletes the file once it has what it needs. With `dynamics`, what the
    training forward passes saw of each image is recorded there (and checkpointed with the rest). Checkpoints
    keep the training seconds so far; `clock` receives those of the checkpoint resumed from. With `guard`,
    the model is attacked on its held-out images after every epoch (adversarial training's check)."""
    device = images.device
    model = prepare(model, device)
    generator = torch_generator(seed, purpose, device="cpu")
    # on a GPU one fused kernel updates every parameter (instead of a few kernels per tensor); the CPU keeps the
    # plain loop, so CPU records stay as they were
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay,
                                fused=True if device.type == "cuda" else None)
    batches_per_epoch = max(1, math.ceil(len(images) / config.batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * batches_per_epoch)
    if sample_weights is not None:
        sample_weights = sample_weights * (len(sample_weights) / sample_weights.sum())
    method = config.method or create_training("standard")
    # the training attack's random starts: on the device (a draw per step copied from the host would stall a GPU)
    adversary = torch_generator(seed, f"{purpose}/adversary", device=device)
    identity = {"config": config.identity(), "images": len(images), "seed": seed, "purpose": purpose}
    cuda = [device] if device.type == "cuda" else []
    # layers that draw from the global RNG (dropout, drop-path) get a stream of their own, saved with the rest
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(derive_seed(seed, f"{purpose}/global"))
        start, carried = _resume(checkpoint, identity, model, optimizer, schedule, generator, adversary, cuda,
                                 dynamics, guard) if checkpoint else (0, 0.0)
        if clock is not None:
            clock.carried += carried
        started = perf_counter()
        model.train()
        forward = compiled(model, device, adversarial=method.adversarial)
        for epoch in progress(range(start, config.epochs), desc=desc, unit="epoch", initial=start,
                              total=config.epochs):
            # near-equal batches: never a final batch of one image, which batch norm cannot train on
            batches, draws = epoch_plan(len(images), batches_per_epoch, generator, device, config.augment)
            for batch, drawn in zip(batches, draws):
                x = to_float(images[batch])
                if drawn is not None:
                    x = augment_batch(x, drawn).contiguous(memory_format=torch.channels_last)
                with _autocast(device):
                    losses, logits = method.losses(forward, x, labels[batch], generator=adversary)
                    loss = losses.mean() if sample_weights is None else (losses * sample_weights[batch]).mean()
                if dynamics is not None:
                    dynamics.record(epoch, batch, logits, labels[batch], losses)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
            if guard is not None:
                guard.check(model, epoch + 1, seed, purpose)
            if checkpoint:
                write_checkpoint(checkpoint, {
                    **identity, "epoch": epoch + 1, "seconds": carried + perf_counter() - started,
                    # the last epoch's checkpoint only stands in for the trained model (a resume trains no more):
                    # without the momentum it is half the size, small enough to carry between GPU windows
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict() if epoch + 1 < config.epochs else None,
                    "schedule": schedule.state_dict(), "generator": generator.get_state(),
                    "rng": torch.get_rng_state(), "cuda_rng": [torch.cuda.get_rng_state(d) for d in cuda],
                    "adversary": adversary.get_state(),
                    "guard": [entry.to_json() for entry in guard.entries] if guard is not None else [],
                    "dynamics": dynamics.state() if dynamics is not None else {}})
    if config.precise_bn:
        recalibrate_batch_norm(model, images)
    model.eval()
    return model


@torch.no_grad()
def recalibrate_batch_norm(model: nn.Module, images: torch.Tensor) -> None:
    """"Precise BN" (Wu & Johnson, "Rethinking 'Batch' in BatchNorm", 2021): replaces each batch-norm layer's
    running statistics, an exponential average over the last few training steps, by the exact mean and
    variance over the training images (without augmentation) under the final weights. After only a few dozen
    steps (a small coreset) the running averages lag the weights, and an eval-mode model can fall to chance
    while the same model in train mode is far better."""
    layers = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not layers:
        return
    momenta = [layer.momentum for layer in layers]
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None  # a cumulative average over every batch below
    model.train()
    with _autocast(images.device):
        for start in range(0, len(images), RECALIBRATION_BATCH):  # large batches: per-batch variances are biased
            batch = images[start:start + RECALIBRATION_BATCH]
            if len(batch) > 1:
                model(to_float(batch))
    for layer, momentum in zip(layers, momenta):
        layer.momentum = momentum


def _resume(checkpoint: Path, identity: dict, model, optimizer, schedule, generator, adversary, cuda,
            dynamics: DynamicsRecorder | None, guard: Guard | None) -> tuple[int, float]:
    """Loads a training checkpoint into the live objects; returns the number of epochs it had done and the
    seconds they took. A damaged checkpoint (its content hash does not match) or another training's is
    ignored: training starts afresh."""
    state = read_checkpoint(checkpoint) if checkpoint.exists() else None
    if state is None:
        return 0, 0.0
    if {key: state.get(key) for key in identity} != identity or (dynamics is not None) != bool(state.get("dynamics")):
        log.warning("checkpoint %s belongs to other settings; training from the start", checkpoint)
        return 0, 0.0
    model.load_state_dict(state["model"])
    if state["optimizer"] is not None:  # None only after the last epoch (nothing left to train)
        optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    generator.set_state(state["generator"])
    torch.set_rng_state(state["rng"])
    for device, rng in zip(cuda, state["cuda_rng"]):
        torch.cuda.set_rng_state(rng, device)
    if dynamics is not None:
        dynamics.load(state["dynamics"])
    if "adversary" in state:  # checkpoints before training methods had none (and standard training draws nothing)
        adversary.set_state(state["adversary"])
    if guard is not None:
        guard.entries[:] = [EpochCheck.from_json(entry) for entry in state.get("guard", [])]
    log.info("resumed from %s after epoch %d of %d", checkpoint.name, state["epoch"], identity["config"]["epochs"])
    return state["epoch"], float(state.get("seconds", 0.0))  # checkpoints of version 0.2.0 kept no seconds


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int = 512, embed: bool = False):
    """Logits (and penultimate embeddings when `embed`) in float32 for uint8 images, in eval mode."""
    model.eval()
    logits, embeddings = [], []
    for start in range(0, len(images), batch_size):
        x = to_float(images[start:start + batch_size])
        if embed:
            features = model.embed(x)
            embeddings.append(features.float())
            logits.append(model.head(features).float())
        else:
            logits.append(model(x).float())
    logits = torch.cat(logits)
    return (logits, torch.cat(embeddings)) if embed else logits


def accuracy(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 512) -> float:
    return (predict(model, images, batch_size).argmax(1) == labels).float().mean().item()
