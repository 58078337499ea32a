"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28 x 28 grayscale images of 10 kinds of clothing; 60,000 train,
10,000 test, through torchvision. Padded with zeros to 32 x 32 (pixels are kept, not resampled) and repeated
to 3 channels, so the same models and attacks apply."""

from dataclasses import dataclass

import torch.nn.functional as F

from benchmark.data import ImageDataset, to_rgb_tensor
from benchmark.datasets import Dataset, register, torchvision_parts


@register
@dataclass(frozen=True)
class FashionMNIST(Dataset):
    name = "fashion_mnist"
    paper = "Xiao, Rasul & Vollgraf. Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning " \
            "Algorithms. 2017"
    source = "torchvision.datasets.FashionMNIST"
    classes = 10
    image_size = 32
    split = "60,000 train (6,000 held out for validation) / 10,000 test, the official split"

    def load(self, *, data_root, cache_dir, download) -> ImageDataset:
        from torchvision.datasets import FashionMNIST as Source

        parts = torchvision_parts("Fashion-MNIST", "FashionMNIST/raw", data_root, download,
                                  lambda train: Source(str(data_root), train=train, download=download))
        tensors = [(F.pad(to_rgb_tensor(p.data.numpy()), (2, 2, 2, 2)), p.targets.long()) for p in parts]
        (train_x, train_y), (test_x, test_y) = tensors
        return ImageDataset(self.name, train_x, train_y, test_x, test_y, tuple(parts[0].classes),
                            validation_size=6000)
