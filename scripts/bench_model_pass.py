"""Images per second of the two passes a run spends its time in, the attacks' input-gradient pass and the
training step, for each memory layout and precision the model could run in, beside the harness's choice.

    python scripts/bench_model_pass.py --device cuda --model mobilenetv2_100

The harness attacks in float32 with channels_last and trains in bf16 autocast with channels_last; on the
first GPU (an H200) its attacks ran at 500 images/s or less and its training at about 3,000, far below what
the chip does for a model this size (docs/gpu.md). This prints where the time goes, as ratios against the
harness's choice measured in the same process: first on batches that shrink as an early-stopping attack's do,
exact sizes against the buckets the harness pads to on a GPU (the first passes at new batch sizes cost
seconds there; the buckets bound how many sizes a run meets), then by layout, precision and cuDNN
autotuning on fixed-size batches. A faster attack precision would also have to be shown as strong before the
harness used it (bf16 gradients can weaken an attack).
"""

import argparse
import itertools
import time

import torch
import torch.nn.functional as F

from benchmark import attacks
from benchmark.attacks import bucket_size, losses_and_gradient
from benchmark.models import build_model

LAYOUTS = {"channels_last": torch.channels_last, "NCHW": torch.contiguous_format}


def seconds(function, device: torch.device) -> float:
    """Wall time of function(), the GPU's queued work included."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    function()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - started


def images_per_second(step, device: torch.device, batch: int, repeats: int) -> float:
    for _ in range(2):  # warm-up: kernel selection, allocator, lazy module loading
        step()
    return batch * repeats / seconds(lambda: [step() for _ in range(repeats)], device)


def fresh_model(name: str, device: torch.device, layout: torch.memory_format) -> torch.nn.Module:
    model = build_model(name, 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=0)
    return model.to(device, memory_format=layout)


def measure(model_name: str, device: torch.device, layout: torch.memory_format, bf16: bool, attack_batch,
            train_batch, repeats: int) -> tuple[float, float]:
    """(input-gradient passes, training steps) in images/s, for a fresh model in this layout and precision."""
    model = fresh_model(model_name, device, layout)
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16)
    x_attack, y_attack = attack_batch[0].contiguous(memory_format=layout), attack_batch[1]
    x_train, y_train = train_batch[0].contiguous(memory_format=layout), train_batch[1]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

    def attack_pass():
        with autocast:
            losses_and_gradient(model, x_attack, y_attack)

    def train_step():
        with autocast:
            loss = F.cross_entropy(model(x_train), y_train)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    model.eval()
    attack_rate = images_per_second(attack_pass, device, len(x_attack), repeats)
    model.train()
    return attack_rate, images_per_second(train_step, device, len(x_train), repeats)


def shrinking_batch_sizes(first: int, steps: int = 12) -> list[int]:
    """Batch sizes an early-stopping attack meets on one batch: each step 7 % of it is fooled and leaves."""
    sizes, count = [], first
    for _ in range(steps):
        sizes.append(count)
        count = max(1, round(count * 0.93))
    return sizes


def shrinking_seconds(model, images, labels, sizes: list[int], device: torch.device, padded: bool) -> float:
    """Seconds of input-gradient passes over batches of these sizes, padded to buckets or not."""
    harness_rule = attacks.pads_batches
    attacks.pads_batches = lambda batch: padded
    try:
        return seconds(lambda: [losses_and_gradient(model, images[:n], labels[:n]) for n in sizes], device)
    finally:
        attacks.pads_batches = harness_rule


def print_shrinking_rounds(model, images, labels, device: torch.device, rounds: int) -> None:
    """Alternating rounds, exact sizes and padded, each from a batch size the process has not met: the first
    passes at new sizes cost seconds on a GPU (cuDNN plans, kernels loaded on first use), and the cost falls
    as the process has met more of them, so one round of each would favour whichever ran second."""
    print("Input-gradient passes on shrinking batches (one early-stopping attack batch, 12 steps, 7 % leaving "
          "at each; channels_last float32), rounds alternating, each from sizes not met before:", flush=True)
    print("| round | batch shapes | distinct shapes | seconds | images/s |")
    print("|---|---|---|---|---|", flush=True)
    for round_number in range(rounds):
        padded = round_number % 2 == 1
        sizes = shrinking_batch_sizes(len(images) - 1 - 3 * round_number)
        took = shrinking_seconds(model, images, labels, sizes, device, padded)
        shapes = {bucket_size(n) for n in sizes} if padded else set(sizes)
        label = "padded to buckets (the harness on a GPU)" if padded else "exact sizes"
        print(f"| {round_number + 1} | {label} | {len(shapes)} | {took:.2f} | {sum(sizes) / took:.0f} |", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mobilenetv2_100")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--attack-batch", type=int, default=1024, help="images per input-gradient pass")
    parser.add_argument("--train-batch", type=int, default=128, help="images per training step")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6, help="shrinking-batch rounds, exact and padded by turns")
    args = parser.parse_args()
    device = torch.device(args.device)
    generator = torch.Generator().manual_seed(0)
    attack_x = torch.rand(args.attack_batch, 3, 32, 32, generator=generator).to(device)
    attack_y = torch.randint(0, 10, (args.attack_batch,), generator=generator).to(device)
    train_x, train_y = attack_x[:args.train_batch], attack_y[:args.train_batch]
    model = fresh_model(args.model, device, torch.channels_last).eval()
    losses_and_gradient(model, attack_x[:2], attack_y[:2])  # CUDA's start-up, on a shape not used below
    print_shrinking_rounds(model, attack_x, attack_y, device, args.rounds)
    print()
    precisions = ["float32", "bf16"] if device.type == "cuda" else ["float32"]
    benchmark_flags = [False, True] if device.type == "cuda" else [False]
    rows = []
    for layout, precision, autotune in itertools.product(LAYOUTS, precisions, benchmark_flags):
        torch.backends.cudnn.benchmark = autotune
        rates = measure(args.model, device, LAYOUTS[layout], precision == "bf16", (attack_x, attack_y),
                        (train_x, train_y), args.repeats)
        rows.append((layout, precision, autotune, *rates))
    torch.backends.cudnn.benchmark = False

    def rate_of(column: int, layout: str, precision: str) -> float:
        return next(row[column] for row in rows if row[:3] == (layout, precision, False))

    attack_base = rate_of(3, "channels_last", "float32")  # what the harness attacks with
    train_base = rate_of(4, "channels_last", precisions[-1])  # what it trains with
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"{name}; {args.model}; attack batch {args.attack_batch}, train batch {args.train_batch}; "
          f"ratios against the harness's choice (attacks: channels_last float32, training: channels_last "
          f"{precisions[-1]})")
    print("| layout | precision | cudnn.benchmark | attack pass images/s | ratio | training images/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for layout, precision, autotune, attack_rate, train_rate in rows:
        print(f"| {layout} | {precision} | {'on' if autotune else 'off'} | {attack_rate:.0f} | "
              f"{attack_rate / attack_base:.2f}x | {train_rate:.0f} | {train_rate / train_base:.2f}x |")


if __name__ == "__main__":
    main()
