"""The training step's throughput as the harness runs it (`benchmark.train.train_model`), eager and compiled, one
process and several at once on one device, with the share of the chip it uses.

    python scripts/bench_train_step.py --device cuda --images 4500 --epochs 3 --compile none,reduce-overhead \
        --processes 1,4
    python scripts/bench_train_step.py --images 256 --epochs 1 --model mobilenetv2_035   # the CPU, a smoke test

For each compile mode and process count, every process trains its own model on its own copy of the images (a
job's runs share a device this way); the first epoch (compilation, cuDNN plans) is timed apart and left out of
the rate. Prints one line per setting: images/s over all processes, per process, the first epoch's seconds, and
the TFLOP/s that makes (a step is about three forward passes of FLOPs) against the chip's dense bf16 rate when
`--peak-tflops` says it (H200: about 790 measured, 989 on the datasheet).
"""

import argparse
import dataclasses
import multiprocessing
import os
import time

import torch

from benchmark.models import build_model
from benchmark.protocol import preset
from benchmark.train import train_model


def forward_flops(model, image_size: int, device) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size, device=device))
    return float(counter.get_total_flops())


def train_once(args, mode: str, queue) -> None:
    """One process: a fresh model trained for the warm-up epoch, then for `epochs` more (timed)."""
    os.environ["CORESET_BENCH_COMPILE"] = "" if mode == "none" else mode
    device = torch.device(args.device)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // args.current_processes))
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=generator).to(device)
    labels = torch.randint(0, 10, (args.images,), generator=generator).to(device)
    config = dataclasses.replace(preset(args.preset).train_config(0.05), epochs=1)
    model = build_model(args.model, 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0, image_size=32)
    started = time.perf_counter()
    model = train_model(model.to(device), images, labels, config, seed=0, purpose="bench")
    if device.type == "cuda":
        torch.cuda.synchronize()
    first = time.perf_counter() - started
    config = dataclasses.replace(config, epochs=args.epochs)
    started = time.perf_counter()
    train_model(model, images, labels, config, seed=1, purpose="bench")
    if device.type == "cuda":
        torch.cuda.synchronize()
    queue.put((first, time.perf_counter() - started))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--images", type=int, default=4500, help="images per process (a standard run at 0.1)")
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs after the warm-up epoch")
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--preset", default="standard", help="whose optimizer settings and batch size to use")
    parser.add_argument("--compile", default="none", help="comma-separated: none, default, reduce-overhead, ...")
    parser.add_argument("--processes", default="1", help="comma-separated process counts, e.g. 1,4")
    parser.add_argument("--peak-tflops", type=float, default=0.0, help="the chip's dense bf16 TFLOP/s")
    args = parser.parse_args()
    device = torch.device(args.device)
    model = build_model(args.model, 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0, image_size=32)
    flops = forward_flops(model.to(device), 32, device)
    batch = preset(args.preset).batch_size
    print(f"{args.model}: {flops / 1e9:.3f} GFLOP forward per image; batch {batch}; {args.images} images per process",
          flush=True)
    context = multiprocessing.get_context("spawn")
    for mode in args.compile.split(","):
        for processes in (int(p) for p in args.processes.split(",")):
            args.current_processes = processes
            queue = context.Queue()
            workers = [context.Process(target=train_once, args=(args, mode, queue)) for _ in range(processes)]
            started = time.perf_counter()
            for worker in workers:
                worker.start()
            results = [queue.get() for _ in workers]
            for worker in workers:
                worker.join()
            wall = time.perf_counter() - started
            timed = max(seconds for _, seconds in results)
            rate = processes * args.images * args.epochs / timed
            share = f", {100 * rate * 3 * flops / 1e12 / args.peak_tflops:.2f} % of {args.peak_tflops:g}" \
                if args.peak_tflops else ""
            print(f"compile {mode:28} processes {processes}: {rate:,.0f} images/s in all "
                  f"({rate / processes:,.0f} each), {rate * 3 * flops / 1e12:.2f} TFLOP/s{share}; first epoch "
                  f"{max(first for first, _ in results):.1f} s; wall {wall:.1f} s", flush=True)


if __name__ == "__main__":
    main()
