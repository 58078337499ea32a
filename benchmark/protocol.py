"""Protocols: every setting that makes two runs comparable, in one frozen dataclass. The named presets are
small files in `benchmark/presets/` (`python -m benchmark presets` lists them); the training settings are
written here once, and the final training and the selection proxy both take theirs from a protocol."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import math
import pkgutil
from dataclasses import dataclass

from benchmark.errors import UserError
from benchmark.robustness import AttackSpec
from benchmark.train import TrainConfig

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
    eps: tuple[float, ...]  # the L-infinity eps grid; an attack with no eps of its own runs on it
    attacks: tuple[AttackSpec, ...]
    proxy_epochs: int
    proxy_lr: float = 0.1
    batch_size: int = 128
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    # re-estimate batch-norm statistics on the training images after each training (see train.py)
    precise_bn: bool = False
    # at least this many optimizer steps per final training: a small coreset trains more epochs (0: off)
    min_steps: int = 0
    # a seeded class-balanced subset of the training / test images (0: all of them)
    train_per_class: int = 0
    test_per_class: int = 0
    # class-balanced selection (per-class budgets proportional to class sizes); False: over the whole pool
    balance: bool = True
    # images on which every attack is cross-checked against its reference implementation
    cross_check_images: int = 16
    # the eps of the worst-case robust accuracy the leaderboard ranks by
    headline_eps: float = 8 / 255
    # per-method parameter defaults of this preset (e.g. fewer GraND proxies in smoke); --param overrides
    method_defaults: dict = dataclasses.field(default_factory=dict)

    def method_params(self, method: str, given: dict | None = None) -> dict:
        return {**self.method_defaults.get(method, {}), **(given or {})}

    def __post_init__(self):
        def finite(values) -> bool:
            return all(isinstance(v, (int, float)) and math.isfinite(v) for v in values)

        if not self.fractions:
            raise UserError("no fractions given: pass --fractions with values in (0, 1], e.g. 0.1,0.5")
        if not self.seeds:
            raise UserError("no seeds given: pass --seeds with at least one integer, e.g. 0,1,2")
        for fraction in self.fractions:
            if not finite([fraction]) or not 0 < fraction <= 1:
                raise UserError(f"fraction {fraction} is outside (0, 1]: pass fractions such as 0.1,0.5")
        for name, values in (("fractions", self.fractions), ("seeds", self.seeds), ("lrs", self.lrs)):
            if len(set(values)) != len(values):
                raise UserError(f"{name} {list(values)} repeat a value: each must be distinct")
        if self.epochs < 1 or self.proxy_epochs < 1 or self.batch_size < 2 or self.min_steps < 0:
            raise UserError("epochs and proxy epochs must be at least 1 and the batch size at least 2")
        if not self.lrs or not finite(self.lrs) or any(lr <= 0 for lr in self.lrs) or not finite([self.proxy_lr]) \
                or self.proxy_lr <= 0:
            raise UserError("learning rates must be positive finite numbers, e.g. --lrs 0.1,0.01")
        if self.train_per_class < 0 or self.test_per_class < 0:
            raise UserError("--train-per-class and --test-per-class must be 0 (all images) or a positive count")
        if self.cross_check_images < 0:
            raise UserError("--cross-check-images must be 0 or more")
        if not self.eps or not finite(self.eps) or any(not 0 <= e <= 1 for e in self.eps) \
                or list(self.eps) != sorted(set(self.eps)):
            raise UserError("eps values must be distinct, increasing and within [0, 255] /255, e.g. --eps 1,2,4,8,16")
        if not self.attacks:
            raise UserError("no attacks given: pass --attacks with registered attacks, e.g. fgsm,pgd")
        names = [spec.name for spec in self.attacks]
        if len(set(names)) != len(names):
            raise UserError(f"attacks {names} repeat a name: list each once")
        for spec in self.suite():
            spec.build()  # unknown attacks and bad parameters fail here, before any data loads
            if any(not 0 <= e for e in spec.eps) or not finite(spec.eps):
                raise UserError(f"attack {spec.name}: eps must be finite and non-negative")

    def suite(self) -> list[AttackSpec]:
        """The attacks, each with its eps values (the grid unless it has its own)."""
        return [spec if spec.eps else dataclasses.replace(spec, eps=self.eps) for spec in self.attacks]

    def epochs_for(self, images: int) -> int:
        """Epochs of a final training on `images` images: `epochs`, or more to reach `min_steps` steps."""
        per_epoch = max(1, math.ceil(images / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / per_epoch))

    def train_config(self, lr: float, images: int | None = None) -> TrainConfig:
        epochs = self.epochs if images is None else self.epochs_for(images)
        return TrainConfig(epochs=epochs, lr=lr, batch_size=self.batch_size, momentum=self.momentum,
                           nesterov=self.nesterov, weight_decay=self.weight_decay, precise_bn=self.precise_bn)

    def proxy_config(self, epochs: int | None = None) -> TrainConfig:
        return dataclasses.replace(self.train_config(self.proxy_lr),
                                   epochs=self.proxy_epochs if epochs is None else epochs)

    def settings(self) -> dict:
        """Everything but the grid (fractions, seeds) and the dataset spec, which may hold a local path (records
        name the dataset separately): runs with equal settings on the same dataset are comparable."""
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        del values["fractions"], values["seeds"], values["dataset"]
        values["attacks"] = [spec.to_json() for spec in self.attacks]
        values["lrs"], values["eps"] = list(self.lrs), list(self.eps)
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


_PRESETS: dict[str, Protocol] = {}


def presets() -> dict[str, Protocol]:
    """Every preset: one module per preset in `benchmark.presets`, each defining `PRESET`."""
    if not _PRESETS:
        package = importlib.import_module("benchmark.presets")
        for module in pkgutil.iter_modules(package.__path__):
            found = importlib.import_module(f"benchmark.presets.{module.name}").PRESET
            _PRESETS[found.preset] = found
    return dict(sorted(_PRESETS.items()))


def preset(name: str) -> Protocol:
    known = presets()
    if name not in known:
        raise UserError(f"unknown preset {name!r}; known presets: {', '.join(known)}")
    return known[name]
