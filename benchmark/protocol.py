"""Protocols: every setting that makes two runs comparable, in one frozen dataclass, checked field by field when
it is made (`ProtocolError` names the field). The named presets are a registry like the other axes: one small
file each in `benchmark/presets/`, plug-ins through the `coreset_bench.presets` entry points (`python -m
benchmark presets` lists them). The final training and the selection proxy both take their settings from here."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass

from benchmark.errors import UserError
from benchmark.record import AttackSpec, ProtocolSettings, TrainingSpec, eps_text
from benchmark.registry import Registry
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
    # run every attack after the first of its threat on the images the earlier ones left robust, eps by eps:
    # the worst case is the same, image by image, at a fraction of the work; per-attack accuracies are then not
    # measured (records mark those entries `cascaded`)
    cascade: bool = False
    # the L-infinity eps the cross-checks run at (empty: every eps; an attack of another norm is checked at each of
    # its own); an attack's code is the same at every eps
    cross_check_eps: tuple[float, ...] = ()
    # clean accuracy on the whole test split as well, when `test_per_class` attacks a subset of it (power for
    # clean comparisons costs one forward pass per test image)
    full_test_clean: bool = False
    # how the final model learns (`benchmark.training`): standard, or an adversarial training method
    training: TrainingSpec = TrainingSpec("standard")
    # train the selection proxy with `training` too (its own, fewer, epochs), so that selectors reading the proxy
    # see a robust model, as adversarial coreset selection intends; needs an adversarial `training`
    adversarial_proxy: bool = False
    # held-out validation images attacked after every epoch of adversarial training (`benchmark.overfitting`)
    monitor_images: int = 128

    def method_params(self, method: str, given: dict | None = None) -> dict:
        return {**self.method_defaults.get(method, {}), **(given or {})}

    @property
    def name(self) -> str:
        """The name the preset registry knows this protocol by."""
        return self.preset

    def __post_init__(self):
        for check in (_grid, _training, _method, _subsets, _attacks):
            check(self)

    def suite(self) -> list[AttackSpec]:
        """The attacks, each with its eps values (the grid unless it has its own)."""
        return [spec if spec.eps else dataclasses.replace(spec, eps=self.eps) for spec in self.attacks]

    def epochs_for(self, images: int) -> int:
        """Epochs of a final training on `images` images: `epochs`, or more to reach `min_steps` steps."""
        per_epoch = max(1, math.ceil(images / self.batch_size))
        return max(self.epochs, math.ceil(self.min_steps / per_epoch))

    def training_method(self):
        from benchmark.training import create_training

        return create_training(self.training.name, self.training.params)

    def train_config(self, lr: float, images: int | None = None) -> TrainConfig:
        epochs = self.epochs if images is None else self.epochs_for(images)
        return TrainConfig(epochs=epochs, lr=lr, batch_size=self.batch_size, momentum=self.momentum,
                           nesterov=self.nesterov, weight_decay=self.weight_decay, precise_bn=self.precise_bn,
                           method=self.training_method())

    def proxy_config(self, epochs: int | None = None) -> TrainConfig:
        from benchmark.training import create_training

        method = self.training_method() if self.adversarial_proxy else create_training("standard")
        return dataclasses.replace(self.train_config(self.proxy_lr), method=method,
                                   epochs=self.proxy_epochs if epochs is None else epochs)

    def settings(self, dataset: str) -> ProtocolSettings:
        """Everything but the grid (fractions, seeds), as the record states it, with the dataset's name (the
        protocol's dataset spec may hold a local path): runs with equal settings are comparable."""
        shared = {f.name: getattr(self, f.name) for f in dataclasses.fields(ProtocolSettings) if f.name != "dataset"}
        if self.training.adversarial:  # with every parameter, defaults too: what the run trained with
            shared.update(training=TrainingSpec(self.training.name, self.training_method().params()))
        else:  # absent for standard training, so the records made before the option keep their keys (file names)
            shared.update(training=None, adversarial_proxy=None, monitor_images=None)
        # settings off or empty are absent, so the records made before them keep their keys (file names)
        shared.update({name: shared[name] or None for name in ("cascade", "cross_check_eps", "full_test_clean")})
        return ProtocolSettings(dataset=dataset, **shared)

    def key(self, method: str, params: dict) -> str:
        text = json.dumps({"settings": self.settings("").comparable(), "method": method, "params": params},
                          sort_keys=True)
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


