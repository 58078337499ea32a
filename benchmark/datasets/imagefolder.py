"""A local ImageFolder tree (`--dataset imagefolder:PATH`): `PATH/train/<class>/*` and `PATH/test/<class>/*`,
or class folders directly under PATH (then a seeded, stratified 20 % becomes the test set). Images are decoded
once, resized to 32 x 32 where they differ, and cached (sealed: a damaged cache is decoded again). Records
name it by its folder name, never by its path."""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from benchmark.data import IMAGE_SUFFIXES, ImageDataset, decode_images, held_out_test
from benchmark.datasets import Dataset, register
from benchmark.errors import UserError
from benchmark.storage import read_tensors, slug, write_tensors


def list_images(folder: Path) -> tuple[list[str], list[tuple[Path, int]]]:
    """The class folders and their image files; an image name that is not a regular file (a FIFO would block
    the decoder forever, a device never ends) is refused."""
    classes = sorted(entry.name for entry in folder.iterdir() if entry.is_dir())
    files = [(path, label) for label, name in enumerate(classes)
             for path in sorted((folder / name).rglob("*")) if path.suffix.lower() in IMAGE_SUFFIXES]
    for path, _ in files:
        if not path.is_file():
            raise UserError(f"{path} is not a regular file (a FIFO, a device or a folder): remove it from the "
                            f"image folder")
    return classes, files


def cached_decode(listings: list[list[tuple[Path, int]]], root: Path, cache: Path, size: int):
    """[(images, labels)] per listing, from the cache when its files (names, sizes, times) are unchanged."""
    import torch

    stamp = hashlib.sha256(json.dumps([size, [[str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns, y]
                                              for files in listings for p, y in files]]).encode())
    cache_file = cache / "imagefolder" / f"{stamp.hexdigest()[:24]}.safetensors"
    stored = read_tensors(cache_file) if cache_file.exists() else None
    if stored is not None and all(f"images{i}" in stored for i in range(len(listings))):
        return [(stored[f"images{i}"], stored[f"labels{i}"]) for i in range(len(listings))]
    tensors = [(decode_images([p for p, _ in files], size), torch.tensor([y for _, y in files]))
               for files in listings]
    write_tensors(cache_file, {name: t for i, (x, y) in enumerate(tensors)
                               for name, t in ((f"images{i}", x), (f"labels{i}", y))})
    return tensors


@register
@dataclass(frozen=True)
class ImageFolder(Dataset):
    name = "imagefolder"
    paper = "A local folder of images, one sub-folder per class"
    source = "local files (PIL)"
    classes = 0
    image_size = 32
    split = "PATH/train and PATH/test when both exist, else a seeded stratified 80 / 20; 10 % of train validation"

    path: str = ""

    def record_name(self) -> str:
        return f"imagefolder:{slug(Path(self.path).expanduser().name) or 'data'}"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        root = Path(self.path).expanduser()
        if not self.path or not root.is_dir() or not os.access(root, os.R_OK | os.X_OK):
            raise UserError(f"data directory {root} does not exist or is not readable")
        split = (root / "train").is_dir() and (root / "test").is_dir()
        folders = [root / "train", root / "test"] if split else [root]
        listings = [list_images(folder) for folder in folders]
        classes = listings[0][0]
        if len(classes) < 2:
            raise UserError(f"{folders[0]} holds {len(classes)} class folder(s); an ImageFolder needs at least "
                            f"two (one sub-folder of images per class)")
        if split and listings[1][0] != classes:
            raise UserError(f"{root}/train and {root}/test have different class folders")
        if any(not files for _, files in listings):
            raise UserError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found under {root}")
        tensors = cached_decode([files for _, files in listings], root, cache_dir, self.image_size)
        if not split:
            return held_out_test(self.record_name(), *tensors[0], classes)
        (train_x, train_y), (test_x, test_y) = tensors
        return ImageDataset(self.record_name(), train_x, train_y, test_x, test_y, tuple(classes),
                            validation_size=round(0.1 * len(train_y)))
