"""One run: dataset -> proxy -> selector -> trainer -> attacks -> record. `run_one` does a run from its
`RunSpec` and resumes one that was killed; `benchmark.sweep` runs grids of them."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data import ImageDataset, stratified_split, test_sha256
from benchmark.datasets import dataset_name, load_dataset
from benchmark.errors import UserError
from benchmark.evaluation import evaluate, run_flags
from benchmark.memory import PeakMemory
from benchmark.overfitting import monitor_indices, overfitting_flags
from benchmark.protocol import Protocol
from benchmark.proxy import PoolData, build_proxy
from benchmark.record import (
    SCHEMA,
    Gallery,
    LrTrial,
    ModelWeights,
    Record,
    Training,
    TrainingSpec,
    budget_for,
)
from benchmark.record import Selection as SelectionPart
from benchmark.records import LOCK, artifact_path, environment, indices_sha256, now, record_path, write_record
from benchmark.seeding import derive_seed
from benchmark.selection import Selection, SelectionContext, Selector, create_selector, validate_selection
from benchmark.storage import file_lock, read_arrays_sealed, write_arrays_sealed, write_npz, write_weights
from benchmark.train import Guard, TrainingClock, accuracy, train_model

log = logging.getLogger("benchmark")


def resolve_device(name: str = "auto") -> torch.device:
    """auto (CUDA when available), cpu or cuda[:N]; anything else is refused before any work."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        device = None
    if device is None or device.type not in ("cpu", "cuda"):
        raise UserError(f"unsupported device {name!r}; use auto, cpu or cuda[:N]")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"device {name!r} asked for, but CUDA is not available here: use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"device {name!r}: this machine has {torch.cuda.device_count()} GPU(s)")
    return device


def load_protocol_data(protocol: Protocol, *, device: torch.device, data_root: Path | None,
                       cache_dir: Path, download: bool = True) -> tuple[PoolData, np.ndarray]:
    dataset = load_dataset(protocol.dataset, data_root=data_root, cache_dir=cache_dir, download=download)
    data, pool = prepare_data(dataset.limited(protocol.train_per_class, protocol.test_per_class), device)
    if protocol.full_test_clean:
        data = dataclasses.replace(data, full_test_images=dataset.test_images.to(device),
                                   full_test_labels=dataset.test_labels.to(device))
    return data, pool


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
        class_names=dataset.class_names,
        pool_images=dataset.train_images[pool].to(device), pool_labels=dataset.train_labels[pool].to(device),
        val_images=dataset.train_images[validation].to(device),
        val_labels=dataset.train_labels[validation].to(device),
        test_images=dataset.test_images.to(device), test_labels=dataset.test_labels.to(device),
        mean=train_float.mean(dim=(0, 2, 3)), std=train_float.std(dim=(0, 2, 3)).clamp_min(1e-3))
    return data, pool


def select_coreset(*, selector: Selector, data: PoolData, protocol: Protocol, fraction: float, seed: int,
                   cache_dir: Path, balance: bool = True) -> tuple[Selection, float, float]:
    """Runs a selector on the pool and validates what it returns. Returns the selection, the selector's
    seconds (proxy training excluded: it is shared and cached) and the seconds spent training proxies."""
    features = build_proxy(protocol, data, seed=seed, cache_dir=cache_dir)
    budget, pool_size = budget_for(len(data.pool_labels), fraction), len(data.pool_labels)
    context = SelectionContext(labels=data.pool_labels.cpu().numpy(), num_classes=data.num_classes,
                               budget=budget, seed=seed, features=features, balance=balance,
                               device=data.pool_images.device)
    if selector.uses_proxy:
        context.embeddings()  # train or load the shared proxy outside the selector's timing
    proxy_seconds = features.training_seconds
    started = time.perf_counter()
    selection = selector.select(context)
    seconds = time.perf_counter() - started - (features.training_seconds - proxy_seconds)
    selection = validate_selection(selection, budget=budget, pool_size=pool_size, method=selector.name)
    return selection, max(seconds, 0.0), features.training_seconds


@dataclass(frozen=True)
class Trained:
    """The final training's model and the record's training part."""

    model: torch.nn.Module
    training: Training


