"""What the per-epoch checkpoints of resumable runs cost: the same training with and without them.

    python scripts/bench_checkpoint.py --images 1024 --epochs 3 --model mobilenetv2_100
    python scripts/bench_checkpoint.py --device cuda --images 45000 --epochs 3 --model mobilenetv2_100

Prints seconds per epoch for both, the checkpoint's size and the overhead ratio. Random uint8 images:
the cost of a step does not depend on what the pixels show.
"""

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from benchmark.models import build_model
from benchmark.protocol import preset
from benchmark.train import train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=1024)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--preset", default="standard", help="whose optimizer settings to train with")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (args.images,), generator=generator).to(device)
    config = dataclasses.replace(preset(args.preset).train_config(0.05), epochs=args.epochs,
                                 batch_size=args.batch_size)

    def train(checkpoint):
        model = build_model(args.model, 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0).to(device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        train_model(model, images, labels, config, seed=0, purpose="bench", checkpoint=checkpoint)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - started) / args.epochs

    train(None)  # warm-up: allocator, cuDNN autotuning
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(folder) / "run.pt"
        plain = train(None)
        with_checkpoints = train(checkpoint)
        size = checkpoint.stat().st_size
    print(f"{args.model}, {args.images} images, batch {args.batch_size}, {device}: "
          f"{plain:.2f} s/epoch without checkpoints, {with_checkpoints:.2f} s/epoch with them "
          f"({size / 2**20:.1f} MiB each); overhead x{with_checkpoints / plain:.3f}")


if __name__ == "__main__":
    main()
