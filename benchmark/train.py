"""Training and evaluation over device tensors: the images stay uint8 on the device, every epoch is a
permutation of index batches, and augmentation (random crop with zero padding 4, horizontal flip) is
applied to whole batches at once. channels_last everywhere; bf16 autocast on CUDA."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from benchmark.seeding import torch_generator


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int = 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    augment: bool = True


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> [0, 1] float in channels_last, the faster layout for these convolutions on CPU and GPU."""
    return images.float().div_(255).contiguous(memory_format=torch.channels_last)


def augment_batch(images: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop of each image from its zero-padded copy, then a random horizontal flip; one gather."""
    n, _, h, w = images.shape
    padded = F.pad(images, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(images.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator, device=generator.device).to(images.device)
    flip = torch.rand(n, generator=generator, device=generator.device).to(images.device) < 0.5
    rows = dy[:, None] + torch.arange(h, device=images.device)
    cols = torch.arange(w, device=images.device).expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    batch = torch.arange(n, device=images.device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=images.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


def _autocast(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")


def prepare(model: nn.Module, device: torch.device) -> nn.Module:
    return model.to(device, memory_format=torch.channels_last)


def train_model(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, config: TrainConfig, *,
                seed: int, purpose: str, desc: str = "train", sample_weights: torch.Tensor | None = None) -> nn.Module:
    """SGD (Nesterov momentum, weight decay) with a per-step cosine schedule. `images` are uint8 on the
    device the model is on; the batch order and the augmentation draw from seeds derived from `seed`.
    `sample_weights` (from weighted selectors) scale each image's loss; they are normalised to mean 1."""
    device = images.device
    model = prepare(model, device)
    generator = torch_generator(seed, purpose, device="cpu")
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    batches_per_epoch = max(1, math.ceil(len(images) / config.batch_size))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs * batches_per_epoch)
    if sample_weights is not None:
        sample_weights = sample_weights * (len(sample_weights) / sample_weights.sum())
    model.train()
    for _ in tqdm(range(config.epochs), desc=desc, unit="epoch", leave=False, disable=None):
        order = torch.randperm(len(images), generator=generator).to(device)
        # near-equal batches: never a final batch of one image, which batch norm cannot train on
        for batch in torch.tensor_split(order, batches_per_epoch):
            x = to_float(images[batch])
            if config.augment:
                x = augment_batch(x, generator).contiguous(memory_format=torch.channels_last)
            with _autocast(device):
                losses = F.cross_entropy(model(x), labels[batch], reduction="none")
                loss = losses.mean() if sample_weights is None else (losses * sample_weights[batch]).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
    model.eval()
    return model


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