def train_on_selection(*, data: PoolData, selection: Selection, protocol: Protocol, seed: int,
                       checkpoints: Path | None = None) -> Trained:
    """Final training on the coreset, once per learning rate; the lr with the best validation score is kept and
    its final-epoch model is evaluated on the test set (never used to choose anything). The score is validation
    accuracy, or under adversarial training the robust accuracy (PGD-10 at the training eps) on the guard's
    held-out validation images. With `checkpoints` (a directory), each training checkpoints there every epoch
    and resumes from it."""
    indices = torch.as_tensor(selection.indices, device=data.pool_images.device)
    images, labels = data.pool_images[indices], data.pool_labels[indices]
    weights = None if selection.weights is None else torch.as_tensor(selection.weights, dtype=torch.float32,
                                                                       device=images.device)
    method = protocol.training_method()
    watched = monitor_indices(len(data.val_labels), protocol.monitor_images).to(images.device)
    started = time.perf_counter()
    clock = TrainingClock()  # the time trained before a resume, which this process did not see
    best = None
    grid = []
    for i, lr in enumerate(protocol.lrs):
        guard = Guard(data.val_images[watched], data.val_labels[watched], method.eps) if method.adversarial else None
        model = data.build_model(protocol.model, derive_seed(seed, "init"))
        model = train_model(model.to(images.device), images, labels, protocol.train_config(lr, len(images)), seed=seed,
                            purpose="training", desc=f"train lr={lr:g}", sample_weights=weights,
                            checkpoint=checkpoints / f"lr{i}.checkpoint" if checkpoints else None, clock=clock,
                            guard=guard)
        trial = LrTrial(lr=lr, validation_accuracy=accuracy(model, data.val_images, data.val_labels))
        if guard is not None:  # the model as evaluated (after precise BN, if any), not the last epoch's check
            trial = dataclasses.replace(trial, validation_robust_accuracy=guard.measure(model, seed,
                                                                                        "training/selection")[2])
        grid.append(trial)
        score = trial.validation_accuracy if guard is None else trial.validation_robust_accuracy
        if best is None or score > best[1]:
            best = (model, score, trial, guard)
    model, _, trial, guard = best
    epochs = protocol.epochs_for(len(images))
    steps = epochs * max(1, math.ceil(len(images) / protocol.batch_size))
    training = Training(epochs=epochs, lr=trial.lr, lr_grid=tuple(grid),
                        optimizer=(f"SGD momentum {protocol.momentum}, nesterov {protocol.nesterov}, "
                                   f"weight decay {protocol.weight_decay}, cosine schedule"),
                        batch_size=protocol.batch_size, steps=steps, seconds=time.perf_counter() - started
                        + clock.carried, validation_accuracy=trial.validation_accuracy)
    if guard is not None:
        training = dataclasses.replace(
            training, method=TrainingSpec(method.name, method.params()), step_size=method.step_size(),
            monitor=tuple(guard.entries),
            selected_by=f"validation robust accuracy: PGD-10 at the training eps on {len(watched)} held-out "
                        f"validation images")
    return Trained(model, training)


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
                     cache_dir: Path) -> tuple[Selection, float, float]:
    """The run's selection: made once and kept (sealed) in its partial state, so a resumed run trains on the same
    one; a damaged saved selection is made again."""
    saved = spec.partial / "selection.sealed"
    pool_size = len(data.pool_labels)
    stored = read_arrays_sealed(saved) if saved.exists() else None
    if stored is not None:
        try:
            optional = {name: stored[name] for name in ("weights", "scores") if name in stored}
            selection = validate_selection(Selection(stored["indices"], **optional),
                                           budget=budget_for(pool_size, spec.fraction), pool_size=pool_size,
                                           method=spec.method)
            return selection, float(stored["seconds"]), 0.0
        except (KeyError, UserError) as error:
            log.warning("saved selection %s is not usable (%s); selecting again", saved, error)
    selection, seconds, proxy_seconds = select_coreset(selector=selector, data=data, protocol=protocol,
                                                       fraction=spec.fraction, seed=spec.seed, cache_dir=cache_dir,
                                                       balance=protocol.balance)
    optional = {name: value for name, value in (("weights", selection.weights), ("scores", selection.scores))
                if value is not None}
    write_arrays_sealed(saved, indices=selection.indices, seconds=np.float64(seconds), **optional)
    return selection, seconds, proxy_seconds


