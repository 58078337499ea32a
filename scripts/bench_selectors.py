"""Seconds and peak memory of every selector at N = 5,000, 20,000 and 50,000 pool points of CIFAR-10 size
(10 classes, 10 % budget, class-balanced), so growth with N is visible.

    python scripts/bench_selectors.py --cifar10 ../shared/data/cifar10-jpeg
    python scripts/bench_selectors.py --sizes 5000 --methods cal,moderate_ds      # a quick look

Features are real proxy outputs when --cifar10 (or CORESET_BENCH_CIFAR10_JPEG) names the ImageFolder copy:
a narrow MobileNetV2 (mobilenetv2_035, 1280-d embeddings) trained one epoch on 5,000 training images,
then applied to all 50,000 (the pool) and to the 10,000 test images (standing in for the validation split:
timing only, nothing is evaluated). Otherwise Gaussian class clusters of the same shapes. Each (method, N)
runs in its own process, so the peak resident memory it reports is that selection's alone (minus the
memory the process had after loading the features). GraND runs its closed-form last-layer option on
untrained proxies here: per-sample gradients over all parameters are a GPU job at these sizes.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from benchmark.selection import SelectionContext, ValidationOutputs, available_selectors, create_selector

PARAMS = {"grand": {"last_layer": True, "repeats": 2, "epochs": 1}}
SKIP = {"full"}


class BenchFeatures:
    """Precomputed outputs plus untrained narrow proxies for GraND."""

    def __init__(self, stored: dict, rows: np.ndarray):
        self.stored, self.rows = stored, torch.as_tensor(rows)

    def embeddings(self):
        return self.stored["embeddings"][self.rows]

    def probabilities(self):
        return self.stored["probabilities"][self.rows]

    def validation(self):
        s = self.stored
        return ValidationOutputs(s["val_labels"], s["val_embeddings"], s["val_probabilities"])

    def pool_images(self):
        return self.stored["images"][self.rows]

    def proxy_models(self, count, epochs):
        from benchmark.models import build_model

        return [build_model("mobilenetv2_035", 10, torch.full((3,), 0.5), torch.full((3,), 0.25), seed=i).eval()
                for i in range(count)]


def make_features(cifar10: Path | None, path: Path) -> None:
    if cifar10 is not None:
        from benchmark.data import load_dataset
        from benchmark.models import build_model
        from benchmark.train import TrainConfig, predict, train_model

        dataset = load_dataset(f"imagefolder:{cifar10}")
        subset = np.random.default_rng(0).permutation(len(dataset.train_labels))[:5000]
        model = build_model("mobilenetv2_035", 10, torch.full((3,), 0.47), torch.full((3,), 0.25), seed=0)
        train_model(model, dataset.train_images[subset], dataset.train_labels[subset],
                    TrainConfig(epochs=1, lr=0.05), seed=0, purpose="bench-proxy")
        logits, embeddings = predict(model, dataset.train_images, embed=True)
        val_logits, val_embeddings = predict(model, dataset.test_images, embed=True)
        stored = {"labels": dataset.train_labels, "embeddings": embeddings, "probabilities": logits.softmax(1),
                  "val_labels": dataset.test_labels, "val_embeddings": val_embeddings,
                  "val_probabilities": val_logits.softmax(1), "images": dataset.train_images, "source": "cifar10"}
    else:
        generator = torch.Generator().manual_seed(0)
        labels = torch.arange(50_000) % 10
        centers = torch.randn(10, 1280, generator=generator)
        embeddings = (centers[labels] + 2 * torch.randn(50_000, 1280, generator=generator)).relu()
        logits = torch.randn(50_000, 10, generator=generator) + 3 * torch.nn.functional.one_hot(labels, 10)
        val_labels = torch.arange(5000) % 10
        stored = {"labels": labels, "embeddings": embeddings, "probabilities": logits.softmax(1),
                  "val_labels": val_labels, "val_embeddings": embeddings[:5000].clone(),
                  "val_probabilities": logits[:5000].softmax(1),
                  "images": torch.randint(0, 256, (50_000, 3, 32, 32), dtype=torch.uint8, generator=generator),
                  "source": "gaussian"}
    torch.save(stored, path)


def worker(method: str, size: int, path: Path) -> None:
    stored = torch.load(path)
    labels = stored["labels"].numpy()
    # a class-balanced subset of `size` points, the same for every method
    rng = np.random.default_rng(size)
    rows = np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:size // 10] for c in range(10)]))
    context = SelectionContext(labels=labels[rows], num_classes=10, budget=size // 10, seed=0,
                               features=BenchFeatures(stored, rows))
    selector = create_selector(method, PARAMS.get(method))
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    context.embeddings(), context.probabilities()  # outside the timing, as in the harness
    started = time.perf_counter()
    selector.select(context)
    seconds = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"seconds": seconds, "peak_mb": max(peak - baseline, 0) / 1024, "source": stored["source"]}))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar10", type=Path, default=os.environ.get("CORESET_BENCH_CIFAR10_JPEG"))
    parser.add_argument("--sizes", default="5000,20000,50000")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--features", type=Path, default=Path("bench-features.pt"), help="cache of the features")
    parser.add_argument("--worker", nargs=2, metavar=("METHOD", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), args.features)
    if not args.features.exists():
        make_features(args.cifar10, args.features)
    methods = [m for m in available_selectors() if m not in SKIP] if args.methods == "all" else args.methods.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"| method | {' | '.join(f'N={n:,} s' for n in sizes)} | {' | '.join(f'N={n:,} MB' for n in sizes)} |")
    print("|---" * (1 + 2 * len(sizes)) + "|")
    for method in methods:
        results = []
        for size in sizes:
            done = subprocess.run([sys.executable, __file__, "--features", str(args.features), "--worker", method,
                                   str(size)], capture_output=True, text=True)
            if done.returncode != 0:
                results.append(None)
                print(f"{method} N={size} failed: {done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
            else:
                results.append(json.loads(done.stdout.strip().splitlines()[-1]))
        seconds = " | ".join("failed" if r is None else f"{r['seconds']:.2f}" for r in results)
        memory = " | ".join("failed" if r is None else f"{r['peak_mb']:.0f}" for r in results)
        print(f"| {method} | {seconds} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
