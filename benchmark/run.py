"""One run: dataset -> proxy -> selector -> trainer -> attacks -> record. Keyword-only entry points that
return records; the CLI is a thin layer over `run_protocol` and `select_coreset`."""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.attacks import fgsm_robustness
from benchmark.data import ImageDataset, load_dataset, stratified_split
from benchmark.errors import UserError
from benchmark.models import build_model
from benchmark.protocol import Protocol
from benchmark.proxy import PoolData, ProxyFeatures
from benchmark.records import SCHEMA, environment, indices_sha256, now, record_path, write_arrays, write_json
from benchmark.seeding import derive_seed
from benchmark.selection import Selection, SelectionContext, Selector, create_selector, validate_selection
from benchmark.train import TrainConfig, accuracy, train_model

log = logging.getLogger("benchmark")


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"device {name!r} asked for, but CUDA is not available here: use --device cpu")
    try:
        return torch.device(name)
    except RuntimeError:
        raise UserError(f"unknown device {name!r}; use auto, cpu or cuda[:N]") from None


def load_protocol_data(protocol: Protocol, *, device: torch.device, data_root: Path | None,
                       cache_dir: Path) -> tuple[PoolData, np.ndarray]:
    dataset = load_dataset(protocol.dataset, data_root=data_root, cache_dir=cache_dir)
    return prepare_data(dataset.limited(protocol.train_per_class, protocol.test_per_class), device)


def prepare_data(dataset: ImageDataset, device: torch.device) -> tuple[PoolData, np.ndarray]:
    """Split off the validation set (seeded, class-balanced, fixed across run seeds) and move the pool,
    validation and test tensors to the device. Returns the data and the pool's training-set indices."""
    labels = dataset.train_labels.numpy()
    pool, validation = stratified_split(labels, dataset.num_classes, dataset.validation_size)
    digest = hashlib.sha256(dataset.fingerprint().encode())
    digest.update(pool.astype(np.int64).tobytes())
    train_float = dataset.train_images[pool].float() / 255
    data = PoolData(
        dataset=dataset.name, data_key=digest.hexdigest(), num_classes=dataset.num_classes,
        pool_images=dataset.train_images[pool].to(device), pool_labels=dataset.train_labels[pool].to(device),
        val_images=dataset.train_images[validation].to(device),
        val_labels=dataset.train_labels[validation].to(device),
        test_images=dataset.test_images.to(device), test_labels=dataset.test_labels.to(device),
        mean=train_float.mean(dim=(0, 2, 3)), std=train_float.std(dim=(0, 2, 3)).clamp_min(1e-3))
    return data, pool


def budget_for(pool_size: int, fraction: float) -> int:
    return max(1, min(pool_size, round(fraction * pool_size)))


def select_coreset(*, selector: Selector, data: PoolData, protocol: Protocol, fraction: float, seed: int,
                   cache_dir: Path, balance: bool = True) -> tuple[Selection, float]:
    """Runs a selector on the pool and validates what it returns. Seconds exclude proxy training, which
    is shared by every method and cached."""
    features = ProxyFeatures(data, model=protocol.model, seed=seed, epochs=protocol.proxy_epochs,
                             lr=protocol.proxy_lr, batch_size=protocol.batch_size, cache_dir=cache_dir)
    context = SelectionContext(labels=data.pool_labels.cpu().numpy(), num_classes=data.num_classes,
                               budget=budget_for(len(data.pool_labels), fraction), seed=seed, features=features,
                               balance=balance, device=data.pool_images.device)
    if selector.uses_proxy:
        context.embeddings()  # train or load the shared proxy outside the selector's timing
    started = time.perf_counter()
    selection = selector.select(context)
    seconds = time.perf_counter() - started
    return validate_selection(selection, context, selector.name), seconds


def train_on_selection(*, data: PoolData, selection: Selection, protocol: Protocol, seed: int) -> dict:
    """Final training on the coreset, once per learning rate; the lr with the best validation accuracy
    is kept and its final-epoch model is evaluated on the test set (never used to choose anything)."""
    indices = torch.as_tensor(selection.indices, device=data.pool_images.device)
    images, labels = data.pool_images[indices], data.pool_labels[indices]
    weights = None if selection.weights is None else torch.as_tensor(selection.weights, dtype=torch.float32,
                                                                       device=images.device)
    started = time.perf_counter()
    best = None
    grid = []
    for lr in protocol.lrs:
        config = TrainConfig(epochs=protocol.epochs, lr=lr, batch_size=protocol.batch_size,
                             momentum=protocol.momentum, nesterov=protocol.nesterov,
                             weight_decay=protocol.weight_decay)
        model = build_model(protocol.model, data.num_classes, data.mean, data.std, seed=derive_seed(seed, "init"))
        model = train_model(model.to(images.device), images, labels, config, seed=seed, purpose="training",
                            desc=f"train lr={lr:g}", sample_weights=weights)
        val_accuracy = accuracy(model, data.val_images, data.val_labels)
        grid.append({"lr": lr, "validation_accuracy": val_accuracy})
        if best is None or val_accuracy > best[1]:
            best = (model, val_accuracy, lr)
    model, val_accuracy, lr = best
    return {"model": model, "seconds": time.perf_counter() - started, "lr": lr,
            "validation_accuracy": val_accuracy, "lr_grid": grid}


