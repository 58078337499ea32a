"""SVHN (Netzer et al. 2011): 32 x 32 colour crops of house-number digits, 10 classes; the official 73,257
train and 26,032 test images (the "extra" set is not used), through torchvision (`--data-root` holds
`train_32x32.mat` and `test_32x32.mat`)."""

from dataclasses import dataclass

import torch

from benchmark.data import ImageDataset
from benchmark.datasets import Dataset, register, torchvision_parts


@register
@dataclass(frozen=True)
class SVHN(Dataset):
    name = "svhn"
    paper = "Netzer, Wang, Coates, Bissacco, Wu & Ng. Reading Digits in Natural Images with Unsupervised " \
            "Feature Learning. NeurIPS Workshop 2011"
    source = "torchvision.datasets.SVHN"
    classes = 10
    image_size = 32
    split = "73,257 train (10 % held out for validation) / 26,032 test, the official split; extra unused"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        from torchvision.datasets import SVHN as Source

        parts = torchvision_parts("SVHN", "train_32x32.mat and test_32x32.mat", data_root, download,
                                  lambda train: Source(str(data_root), split="train" if train else "test",
                                                       download=download))
        (train_x, train_y), (test_x, test_y) = [
            (torch.from_numpy(p.data).contiguous(), torch.from_numpy(p.labels).long()) for p in parts]
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, tuple(str(d) for d in range(10)),
                            validation_size=round(0.1 * len(train_y)))
