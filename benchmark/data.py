"""Datasets by name, as uint8 image tensors (N x 3 x H x W), int64 labels and class names.

- ``cifar10``: torchvision's CIFAR-10 (downloaded into the data root where the network allows).
- ``digits``: scikit-learn's 1,797 handwritten digits (ships with it), upscaled to 32x32 RGB.
- ``imagefolder:PATH``: an ImageFolder tree, either ``PATH/train/<class>/*`` and ``PATH/test/<class>/*``
  or ``PATH/<class>/*`` (then a seeded, stratified 20 % becomes the test set). Decoded once and cached
  as a tensor file.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import UserError
from benchmark.records import write_torch
from benchmark.seeding import numpy_rng

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLIT_SEED = 0  # splits are fixed across run seeds, so every seed selects from the same pool


@dataclass(frozen=True)
class ImageDataset:
    name: str
    train_images: torch.Tensor  # uint8, N x 3 x H x W
    train_labels: torch.Tensor  # int64, N
    test_images: torch.Tensor
    test_labels: torch.Tensor
    class_names: tuple[str, ...]
    validation_size: int  # images held out of the training set for validation

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def limited(self, train_per_class: int, test_per_class: int) -> ImageDataset:
        """A seeded class-balanced subset (0 keeps a split whole); validation is then 10 % of the subset."""
        if not train_per_class and not test_per_class:
            return self
        parts = []
        for images, labels, limit, purpose in ((self.train_images, self.train_labels, train_per_class, "train"),
                                               (self.test_images, self.test_labels, test_per_class, "test")):
            if limit:
                rng = numpy_rng(SPLIT_SEED, f"{purpose}-subset")
                keep = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels.numpy() == c))[:limit]
                                               for c in range(self.num_classes)]))
                images, labels = images[keep], labels[keep]
            parts += [images, labels]
        validation = round(0.1 * len(parts[1])) if train_per_class else self.validation_size
        return ImageDataset(self.name, *parts, self.class_names, validation_size=validation)

    def fingerprint(self) -> str:
        """A content hash: caches keyed on it can never serve another dataset's proxy."""
        digest = hashlib.sha256(self.name.encode())
        for tensor in (self.train_images, self.train_labels, self.test_images, self.test_labels):
            digest.update(tensor.contiguous().numpy().tobytes())
        return digest.hexdigest()


def default_cache_dir() -> Path:
    return Path(os.environ.get("CORESET_BENCH_CACHE", Path.home() / ".cache" / "coreset-bench"))


def stratified_counts(labels: np.ndarray, num_classes: int, total: int) -> np.ndarray:
    """Per-class counts proportional to class sizes, summing exactly to `total`: floors first, then
    the leftover units to the largest remainders (ties to the lower class index)."""
    sizes = np.bincount(labels, minlength=num_classes).astype(np.int64)
    quotas = total * sizes / sizes.sum()
    counts = np.floor(quotas).astype(np.int64)
    leftover = int(total - counts.sum())
    order = np.lexsort((np.arange(num_classes), -(quotas - counts)))
    counts[order[:leftover]] += 1
    return counts


def stratified_split(labels: np.ndarray, num_classes: int, held_out: int, seed: int = SPLIT_SEED,
                     purpose: str = "validation-split") -> tuple[np.ndarray, np.ndarray]:
    """(kept, held_out) sorted index arrays; the held-out part is class-balanced and seeded."""
    rng = numpy_rng(seed, purpose)
    counts = stratified_counts(labels, num_classes, held_out)
    chosen = [rng.permutation(np.flatnonzero(labels == c))[:counts[c]] for c in range(num_classes)]
    mask = np.zeros(len(labels), dtype=bool)
    mask[np.concatenate(chosen)] = True
    return np.flatnonzero(~mask), np.flatnonzero(mask)


def dataset_name(spec: str) -> str:
    """The name records carry for a dataset spec, known before loading it (an ImageFolder by its folder name:
    records never hold local paths)."""
    if spec in ("cifar10", "digits"):
        return spec
    if spec.startswith("imagefolder:"):
        return f"imagefolder:{Path(spec.split(':', 1)[1]).expanduser().name}"
    raise UserError(f"unknown dataset {spec!r}; use cifar10, digits or imagefolder:PATH")


