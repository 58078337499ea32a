"""The selection proxy: a model of the benchmark's architecture trained briefly on the pool, whose outputs
(embeddings, probabilities, training dynamics) selectors use. Trained lazily, only when a selector asks, once
per (data, model, seed, proxy settings), and cached on disk (sealed: a damaged entry is trained again)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.models import build_model
from benchmark.seeding import derive_seed
from benchmark.selection import TrainingDynamics, ValidationOutputs
from benchmark.storage import file_lock, read_tensors, write_tensors
from benchmark.train import DynamicsRecorder, TrainConfig, TrainingClock, predict, prepare, train_model

log = logging.getLogger("benchmark")
PROXY_FORMAT = 2  # bump when proxy training or what is cached changes, so stale cache entries are never reused


@dataclass
class PoolData:
    """The run's data on its device: the selection pool, the validation split and the test set."""

    dataset: str  # the dataset's name as recorded (no local paths)
    data_key: str  # hash of the dataset contents and of the pool / validation split
    num_classes: int
    class_names: tuple[str, ...]
    pool_images: torch.Tensor
    pool_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor
    # the whole test split, of which the test set is a subset, for clean accuracy only (`full_test_clean`)
    full_test_images: torch.Tensor | None = None
    full_test_labels: torch.Tensor | None = None

    @property
    def image_size(self) -> int:
        return int(self.pool_images.shape[-1])

    def build_model(self, name: str, seed: int) -> torch.nn.Module:
        return build_model(name, self.num_classes, self.mean, self.std, seed=seed, image_size=self.image_size)


def build_proxy(protocol, data: PoolData, *, seed: int, cache_dir: Path) -> ProxyFeatures:
    """The shared proxy of `protocol` for one seed: the one place its settings are read."""
    return ProxyFeatures(data, model=protocol.model, seed=seed, config=protocol.proxy_config(), cache_dir=cache_dir)


