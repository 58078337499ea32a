"""Classifiers whose first layer is normalization, so attacks work in [0, 1] pixel space.

MobileNetV2's stem follows the image size, so the last feature map is 4x4 for small images: for 32x32 inputs
(CIFAR) stride 1 in the stem convolution and in the first stride-2 block; for 64x64 (Tiny ImageNet) stride 1
in the stem only; from 128x128 up, ImageNet's strides. timm builds it when importable (`mobilenetv2_100`,
`mobilenetv2_050`, ...); torchvision's `mobilenet_v2` with the same change otherwise. Any other timm name is
built as timm has it.
"""

from __future__ import annotations

import re

import torch
from torch import nn

from benchmark.errors import UserError


class Classifier(nn.Module):
    """normalize -> backbone -> embedding -> linear head; `embed` returns the penultimate features."""

    def __init__(self, embedder: nn.Module, head: nn.Linear, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", mean.reshape(1, -1, 1, 1).float())
        self.register_buffer("std", std.reshape(1, -1, 1, 1).float())
        self.embedder = embedder
        self.head = head

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embedder((images - self.mean) / self.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))


class _TimmEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


class _TorchvisionEmbedder(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.features = model.features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return nn.functional.adaptive_avg_pool2d(self.features(x), 1).flatten(1)


def _width(name: str) -> float | None:
    match = re.fullmatch(r"mobilenetv2_(\d{3})", name)
    return int(match.group(1)) / 100 if match else None


def _timm():
    try:
        import timm
    except ImportError:
        return None
    return timm


def check_model_name(name: str, prefer_timm: bool = True) -> None:
    """Fails at once, before any run starts, for a model `build_model` could not build."""
    timm = _timm() if prefer_timm else None
    if timm is not None:
        if not timm.is_model(name):
            raise UserError(f"unknown model {name!r}; use a timm model name such as mobilenetv2_100")
    elif _width(name) is None:
        raise UserError(f"model {name!r} needs timm; without it only mobilenetv2_NNN widths are available")


def stem_strides_removed(image_size: int) -> int:
    """How many of MobileNetV2's first two stride-2 layers become stride 1 for this image size."""
    return 2 if image_size <= 32 else 1 if image_size <= 64 else 0


def build_model(name: str, num_classes: int, mean: torch.Tensor, std: torch.Tensor, *, seed: int,
                image_size: int = 32, prefer_timm: bool = True) -> Classifier:
    """A fresh classifier initialised from `seed`, leaving the global torch RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _build(name, num_classes, mean, std, stem_strides_removed(image_size), prefer_timm)


def _build(name: str, num_classes: int, mean: torch.Tensor, std: torch.Tensor, removed: int,
           prefer_timm: bool) -> Classifier:
    check_model_name(name, prefer_timm)
    timm = _timm() if prefer_timm else None
    if timm is not None:
        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
        if name.startswith("mobilenetv2"):
            layers = [model.conv_stem, model.blocks[1][0].conv_dw]
            for layer in layers[:removed]:
                layer.stride = (1, 1)
        head = model.get_classifier()
        model.reset_classifier(0)  # the head lives in Classifier; the embedder ends at pre-logits
        return Classifier(_TimmEmbedder(model), head, mean, std)
    width = _width(name)
    from torchvision.models import mobilenet_v2

    model = mobilenet_v2(weights=None, num_classes=num_classes, width_mult=width)
    for layer in [model.features[0][0], model.features[2].conv[1][0]][:removed]:
        layer.stride = (1, 1)
    return Classifier(_TorchvisionEmbedder(model), model.classifier[1], mean, std)