def run_one(spec: RunSpec, *, protocol: Protocol, data: PoolData, pool_indices: np.ndarray,
            cache_dir: Path, eval_batch_size: int | None = None, runs_per_device: int | None = None) -> Record:
    """Selects, trains, attacks and writes the record. Everything on the way is saved under `spec.partial`
    (the selection, a checkpoint per epoch, each finished attack), so a killed run resumes where it was; the
    model's weights are written as soon as it is trained (an attack that fails is recorded as failed and the
    others still run); the record is written last and the partial state is removed after it."""
    selector = create_selector(spec.method, spec.params)
    device = data.pool_images.device
    memory = PeakMemory(device)
    path = spec.record
    try:
        with memory.phase("selection"):
            selection, selection_seconds, proxy_seconds = _saved_selection(
                spec, selector=selector, data=data, protocol=protocol, cache_dir=cache_dir)
        with memory.phase("training"):
            trained = train_on_selection(data=data, selection=selection, protocol=protocol, seed=spec.seed,
                                         checkpoints=spec.partial)
    except UserError:
        remove_partial(spec)  # bad input fails the same way every time: nothing of it is worth keeping
        raise
    except BaseException:
        _remove_if_empty(spec.partial, spec.partial.parent)  # what was saved stays for the resume; empty folders do not
        raise
    model = trained.model
    weights_sha256 = write_weights(artifact_path(path, "model"), model.state_dict())
    with memory.phase("evaluation"):  # on any failure here the checkpoints stay: a resumed run skips training
        measured = evaluate(model, data.test_images, data.test_labels, protocol.suite(), seed=spec.seed,
                            batch_size=eval_batch_size, cross_check_images=protocol.cross_check_images,
                            headline_eps=protocol.headline_eps, cascade=protocol.cascade,
                            cross_check_eps=protocol.cross_check_eps or None, full_test=full_test(data),
                            test_sha256=test_sha256(data.test_images, data.test_labels), saved=spec.partial)

    arrays = {"pool_indices": selection.indices, "train_indices": pool_indices[selection.indices]}
    if selection.weights is not None:
        arrays["weights"] = selection.weights
    if selection.scores is not None:
        arrays["scores"] = selection.scores
    training = trained.training
    record = Record(
        schema=SCHEMA, method=spec.method, method_params=spec.params, paper=selector.paper, paper_url=selector.url,
        dataset=data.dataset, model=protocol.model, preset=protocol.preset,
        protocol=protocol.settings(data.dataset), fraction=spec.fraction, seed=spec.seed,
        budget=int(len(selection.indices)), pool_size=int(len(data.pool_labels)),
        selection=SelectionPart(indices_sha256=indices_sha256(selection.indices), seconds=selection_seconds,
                                proxy_training_seconds=proxy_seconds, weighted=selection.weights is not None,
                                artifact=artifact_path(path, "selection").name),
        training=training,
        model_weights=ModelWeights(artifact=artifact_path(path, "model").name, sha256=weights_sha256,
                                   format="safetensors", image_size=data.image_size, num_classes=data.num_classes),
        clean_accuracy=measured.clean_accuracy, evaluation=measured.evaluation, attacks=measured.attacks,
        worst_case=measured.worst_case, checks=measured.checks,
        flags=run_flags(clean=measured.clean_accuracy, num_classes=data.num_classes,
                        test_size=len(data.test_labels), top_share=measured.top_prediction_share,
                        steps=training.steps, checks=measured.checks, failures=measured.failures)
        + overfitting_flags(training.monitor or ()),
        environment=environment(device, peak_memory_mb=memory.phases, runs_per_device=runs_per_device),
        created=now(), attack_failures=measured.failures)
    # artifacts first, the record last: a record on disk always has its files beside it
    write_npz(artifact_path(path, "selection"), **arrays)
    if measured.gallery is not None:
        write_npz(artifact_path(path, "gallery"), class_names=np.asarray(data.class_names), **measured.gallery)
        record = dataclasses.replace(record, gallery=Gallery(artifact=artifact_path(path, "gallery").name,
                                                             attack=measured.gallery["attack"],
                                                             eps=tuple(float(e) for e in measured.gallery["eps"])))
    with file_lock(path.parent / LOCK):  # an `attack` on this folder finishes its update first
        write_record(record, path)
    remove_partial(spec)
    for flag in record.flags:
        log.warning("WARNING: %s is flagged %s: %s", spec.label, flag.code, flag.detail)
    return record


def full_test(data: PoolData) -> tuple[torch.Tensor, torch.Tensor, str] | None:
    if data.full_test_images is None:
        return None
    return data.full_test_images, data.full_test_labels, test_sha256(data.full_test_images, data.full_test_labels)


def remove_partial(spec: RunSpec) -> None:
    shutil.rmtree(spec.partial, ignore_errors=True)
    _remove_if_empty(spec.partial.parent)  # the last run out leaves no empty .partial behind


def _remove_if_empty(*folders: Path) -> None:
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty, or not there
            pass
