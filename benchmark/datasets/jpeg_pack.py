"""An ImageFolder packed into one file (`--dataset jpegpack:PATH.npz`): the JPEG files of a `train/` and
`test/` ImageFolder tree, byte for byte, in one numpy archive small enough to travel (CIFAR-10's 60,000 JPEGs at
quality 75 come to 18 MB). Arrays (read without pickles): `header` (bytes every file starts with, kept once),
`payload` (the files' other bytes, concatenated), `offsets` (N + 1), `labels`, `split` (0 train, 1 test),
`classes` (names, alphabetical). File i is header + payload[offsets[i]:offsets[i + 1]]; the files are in
ImageFolder order (train then test, classes alphabetical, file names sorted within a class).

The images are those of the unpacked folder, decoded the same way, so records name the dataset as the folder's:
`imagefolder:<the file's stem>` (`imagefolder:cifar10-jpeg`), and runs on either are one board."""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from benchmark.data import ImageDataset, decode_images
from benchmark.datasets import Dataset, register
from benchmark.errors import UserError
from benchmark.storage import read_npz, read_regular, read_tensors, slug, write_tensors

MAX_FILES = 10_000_000
MAX_BYTES = 1 << 31  # a pack is read whole


@register
@dataclass(frozen=True)
class JpegPack(Dataset):
    name = "jpegpack"
    paper = "An ImageFolder's image files packed into one .npz (e.g. ../shared/data/cifar10-jpeg.npz)"
    source = "a local .npz (PIL)"
    classes = 0
    image_size = 32
    split = "the packed train/ and test/ folders; 10 % of train validation"

    path: str = ""

    def record_name(self) -> str:
        return f"imagefolder:{slug(Path(self.path).expanduser().stem) or 'data'}"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        path = Path(self.path).expanduser()
        if not self.path or not path.is_file() or path.is_symlink() or not os.access(path, os.R_OK):
            raise UserError(f"{path} is not a readable regular file: pass --dataset jpegpack:PATH/cifar10-jpeg.npz")
        if path.stat().st_size > MAX_BYTES:
            raise UserError(f"{path} is {path.stat().st_size:,} bytes, more than a pack this benchmark reads")
        try:
            data = read_regular(path, MAX_BYTES)
        except OSError as error:
            raise UserError(f"{error}: pass --dataset jpegpack:PATH/cifar10-jpeg.npz") from None
        digest = hashlib.sha256(data).hexdigest()[:24]
        cache_file = Path(cache_dir) / "jpegpack" / f"{digest}-{self.image_size}.safetensors"
        stored = read_tensors(cache_file) if cache_file.exists() else None
        names, files = self._files(path, data)
        if stored is None:
            images = decode_images(files, self.image_size)
            stored = {"images": images}
            write_tensors(cache_file, stored)
        labels, split, classes = names
        images = stored["images"]
        train, test = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
        if not len(train) or not len(test) or len(images) != len(split):
            raise UserError(f"{path}: a pack needs train (split 0) and test (split 1) images")
        labels = torch.as_tensor(labels.astype(np.int64))
        return ImageDataset(self.record_name(), images[train], labels[train], images[test], labels[test],
                            tuple(classes), validation_size=round(0.1 * len(train)))

    @staticmethod
    def _files(path: Path, data: bytes):
        try:
            pack = read_npz(data, 4 * MAX_BYTES)
            arrays = {key: pack[key] for key in ("header", "payload", "offsets", "labels", "split", "classes")}
        except (ValueError, KeyError) as error:
            raise UserError(f"{path} is not a JPEG pack ({str(error).splitlines()[0]}): see the module's "
                            f"docstring for its arrays") from None
        if any(arrays[key].dtype.kind not in "iu" or arrays[key].ndim != 1 for key in ("offsets", "labels", "split")) \
                or arrays["classes"].dtype.kind != "U" or arrays["classes"].ndim != 1:
            raise UserError(f"{path}: offsets, labels and split must be integer lists and classes a list of names: "
                            f"not a JPEG pack")
        header, payload, offsets = arrays["header"], arrays["payload"], arrays["offsets"].astype(np.int64)
        labels, split, classes = arrays["labels"], arrays["split"], [str(c) for c in arrays["classes"]]
        count = len(labels)
        if header.dtype != np.uint8 or payload.dtype != np.uint8 or not 0 < count <= MAX_FILES \
                or offsets.shape != (count + 1,) or split.shape != (count,) or offsets[0] != 0 \
                or offsets[-1] != len(payload) or (np.diff(offsets) < 0).any() or len(classes) < 2 \
                or labels.min() < 0 or labels.max() >= len(classes) or not np.isin(split, (0, 1)).all():
            raise UserError(f"{path}: its arrays do not agree (offsets, labels, split, classes): not a JPEG pack")
        prefix = header.tobytes()
        files = [(f"{path.name}[{i}]", prefix + payload[offsets[i]:offsets[i + 1]].tobytes()) for i in range(count)]
        return (labels, split, classes), files
