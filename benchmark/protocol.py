"""Protocol presets: every setting that makes two runs comparable, in one frozen dataclass."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from benchmark.errors import UserError

STANDARD_EPS = (1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255)


@dataclass(frozen=True)
class Protocol:
    preset: str
    dataset: str
    model: str
    fractions: tuple[float, ...]
    seeds: tuple[int, ...]
    epochs: int
    lrs: tuple[float, ...]
    eps: tuple[float, ...]
    proxy_epochs: int
    proxy_lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    # a seeded class-balanced subset of the training / test images (0: all of them)
    train_per_class: int = 0
    test_per_class: int = 0
    # per-method parameter defaults of this preset (e.g. fewer GraND proxies in smoke); --param overrides
    method_defaults: dict = dataclasses.field(default_factory=dict)

    def method_params(self, method: str, given: dict | None = None) -> dict:
        return {**self.method_defaults.get(method, {}), **(given or {})}

    def __post_init__(self):
        if not self.fractions:
            raise UserError("no fractions given: pass --fractions with values in (0, 1], e.g. 0.1,0.5")
        if not self.seeds:
            raise UserError("no seeds given: pass --seeds with at least one integer, e.g. 0,1,2")
        for fraction in self.fractions:
            if not 0 < fraction <= 1:
                raise UserError(f"fraction {fraction} is outside (0, 1]: pass fractions such as 0.1,0.5")
        if len(set(self.seeds)) != len(self.seeds):
            raise UserError(f"seeds {list(self.seeds)} repeat a value: each seed must be distinct")
        if self.epochs < 1 or self.proxy_epochs < 1 or self.batch_size < 2:
            raise UserError("epochs and proxy epochs must be at least 1 and the batch size at least 2")
        if not self.lrs or any(lr <= 0 for lr in self.lrs):
            raise UserError("learning rates must be positive numbers, e.g. --lrs 0.1,0.01")
        if any(not 0 <= e <= 1 for e in self.eps) or list(self.eps) != sorted(set(self.eps)):
            raise UserError("eps values must be distinct, increasing and within [0, 255] /255")

    def settings(self) -> dict:
        """Everything but the grid (fractions, seeds) and the dataset spec, which may hold a local path (records
        name the dataset separately): runs with equal settings on the same dataset are comparable."""
        values = dataclasses.asdict(self)
        del values["fractions"], values["seeds"], values["dataset"]
        return values

    def key(self, method: str, params: dict) -> str:
        text = json.dumps({"settings": self.settings(), "method": method, "params": params}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]

    def with_overrides(self, **overrides) -> Protocol:
        """The preset with user overrides; renamed "<name>+custom" when a setting changed. The grid (fractions,
        seeds), the dataset and the model are recorded and grouped on separately, so they keep the name."""
        given = {k: v for k, v in overrides.items() if v is not None}
        kept = ("fractions", "seeds", "dataset", "model")
        changed = any(getattr(self, k) != v for k, v in given.items() if k not in kept)
        updated = dataclasses.replace(self, **given)
        if changed and not self.preset.endswith("+custom"):
            updated = dataclasses.replace(updated, preset=f"{self.preset}+custom")
        return updated


PRESETS = {
    # The study's protocol: CIFAR-10, MobileNetV2 with the CIFAR stem, 200 epochs (a GPU job).
    "standard": Protocol(preset="standard", dataset="cifar10", model="mobilenetv2_100", fractions=(0.1, 0.5),
                         seeds=(0, 1, 2), epochs=200, lrs=(0.1,), eps=STANDARD_EPS, proxy_epochs=10),
    # Seconds on a laptop CPU: the embedded digits, the narrowest MobileNetV2, a few epochs.
    "smoke": Protocol(preset="smoke", dataset="digits", model="mobilenetv2_035", fractions=(0.1, 0.5),
                      seeds=(0,), epochs=4, lrs=(0.05,), eps=STANDARD_EPS, proxy_epochs=2, proxy_lr=0.05,
                      batch_size=32, method_defaults={"grand": {"repeats": 2, "epochs": 1}}),
    # The published CPU-scale leaderboard: a class-balanced CIFAR-10 subset (200 training and 100 test images
    # per class), the narrowest MobileNetV2, 10 epochs at batch 32; under an hour for every method on 2 cores.
    "cifar10-cpu": Protocol(preset="cifar10-cpu", dataset="cifar10", model="mobilenetv2_035", fractions=(0.1, 0.5),
                            seeds=(0, 1, 2), epochs=10, lrs=(0.05,), eps=STANDARD_EPS, proxy_epochs=3,
                            proxy_lr=0.05, batch_size=32, train_per_class=200, test_per_class=100,
                            method_defaults={"grand": {"repeats": 3, "epochs": 1}}),
}


def preset(name: str) -> Protocol:
    if name not in PRESETS:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(PRESETS)}")
    return PRESETS[name]
