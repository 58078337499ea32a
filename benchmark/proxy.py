"""The selection proxy: a model of the benchmark's architecture trained briefly on the pool, whose
outputs (embeddings, probabilities) selectors use. Trained lazily, only when a selector asks, once per
(data, model, seed, proxy settings), and cached on disk under a hash of all of those."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.models import build_model
from benchmark.records import write_torch
from benchmark.seeding import derive_seed
from benchmark.selection import ValidationOutputs
from benchmark.train import TrainConfig, predict, prepare, train_model

log = logging.getLogger("benchmark")
PROXY_FORMAT = 1  # bump when proxy training changes, so stale cache entries are never reused


@dataclass
class PoolData:
    """The run's data on its device: the selection pool, the validation split and the test set."""

    dataset: str  # the dataset's name as recorded (no local paths)
    data_key: str  # hash of the dataset contents and of the pool / validation split
    num_classes: int
    pool_images: torch.Tensor
    pool_labels: torch.Tensor
    val_images: torch.Tensor
    val_labels: torch.Tensor
    test_images: torch.Tensor
    test_labels: torch.Tensor
    mean: torch.Tensor
    std: torch.Tensor


class ProxyFeatures:
    """The `FeatureSource` the harness hands to every selection context."""

    def __init__(self, data: PoolData, *, model: str, seed: int, epochs: int, lr: float, batch_size: int,
                 cache_dir: Path):
        self.data = data
        self.model_name = model
        self.seed = seed
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.cache_dir = Path(cache_dir) / "proxy"
        self._outputs: dict | None = None
        self.trained = 0  # proxies trained (not loaded from the cache) by this object: for tests and logs

    def _cache_file(self, seed: int, epochs: int) -> Path:
        key = json.dumps({"data": self.data.data_key, "model": self.model_name, "seed": seed, "epochs": epochs,
                          "lr": self.lr, "batch_size": self.batch_size, "format": PROXY_FORMAT}, sort_keys=True)
        return self.cache_dir / f"{hashlib.sha256(key.encode()).hexdigest()[:24]}.pt"

    def _model(self, seed: int, epochs: int, desc: str) -> tuple[torch.nn.Module, Path, dict | None]:
        data = self.data
        model = build_model(self.model_name, data.num_classes, data.mean, data.std,
                            seed=derive_seed(seed, "proxy-init"))
        model = prepare(model, data.pool_images.device)
        path = self._cache_file(seed, epochs)
        stored = self._load(path)
        if stored is not None:
            model.load_state_dict(stored["state_dict"])
            log.info("%s: loaded from the cache (%s)", desc, path.name)
            return model.eval(), path, stored
        if epochs == 0:  # an untrained proxy (e.g. scores at initialisation)
            return model.eval(), path, None
        log.info("%s: training %s for %d epochs on %d pool images (seed %d)", desc, self.model_name, epochs,
                 len(data.pool_images), seed)
        config = TrainConfig(epochs=epochs, lr=self.lr, batch_size=self.batch_size)
        train_model(model, data.pool_images, data.pool_labels, config, seed=seed, purpose="proxy-train", desc=desc,
                    checkpoint=self._checkpoint(path))
        self.trained += 1
        return model, path, None

    def _load(self, path: Path) -> dict | None:
        if not path.exists():
            return None
        try:
            return torch.load(path, map_location=self.data.pool_images.device)
        except Exception as error:  # cache entries are written atomically; this is outside damage
            log.warning("cached proxy %s is unreadable (%s); training it again", path, error)
            return None

    def cached(self) -> bool:
        """Whether the shared proxy is in the cache already (the sweep's dry run counts those to train)."""
        return self._cache_file(self.seed, self.epochs).exists()

    @staticmethod
    def _checkpoint(path: Path) -> Path:
        """Where a proxy's training resumes from after a kill; gone once the proxy is in the cache."""
        return path.with_name(path.stem + ".checkpoint.pt")

    def _store(self, value: dict, path: Path) -> None:
        write_torch(value, path)
        self._checkpoint(path).unlink(missing_ok=True)

    def _ensure_outputs(self) -> dict:
        if self._outputs is None:
            model, path, stored = self._model(self.seed, self.epochs, "proxy")
            if stored is None or "outputs" not in stored:
                logits, embeddings = predict(model, self.data.pool_images, embed=True)
                val_logits, val_embeddings = predict(model, self.data.val_images, embed=True)
                outputs = {"embeddings": embeddings, "probabilities": logits.softmax(1),
                           "val_embeddings": val_embeddings, "val_probabilities": val_logits.softmax(1)}
                self._store({"state_dict": model.state_dict(), "outputs": outputs}, path)
            else:
                outputs = stored["outputs"]
            self._outputs = outputs
        return self._outputs

    def embeddings(self) -> torch.Tensor:
        return self._ensure_outputs()["embeddings"]

    def probabilities(self) -> torch.Tensor:
        return self._ensure_outputs()["probabilities"]

    def validation(self) -> ValidationOutputs:
        outputs = self._ensure_outputs()
        return ValidationOutputs(self.data.val_labels, outputs["val_embeddings"], outputs["val_probabilities"])

    def pool_images(self) -> torch.Tensor:
        return self.data.pool_images

    def proxy_models(self, count: int, epochs: int) -> list[torch.nn.Module]:
        models = []
        for i in range(count):
            seed = derive_seed(self.seed, f"proxy-{i}")
            model, path, stored = self._model(seed, epochs, f"proxy {i + 1}/{count}")
            if stored is None:
                self._store({"state_dict": model.state_dict()}, path)
            models.append(model)
        return models
