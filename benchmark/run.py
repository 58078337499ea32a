"""One run: dataset -> proxy -> selector -> trainer -> attacks -> record. `run_one` does a run from its
`RunSpec` and resumes one that was killed; `benchmark.sweep` runs grids of them."""

from __future__ import annotations

import hashlib
import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.attacks import fgsm_robustness
from benchmark.data import ImageDataset, dataset_name, load_dataset, stratified_split
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


def train_on_selection(*, data: PoolData, selection: Selection, protocol: Protocol, seed: int,
                       checkpoints: Path | None = None) -> dict:
    """Final training on the coreset, once per learning rate; the lr with the best validation accuracy
    is kept and its final-epoch model is evaluated on the test set (never used to choose anything).
    With `checkpoints` (a directory), each training checkpoints there every epoch and resumes from it."""
    indices = torch.as_tensor(selection.indices, device=data.pool_images.device)
    images, labels = data.pool_images[indices], data.pool_labels[indices]
    weights = None if selection.weights is None else torch.as_tensor(selection.weights, dtype=torch.float32,
                                                                       device=images.device)
    started = time.perf_counter()
    best = None
    grid = []
    for i, lr in enumerate(protocol.lrs):
        config = TrainConfig(epochs=protocol.epochs, lr=lr, batch_size=protocol.batch_size,
                             momentum=protocol.momentum, nesterov=protocol.nesterov,
                             weight_decay=protocol.weight_decay)
        model = build_model(protocol.model, data.num_classes, data.mean, data.std, seed=derive_seed(seed, "init"))
        model = train_model(model.to(images.device), images, labels, config, seed=seed, purpose="training",
                            desc=f"train lr={lr:g}", sample_weights=weights,
                            checkpoint=checkpoints / f"lr{i}.pt" if checkpoints else None)
        val_accuracy = accuracy(model, data.val_images, data.val_labels)
        grid.append({"lr": lr, "validation_accuracy": val_accuracy})
        if best is None or val_accuracy > best[1]:
            best = (model, val_accuracy, lr)
    model, val_accuracy, lr = best
    return {"model": model, "seconds": time.perf_counter() - started, "lr": lr,
            "validation_accuracy": val_accuracy, "lr_grid": grid}


@dataclass(frozen=True)
class RunSpec:
    """One cell of a grid: a selector with its parameters, at one fraction and seed, recorded at `record`."""

    method: str
    params: dict
    fraction: float
    seed: int
    record: Path
    uses_proxy: bool

    @property
    def label(self) -> str:
        return f"{self.method} f{self.fraction:g} s{self.seed}"

    @property
    def partial(self) -> Path:
        """The run's state while it is unfinished (its selection, training checkpoints); removed at the end."""
        return self.record.parent / PARTIAL_DIR / self.record.stem


PARTIAL_DIR = ".partial"


def run_spec(*, method: str, params: dict, protocol: Protocol, fraction: float, seed: int, out: Path) -> RunSpec:
    selector = create_selector(method, params)
    key = protocol.key(method, selector.params())
    path = record_path(out, method=method, dataset=dataset_name(protocol.dataset), model=protocol.model,
                       fraction=fraction, seed=seed, key=key)
    return RunSpec(method, selector.params(), fraction, seed, path, selector.uses_proxy)


def _saved_selection(spec: RunSpec, *, selector: Selector, data: PoolData, protocol: Protocol,
                     cache_dir: Path) -> tuple[Selection, float]:
    """The run's selection: made once and kept in its partial state, so a resumed run trains on the same one."""
    saved = spec.partial / "selection.npz"
    if saved.exists():
        try:
            with np.load(saved) as stored:
                optional = {name: stored[name] for name in ("weights", "scores") if name in stored.files}
                return Selection(stored["indices"], **optional), float(stored["seconds"])
        except Exception as error:  # written atomically: only outside damage gets here
            log.warning("saved selection %s is unreadable (%s); selecting again", saved, error)
    selection, seconds = select_coreset(selector=selector, data=data, protocol=protocol, fraction=spec.fraction,
                                        seed=spec.seed, cache_dir=cache_dir)
    optional = {name: value for name, value in (("weights", selection.weights), ("scores", selection.scores))
                if value is not None}
    write_arrays(saved, indices=selection.indices, seconds=np.float64(seconds), **optional)
    return selection, seconds


def run_one(spec: RunSpec, *, protocol: Protocol, data: PoolData, pool_indices: np.ndarray,
            cache_dir: Path) -> dict:
    """Selects, trains, attacks and writes the record. Everything on the way is saved under `spec.partial`
    (the selection, a checkpoint per epoch), so a killed run resumes where it was; the record is written
    last and the partial state is removed after it."""
    selector = create_selector(spec.method, spec.params)
    try:
        selection, selection_seconds = _saved_selection(spec, selector=selector, data=data, protocol=protocol,
                                                        cache_dir=cache_dir)
        trained = train_on_selection(data=data, selection=selection, protocol=protocol, seed=spec.seed,
                                     checkpoints=spec.partial)
    except UserError:
        remove_partial(spec)  # bad input fails the same way every time: nothing of it is worth keeping
        raise
    except BaseException:
        _remove_if_empty(spec.partial, spec.partial.parent)  # what was saved stays for the resume; empty folders do not
        raise
    model = trained["model"]
    clean = accuracy(model, data.test_images, data.test_labels)
    attacks = fgsm_robustness(model, data.test_images, data.test_labels, list(protocol.eps))

    path = spec.record
    artifact = path.with_name(path.stem + ".selection.npz")
    arrays = {"pool_indices": selection.indices, "train_indices": pool_indices[selection.indices]}
    if selection.weights is not None:
        arrays["weights"] = selection.weights
    if selection.scores is not None:
        arrays["scores"] = selection.scores
    record = {
        "schema": SCHEMA,
        "method": spec.method,
        "method_params": spec.params,
        "paper": selector.paper,
        "dataset": data.dataset,
        "model": protocol.model,
        "preset": protocol.preset,
        "protocol": {"dataset": data.dataset, **protocol.settings()},
        "fraction": spec.fraction,
        "seed": spec.seed,
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
    write_arrays(artifact, **arrays)  # the record is complete before anything is written; the record goes last
    write_json(record, path)
    remove_partial(spec)
    return record


def remove_partial(spec: RunSpec) -> None:
    shutil.rmtree(spec.partial, ignore_errors=True)
    _remove_if_empty(spec.partial.parent)  # the last run out leaves no empty .partial behind


def _remove_if_empty(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or not there
            pass
