"""scikit-learn's handwritten digits (Alpaydin & Kaynak 1998, the UCI "optdigits" test set): 1,797 8 x 8
grayscale images of 10 classes, shipped with scikit-learn as `datasets/data/digits.csv.gz` (no download).
Read straight from that file (importing scikit-learn costs seconds the smoke run does not have), upscaled to
32 x 32 RGB; a seeded, stratified 20 % is the test set, 10 % of the rest validation."""

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmark.data import ImageDataset, held_out_test
from benchmark.datasets import Dataset, register
from benchmark.errors import UserError


def _digits_file() -> Path:
    spec = importlib.util.find_spec("sklearn")  # finds the package without importing it
    path = Path(spec.submodule_search_locations[0]) / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        raise UserError("the digits come with scikit-learn: pip install scikit-learn")
    return path


@register
@dataclass(frozen=True)
class Digits(Dataset):
    name = "digits"
    paper = "Alpaydin & Kaynak. Optical Recognition of Handwritten Digits (UCI). 1998"
    source = "scikit-learn's embedded copy (sklearn/datasets/data/digits.csv.gz)"
    classes = 10
    image_size = 32
    split = "seeded stratified 80 / 20 train / test; 10 % of train held out for validation"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        with gzip.open(_digits_file(), "rt") as stream:
            table = np.loadtxt(stream, delimiter=",", dtype=np.float32)
        pixels = torch.from_numpy(table[:, :64]).reshape(-1, 1, 8, 8) / 16.0  # values 0..16
        pixels = F.interpolate(pixels, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        images = (pixels.clamp(0, 1) * 255).round().to(torch.uint8).expand(-1, 3, -1, -1).contiguous()
        return held_out_test(self.name, images, torch.from_numpy(table[:, 64].astype(np.int64)),
                             [str(d) for d in range(10)])