class ProxyFeatures:
    """The `FeatureSource` the harness hands to every selection context."""

    def __init__(self, data: PoolData, *, model: str, seed: int, config: TrainConfig, cache_dir: Path):
        self.data = data
        self.model_name = model
        self.seed = seed
        self.config = config
        self.cache_dir = Path(cache_dir) / "proxy"
        self._stored: dict | None = None
        self.trained = 0  # proxies trained (not loaded from the cache) by this object: for tests and logs
        self.training_seconds = 0.0  # spent training them (the sweep's time estimate leaves it out)

    def _cache_file(self, seed: int, epochs: int) -> Path:
        key = json.dumps({"data": self.data.data_key, "model": self.model_name, "seed": seed,
                          "config": dataclasses.replace(self.config, epochs=epochs).identity(),
                          "format": PROXY_FORMAT}, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.safetensors"

    @staticmethod
    def _checkpoint(path: Path) -> Path:
        """Where a proxy's training resumes from after a kill; gone once the proxy is in the cache."""
        return path.with_name(path.stem + ".checkpoint")

    def _fresh(self, seed: int) -> torch.nn.Module:
        return prepare(self.data.build_model(self.model_name, derive_seed(seed, "proxy-init")),
                       self.data.pool_images.device)

    def _load(self, seed: int, epochs: int) -> dict | None:
        path = self._cache_file(seed, epochs)
        return read_tensors(path) if path.exists() else None

    def _with_weights(self, seed: int, stored: dict) -> torch.nn.Module:
        model = self._fresh(seed)
        model.load_state_dict({name[len("model."):]: tensor for name, tensor in stored.items()
                               if name.startswith("model.")})
        return model.eval()

    def _train(self, seed: int, epochs: int, desc: str, dynamics: DynamicsRecorder | None) -> torch.nn.Module:
        model = self._fresh(seed)
        path = self._cache_file(seed, epochs)
        log.info("%s: training %s for %d epochs on %d pool images (seed %d)", desc, self.model_name, epochs,
                 len(self.data.pool_images), seed)
        started = time.perf_counter()
        clock = TrainingClock()
        train_model(model, self.data.pool_images, self.data.pool_labels,
                    dataclasses.replace(self.config, epochs=epochs), seed=seed, purpose="proxy-train", desc=desc,
                    checkpoint=self._checkpoint(path), dynamics=dynamics, clock=clock)
        self.training_seconds += time.perf_counter() - started + clock.carried
        self.trained += 1
        return model

    def _store(self, tensors: dict, seed: int, epochs: int) -> None:
        path = self._cache_file(seed, epochs)
        write_tensors(path, tensors)
        self._checkpoint(path).unlink(missing_ok=True)

    def _shared(self) -> dict:
        """The shared proxy's weights, outputs and training dynamics, trained or from the cache."""
        if self._stored is None:
            with file_lock(self._lock_file(self.seed, self.config.epochs)):  # runs beside this one wait, then load
                self._stored = self._shared_locked()
        return self._stored

    def _lock_file(self, seed: int, epochs: int) -> Path:
        path = self._cache_file(seed, epochs)
        return path.with_name(path.stem + ".lock")

    def _shared_locked(self) -> dict:
        """The shared proxy, trained or loaded; called with its lock held."""
        stored = self._load(self.seed, self.config.epochs)
        if stored is None or "embeddings" not in stored:
            dynamics = DynamicsRecorder(self.config.epochs, len(self.data.pool_images),
                                        self.data.pool_images.device)
            model = self._train(self.seed, self.config.epochs, "proxy", dynamics)
            logits, embeddings = predict(model, self.data.pool_images, embed=True)
            val_logits, val_embeddings = predict(model, self.data.val_images, embed=True)
            stored = {**{f"model.{k}": v for k, v in model.state_dict().items()},
                      "embeddings": embeddings, "probabilities": logits.softmax(1),
                      "val_embeddings": val_embeddings, "val_probabilities": val_logits.softmax(1),
                      "correct": dynamics.correct, "margin": dynamics.margin, "loss": dynamics.loss}
            self._store(stored, self.seed, self.config.epochs)
        else:
            log.info("proxy: loaded from the cache (%s)", self._cache_file(self.seed, self.config.epochs).name)
        device = self.data.pool_images.device
        return {name: tensor.to(device) for name, tensor in stored.items()}

    def cached(self) -> bool:
        """Whether the shared proxy is in the cache already (the sweep's dry run counts those to train)."""
        return self._cache_file(self.seed, self.config.epochs).exists()

    def embeddings(self) -> torch.Tensor:
        return self._shared()["embeddings"].clone()

    def probabilities(self) -> torch.Tensor:
        return self._shared()["probabilities"].clone()

    def validation(self) -> ValidationOutputs:
        stored = self._shared()
        return ValidationOutputs(self.data.val_labels.clone(), stored["val_embeddings"].clone(),
                                 stored["val_probabilities"].clone())

    def training_dynamics(self) -> TrainingDynamics:
        stored = self._shared()
        return TrainingDynamics(stored["correct"].clone(), stored["margin"].clone(), stored["loss"].clone())

    def proxy_model(self) -> torch.nn.Module:
        return self._with_weights(self.seed, self._shared())

    def pool_images(self) -> torch.Tensor:
        return self.data.pool_images

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        models = []
        for i in range(count):
            seed = derive_seed(self.seed, f"proxy-{i}")
            with file_lock(self._lock_file(seed, epochs)):
                models.append(self._own_proxy(i, count, seed, epochs))
        return models

    def _own_proxy(self, i: int, count: int, seed: int, epochs: int) -> torch.nn.Module:
        """One of a method's own proxies, trained or loaded; called with its lock held."""
        stored = self._load(seed, epochs) if epochs else None
        if stored is not None:
            return self._with_weights(seed, stored)
        if epochs == 0:  # an untrained proxy (e.g. scores at initialisation)
            return self._fresh(seed).eval()
        model = self._train(seed, epochs, f"proxy {i + 1}/{count}", None)
        self._store({f"model.{k}": v for k, v in model.state_dict().items()}, seed, epochs)
        return model.eval()
