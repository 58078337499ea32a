"""Image datasets as uint8 tensors (N x 3 x H x W), int64 labels and class names, and the seeded, stratified
splits every dataset shares. Which datasets exist is the registry in `benchmark/datasets/` (one file each);
`load_dataset("cifar10")`, `load_dataset("imagefolder:PATH")` go through it."""

from __future__ import annotations

import hashlib
import io
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.errors import UserError
from benchmark.seeding import numpy_rng

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp"}
SPLIT_SEED = 0  # splits are fixed across run seeds, so every seed selects from the same pool
MAX_IMAGE_PIXELS = 4096 * 4096  # larger files are refused before decoding (decompression bombs)


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

    @property
    def image_size(self) -> int:
        return int(self.train_images.shape[-1])

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


def test_sha256(images: torch.Tensor, labels: torch.Tensor) -> str:
    """The hash of a test set as a run used it: re-attacking a stored model checks it is the same set."""
    digest = hashlib.sha256()
    for tensor in (images, labels):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
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


def held_out_test(name: str, images: torch.Tensor, labels: torch.Tensor, class_names, *,
                  fraction: float = 0.2) -> ImageDataset:
    """A dataset with no official test split: a seeded, stratified `fraction` becomes the test set, and 10 %
    of the rest the validation set."""
    train, test = stratified_split(labels.numpy(), len(class_names), round(fraction * len(labels)),
                                   purpose="test-split")
    return ImageDataset(name, images[train], labels[train], images[test], labels[test], tuple(class_names),
                        validation_size=round(0.1 * len(train)))


def to_rgb_tensor(array: np.ndarray) -> torch.Tensor:
    """uint8 images N x H x W (grayscale, repeated to 3 channels) or N x H x W x 3 -> N x 3 x H x W."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.ndim == 3:
        tensor = tensor[:, None].expand(-1, 3, -1, -1)
    else:
        tensor = tensor.permute(0, 3, 1, 2)
    return tensor.contiguous()


EIGHT_BIT_MODES = {"1", "L", "LA", "P", "PA", "RGB", "RGBA", "RGBX", "CMYK", "YCbCr", "LAB", "HSV"}
SIXTEEN_BIT_MODES = {"I;16", "I;16L", "I;16B", "I;16N"}


def _rgb8(image, path) -> np.ndarray:
    """An image's pixels as 8-bit RGB (H x W x 3): 8-bit modes through PIL's conversion, 16-bit grayscale scaled
    by 255 / 65535 (PIL's own conversion clips it, turning almost every pixel white); other modes (32-bit
    integers, floats) are refused, since their range is not known."""
    if image.mode in EIGHT_BIT_MODES:
        return np.array(image.convert("RGB"))
    if image.mode in SIXTEEN_BIT_MODES:
        gray = np.round(np.array(image, dtype=np.float64) * (255 / 65535)).clip(0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    raise UserError(f"image {path} has pixel mode {image.mode!r}, which this benchmark does not read (8-bit "
                    f"images and 16-bit grayscale are read): convert it to 8-bit RGB")


def decode_images(paths: list, size: int) -> torch.Tensor:
    """Decodes image files (paths, or (name, bytes) pairs of files held in memory) with PIL (threads), as RGB,
    resized to size x size where they differ."""
    from PIL import Image, UnidentifiedImageError

    def decode(path) -> torch.Tensor:
        source = path
        if isinstance(path, tuple):
            path, source = path[0], io.BytesIO(path[1])
        try:
            with Image.open(source) as opened:
                width, height = opened.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise UserError(f"image {path} is {width} x {height} pixels, more than this benchmark decodes "
                                    f"({MAX_IMAGE_PIXELS:,} pixels): remove or shrink it")
                image = torch.from_numpy(_rgb8(opened, path)).permute(2, 0, 1)
        except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
            raise UserError(f"cannot decode image {path}: {error}") from None
        if image.shape[1:] != (size, size):
            image = F.interpolate(image[None].float(), size=(size, size), mode="bilinear", antialias=True,
                                  align_corners=False)[0].round().clamp(0, 255).to(torch.uint8)
        return image

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return torch.stack(list(pool.map(decode, paths)))