def run_one(*, method: str, params: dict | None, protocol: Protocol, data: PoolData, pool_indices: np.ndarray,
            fraction: float, seed: int, out: Path, cache_dir: Path, force: bool = False) -> tuple[dict, bool]:
    """One run; returns (record, whether it was computed now). An existing record is reused unless
    `force`. The record is written last, so a killed run leaves no record and is redone on resume."""
    selector = create_selector(method, params)
    key = protocol.key(method, selector.params())
    path = record_path(out, method=method, dataset=data.dataset, model=protocol.model, fraction=fraction,
                       seed=seed, key=key)
    if path.exists() and not force:
        log.info("exists, skipped (use --force to redo): %s", path)
        return json.loads(path.read_text()), False

    selection, selection_seconds = select_coreset(selector=selector, data=data, protocol=protocol,
                                                     fraction=fraction, seed=seed, cache_dir=cache_dir)
    trained = train_on_selection(data=data, selection=selection, protocol=protocol, seed=seed)
    model = trained["model"]
    clean = accuracy(model, data.test_images, data.test_labels)
    attacks = fgsm_robustness(model, data.test_images, data.test_labels, list(protocol.eps))

    artifact = path.with_name(path.stem + ".selection.npz")
    arrays = {"pool_indices": selection.indices, "train_indices": pool_indices[selection.indices]}
    if selection.weights is not None:
        arrays["weights"] = selection.weights
    if selection.scores is not None:
        arrays["scores"] = selection.scores
    write_arrays(artifact, **arrays)
    record = {
        "schema": SCHEMA,
        "method": method,
        "method_params": selector.params(),
        "paper": selector.paper,
        "dataset": data.dataset,
        "model": protocol.model,
        "preset": protocol.preset,
        "protocol": {"dataset": data.dataset, **protocol.settings()},
        "fraction": fraction,
        "seed": seed,
        "budget": int(len(selection.indices)),
        "pool_size": int(len(data.pool_labels)),
        "selection": {"indices_sha256": indices_sha256(selection.indices), "seconds": selection_seconds,
                      "weighted": selection.weights is not None, "artifact": artifact.name},
        "training": {"epochs": protocol.epochs, "lr": trained["lr"], "lr_grid": trained["lr_grid"],
                     "optimizer": (f"SGD momentum {protocol.momentum}, nesterov {protocol.nesterov}, "
                                   f"weight decay {protocol.weight_decay}, cosine schedule"),
                     "batch_size": protocol.batch_size, "seconds": trained["seconds"],
                     "validation_accuracy": trained["validation_accuracy"]},
        "clean_accuracy": clean,
        "attacks": attacks,
        "environment": environment(data.pool_images.device),
        "created": now(),
    }
    write_json(record, path)
    log.info("%s fraction %g seed %d: clean %.2f%%, FGSM %s -> %s", method, fraction, seed, 100 * clean,
             ", ".join(f"{a['eps'] * 255:g}/255 {100 * a['accuracy']:.1f}%" for a in attacks), path.name)
    return record, True


def run_protocol(*, protocol: Protocol, methods: list[tuple[str, dict]], out: Path, cache_dir: Path,
                 device: torch.device, data_root: Path | None = None, force: bool = False) -> list[dict]:
    """Every method x fraction x seed of the protocol (a `whole_pool` method runs once per seed)."""
    # every method is created before any data is loaded, so a bad name or parameter fails at once
    selectors = [(name, create_selector(name, protocol.method_params(name, params))) for name, params in methods]
    data, pool_indices = load_protocol_data(protocol, device=device, data_root=data_root, cache_dir=cache_dir)
    records = []
    for name, selector in selectors:
        fractions = (1.0,) if selector.whole_pool else protocol.fractions
        for seed in protocol.seeds:
            for fraction in fractions:
                record, _ = run_one(method=name, params=selector.params(), protocol=protocol, data=data,
                                    pool_indices=pool_indices, fraction=fraction, seed=seed, out=out,
                                    cache_dir=cache_dir, force=force)
                records.append(record)
    return records