class ProtocolError(UserError):
    """A protocol setting out of its range; `field` names the setting (the CLI adds its option's name)."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(f"{field}: {message}")


MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 16


def _finite(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def _distinct(field: str, values) -> None:
    if len(set(values)) != len(values):
        raise ProtocolError(field, f"{list(values)} repeats a value: each must be distinct")


def _grid(protocol: Protocol) -> None:
    if not protocol.fractions:
        raise ProtocolError("fractions", "none given: give values in (0, 1], e.g. 0.1,0.5")
    for fraction in protocol.fractions:
        if not _finite([fraction]) or not 0 < fraction <= 1:
            raise ProtocolError("fractions", f"{fraction} is outside (0, 1]: give fractions such as 0.1,0.5")
    _distinct("fractions", protocol.fractions)
    if not protocol.seeds:
        raise ProtocolError("seeds", "none given: give at least one integer, e.g. 0,1,2")
    _distinct("seeds", protocol.seeds)


def _training(protocol: Protocol) -> None:
    for field in ("epochs", "proxy_epochs"):
        if not 1 <= getattr(protocol, field) <= MAX_EPOCHS:
            raise ProtocolError(field, f"{getattr(protocol, field)} is outside [1, {MAX_EPOCHS}]")
    if not 2 <= protocol.batch_size <= MAX_BATCH:
        raise ProtocolError("batch_size", f"{protocol.batch_size} is outside [2, {MAX_BATCH}] (batch norm needs two "
                            f"images a batch)")
    if protocol.min_steps < 0:
        raise ProtocolError("min_steps", f"{protocol.min_steps} is negative: 0 (off) or a number of steps")
    if not protocol.lrs or not _finite(protocol.lrs) or any(lr <= 0 for lr in protocol.lrs):
        raise ProtocolError("lrs", f"{list(protocol.lrs)}: learning rates must be positive finite numbers, e.g. "
                            f"0.1,0.01")
    _distinct("lrs", protocol.lrs)
    if not _finite([protocol.proxy_lr]) or protocol.proxy_lr <= 0:
        raise ProtocolError("proxy_lr", f"{protocol.proxy_lr} must be a positive finite number")


def _method(protocol: Protocol) -> None:
    from benchmark.training import create_training

    spec = protocol.training
    if not isinstance(spec, TrainingSpec):
        raise ProtocolError("training", f"expected a TrainingSpec, got {type(spec).__name__}")
    try:
        create_training(spec.name, spec.params)
    except UserError as error:
        raise ProtocolError("training", str(error)) from None
    if protocol.adversarial_proxy and not spec.adversarial:
        raise ProtocolError("adversarial_proxy", "the proxy can only be trained adversarially when the training "
                            "method is adversarial: name one, e.g. --training fgsm-rs")
    if not 1 <= protocol.monitor_images <= 100_000:
        raise ProtocolError("monitor_images", f"{protocol.monitor_images} is outside [1, 100000]")


def _subsets(protocol: Protocol) -> None:
    for field in ("train_per_class", "test_per_class", "cross_check_images"):
        if getattr(protocol, field) < 0:
            raise ProtocolError(field, f"{getattr(protocol, field)} is negative: 0 or a positive count")
    if protocol.full_test_clean and not protocol.test_per_class:
        raise ProtocolError("full_test_clean", "the test set is already the whole test split: it needs "
                            "test_per_class (a subset to attack)")


def _attacks(protocol: Protocol) -> None:
    from benchmark.attacks import create_attack

    eps = protocol.eps
    if not eps or not _finite(eps) or any(not 0 <= e <= 1 for e in eps) or list(eps) != sorted(set(eps)):
        raise ProtocolError("eps", f"{', '.join(eps_text(e) for e in eps) or 'none'}: the eps grid must be "
                            f"distinct, increasing and within [0, 255/255], e.g. 1/255,2/255,8/255")
    if not protocol.attacks:
        raise ProtocolError("attacks", "none given: name registered attacks, e.g. fgsm,pgd")
    names = [spec.name for spec in protocol.attacks]
    if len(set(names)) != len(names):
        raise ProtocolError("attacks", f"{names} repeat a name: list each once")
    for spec in protocol.suite():
        create_attack(spec.name, spec.params)  # unknown attacks and bad parameters fail here, before any data
        if any(not 0 <= e for e in spec.eps) or not _finite(spec.eps):
            raise ProtocolError("attacks", f"{spec.name}: eps must be finite and non-negative")
    outside = [e for e in protocol.cross_check_eps if not any(math.isclose(e, g, rel_tol=1e-9) for g in eps)]
    if outside:
        raise ProtocolError("cross_check_eps", f"{', '.join(eps_text(e) for e in outside)} is not on the eps grid "
                            f"{', '.join(eps_text(e) for e in eps)}")


PRESETS = Registry("preset", "benchmark.presets", "coreset_bench.presets", required=("name",), instances=True)
register_preset = PRESETS.register


def presets() -> dict[str, Protocol]:
    """Every preset: one module per preset in `benchmark.presets` (each calls `register_preset`), and the
    protocols of the `coreset_bench.presets` entry points."""
    return PRESETS.available()


def preset(name: str) -> Protocol:
    return PRESETS.get(name)