def load_dataset(spec: str, *, data_root: str | os.PathLike | None = None,
                 cache_dir: str | os.PathLike | None = None) -> ImageDataset:
    cache = Path(cache_dir) if cache_dir else default_cache_dir()
    if spec == "cifar10":
        return _cifar10(Path(data_root) if data_root else cache / "data")
    if spec == "digits":
        return _digits()
    if spec.startswith("imagefolder:"):
        return _imagefolder(Path(spec.split(":", 1)[1]).expanduser(), cache)
    raise UserError(f"unknown dataset {spec!r}; use cifar10, digits or imagefolder:PATH")


def _cifar10(root: Path) -> ImageDataset:
    from torchvision.datasets import CIFAR10

    existed = root.exists()
    try:
        parts = [CIFAR10(str(root), train=train, download=True) for train in (True, False)]
    except Exception as error:  # no network, a proxy error, a corrupt archive: all end the same way
        if not existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # leave nothing behind from a failed download
        reason = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise UserError(f"CIFAR-10 is not under {root} and could not be downloaded ({reason}); pass "
                        f"--data-root DIR with cifar-10-batches-py in it, --dataset imagefolder:PATH for a "
                        f"local copy, or --preset smoke to run on the embedded digits") from None
    tensors = [(torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(p.targets))
               for p in parts]
    return ImageDataset("cifar10", tensors[0][0], tensors[0][1], tensors[1][0], tensors[1][1],
                        tuple(parts[0].classes), validation_size=5000)


def _digits() -> ImageDataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images).float()[:, None] / 16.0  # values 0..16
    pixels = F.interpolate(pixels, size=(32, 32), mode="bilinear", align_corners=False)
    images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
    labels = torch.from_numpy(digits.target).long()
    train, test = stratified_split(labels.numpy(), 10, round(0.2 * len(labels)), purpose="test-split")
    return ImageDataset("digits", images[train], labels[train], images[test], labels[test],
                        tuple(str(d) for d in range(10)), validation_size=round(0.1 * len(train)))


def _list_images(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((folder / name).rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
    return classes, files


def _imagefolder(root: Path, cache: Path, size: int = 32) -> ImageDataset:
    if not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"data directory {root} does not exist or is not readable")
    split = (root / "train").is_dir() and (root / "test").is_dir()
    folders = [root / "train", root / "test"] if split else [root]
    listings = [_list_images(folder) for folder in folders]
    classes = listings[0][0]
    if len(classes) < 2:
        raise UserError(f"{folders[0]} holds {len(classes)} class folder(s); an ImageFolder needs at least "
                        f"two (one sub-folder of images per class)")
    if split and listings[1][0] != classes:
        raise UserError(f"{root}/train and {root}/test have different class folders")
    if any(not files for _, files in listings):
        raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")

    stamp = hashlib.sha256(json.dumps([size, [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns, y]
                                               for _, files in listings for p, y in files]]).encode())
    cache_file = cache / "imagefolder" / f"{stamp.hexdigest()[:24]}.pt"
    if cache_file.exists():
        tensors = torch.load(cache_file)
    else:
        tensors = [(_decode_all([p for p, _ in files], size), torch.tensor([y for _, y in files]))
                   for _, files in listings]
        write_torch(tensors, cache_file)
    if split:
        (train_x, train_y), (test_x, test_y) = tensors
    else:
        (images, labels), = tensors
        train, test = stratified_split(labels.numpy(), len(classes), round(0.2 * len(labels)), purpose="test-split")
        train_x, train_y, test_x, test_y = images[train], labels[train], images[test], labels[test]
    return ImageDataset(dataset_name(f"imagefolder:{root}"), train_x, train_y, test_x, test_y, tuple(classes),
                        validation_size=round(0.1 * len(train_y)))


def _decode_all(paths: list[Path], size: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    def decode(path: Path) -> torch.Tensor:
        try:
            with Image.open(path) as opened:
                image = torch.from_numpy(np.array(opened.convert("RGB"))).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError) as error:
            raise UserError(f"cannot decode image {path}: {error}") from None
        if image.shape[1:] != (size, size):
            image = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        return image

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return torch.stack(list(pool.map(decode, paths)))
