"""CIFAR-10 (Krizhevsky 2009): 60,000 32 x 32 colour images of 10 classes; 50,000 train, 10,000 test, through
torchvision (`--data-root` holds `cifar-10-batches-py`, or receives it where the network allows)."""

from dataclasses import dataclass

import torch

from benchmark.data import ImageDataset
from benchmark.datasets import Dataset, register, torchvision_parts


def cifar_tensors(parts) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(torch.from_numpy(p.data).permute(0, 3, 1, 2).contiguous(), torch.tensor(p.targets)) for p in parts]


@register
@dataclass(frozen=True)
class CIFAR10(Dataset):
    name = "cifar10"
    paper = "Krizhevsky. Learning Multiple Layers of Features from Tiny Images. 2009"
    source = "torchvision.datasets.CIFAR10"
    classes = 10
    image_size = 32
    split = "50,000 train (5,000 held out for validation) / 10,000 test, the official split"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        from torchvision.datasets import CIFAR10 as Source

        parts = torchvision_parts("CIFAR-10", "cifar-10-batches-py", data_root, download,
                                  lambda train: Source(str(data_root), train=train, download=download))
        (train_x, train_y), (test_x, test_y) = cifar_tensors(parts)
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, tuple(parts[0].classes),
                            validation_size=5000)
