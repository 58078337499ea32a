"""Training throughput of the harness loop (uint8 tensors on the device, whole-batch augmentation) against
a plain DataLoader loop (per-image transforms in a Dataset) over the same images, model and optimizer.

    python scripts/bench_train_loop.py --images 2048 --epochs 2 --model mobilenetv2_035
    python scripts/bench_train_loop.py --device cuda --images 45000 --epochs 3 --model mobilenetv2_100

Prints images/s for both and their ratio. Both loops use the same autocast and channels_last settings, so
the ratio measures the data path only.
"""

import argparse
import dataclasses
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms import v2

from benchmark.models import build_model
from benchmark.protocol import preset
from benchmark.train import TrainConfig, prepare, to_float, train_model


class PerImage(Dataset):
    """The usual pipeline: one uint8 image at a time through torchvision transforms."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor):
        self.images, self.labels = images, labels
        self.transform = v2.Compose([v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return self.transform(self.images[i]), self.labels[i]


def dataloader_loop(model, images, labels, config: TrainConfig, device, workers: int):
    model = prepare(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                nesterov=config.nesterov, weight_decay=config.weight_decay)
    loader = DataLoader(PerImage(images, labels), batch_size=config.batch_size, shuffle=True, num_workers=workers,
                        pin_memory=device.type == "cuda", drop_last=False)
    model.train()
    for _ in range(config.epochs):
        for x, y in loader:
            x, y = to_float(x.to(device, non_blocking=True)), y.to(device, non_blocking=True)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
                loss = F.cross_entropy(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()


def timed(function, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--model", default="mobilenetv2_035")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes")
    parser.add_argument("--preset", default="standard", help="whose optimizer settings and batch size to train with")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (args.images,), generator=generator)
    config = dataclasses.replace(preset(args.preset).train_config(0.05), epochs=args.epochs)

    def fresh():
        return build_model(args.model, 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0)

    # one warm-up epoch each (cuDNN autotuning, allocator, worker start-up are not the loop's speed)
    warm = dataclasses.replace(config, epochs=1)
    train_model(fresh(), images[:512].to(device), labels[:512].to(device), warm, seed=0, purpose="warm-up")
    dataloader_loop(fresh(), images[:512], labels[:512], warm, device, args.workers)

    ours = timed(lambda: train_model(fresh(), images.to(device), labels.to(device), config, seed=0,
                                     purpose="bench"), device)
    plain = timed(lambda: dataloader_loop(fresh(), images, labels, config, device, args.workers), device)
    seen = args.images * args.epochs
    print(f"device {device}, model {args.model}, {args.images} images x {args.epochs} epochs")
    print(f"harness loop     {seen / ours:10.1f} images/s")
    print(f"DataLoader loop  {seen / plain:10.1f} images/s  ({args.workers} workers)")
    print(f"ratio            {plain / ours:10.2f}x")


if __name__ == "__main__":
    main()
