"""CIFAR-100 (Krizhevsky 2009): 60,000 32 x 32 colour images of 100 fine classes; 50,000 train, 10,000 test,
through torchvision (`--data-root` holds `cifar-100-python`)."""

from dataclasses import dataclass

from benchmark.data import ImageDataset
from benchmark.datasets import Dataset, register, torchvision_parts
from benchmark.datasets.cifar10 import cifar_tensors


@register
@dataclass(frozen=True)
class CIFAR100(Dataset):
    name = "cifar100"
    paper = "Krizhevsky. Learning Multiple Layers of Features from Tiny Images. 2009"
    source = "torchvision.datasets.CIFAR100"
    classes = 100
    image_size = 32
    split = "50,000 train (5,000 held out for validation) / 10,000 test, the official split"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        from torchvision.datasets import CIFAR100 as Source

        parts = torchvision_parts("CIFAR-100", "cifar-100-python", data_root, download,
                                  lambda train: Source(str(data_root), train=train, download=download))
        (train_x, train_y), (test_x, test_y) = cifar_tensors(parts)
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, tuple(parts[0].classes),
                            validation_size=5000)
