"""Seconds and peak memory of every selector on a pool of CIFAR-10 size (10 classes, class-balanced): by
default the 45,000-point pool at 10 % and 50 % budgets; other sizes show growth with N.

    python scripts/bench_selectors.py --cifar10 ../shared/data/cifar10-jpeg
    python scripts/bench_selectors.py --sizes 5000,20000 --fractions 0.1 --methods cal,moderate_ds

Features are real proxy outputs when --cifar10 (or CORESET_BENCH_CIFAR10_JPEG) names the ImageFolder copy:
a narrow MobileNetV2 (mobilenetv2_035, 1280-d embeddings) trained one epoch on 5,000 training images,
then applied to all 50,000 (the pool) and to the 10,000 test images (standing in for the validation split:
timing only, nothing is evaluated). Otherwise Gaussian class clusters of the same shapes. Each (method, N,
fraction) runs in its own process, so the peak resident memory it reports is that selection's alone (minus
the memory the process had after loading the features).

Model-bound selectors are timed as their cost per pool point, not at full size: DeepFool and the
adversarial coreset attack every pool image through the proxy (`--model-bound-size` points, default 1,000),
and GraND and EL2N score with K proxies, here two untrained ones (GraND with its closed-form last-layer
option); their proxies' training is excluded as for every selector. Training dynamics (forgetting, AUM,
CCS, D2 pruning, DUAL) are seeded random matrices of the proxy's shape (3 epochs): their selectors' cost
does not depend on the values.
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

from benchmark.selection import (
    SelectionContext,
    TrainingDynamics,
    ValidationOutputs,
    available_selectors,
    create_selector,
)

PARAMS = {"grand": {"last_layer": True, "repeats": 2, "epochs": 1}, "el2n": {"repeats": 2, "epochs": 1}}
SKIP = {"full"}
MODEL_BOUND = {"deepfool", "adversarial_coreset"}


class BenchFeatures:
    """Precomputed outputs, the proxy, random training dynamics and untrained proxies for GraND and EL2N."""

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

    def training_dynamics(self):
        generator = torch.Generator().manual_seed(0)
        shape = (3, len(self.rows))
        return TrainingDynamics(torch.rand(shape, generator=generator) < 0.7, torch.randn(shape, generator=generator),
                                torch.rand(shape, generator=generator) * 3)

    def proxy_model(self):
        model = _proxy(0)
        model.load_state_dict(self.stored["proxy"])
        return model.eval()

    def proxy_models(self, count, epochs):
        return [_proxy(i).eval() for i in range(count)]


def _proxy(seed: int) -> torch.nn.Module:
    from benchmark.models import build_model

    return build_model("mobilenetv2_035", 10, torch.full((3,), 0.47), torch.full((3,), 0.25), seed=seed)


def make_features(cifar10: Path | None, path: Path) -> None:
    if cifar10 is not None:
        from benchmark.datasets import load_dataset
        from benchmark.protocol import preset
        from benchmark.train import predict, train_model

        dataset = load_dataset(f"imagefolder:{cifar10}")
        subset = np.random.default_rng(0).permutation(len(dataset.train_labels))[:5000]
        model = _proxy(0)
        train_model(model, dataset.train_images[subset], dataset.train_labels[subset],
                    preset("cifar10-cpu").proxy_config(epochs=1), seed=0, purpose="bench-proxy")
        logits, embeddings = predict(model, dataset.train_images, embed=True)
        val_logits, val_embeddings = predict(model, dataset.test_images, embed=True)
        stored = {"labels": dataset.train_labels, "embeddings": embeddings, "probabilities": logits.softmax(1),
                  "val_labels": dataset.test_labels, "val_embeddings": val_embeddings,
                  "val_probabilities": val_logits.softmax(1), "images": dataset.train_images, "source": "cifar10",
                  "proxy": model.state_dict()}
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
                  "source": "gaussian", "proxy": _proxy(0).state_dict()}
    torch.save(stored, path)


def balanced_rows(labels: np.ndarray, size: int) -> np.ndarray:
    """A class-balanced subset of `size` points, the same for every method (and for bench_deepcore.py)."""
    rng = np.random.default_rng(size)
    return np.sort(np.concatenate([rng.permutation(np.flatnonzero(labels == c))[:size // 10] for c in range(10)]))


def bench_context(stored: dict, size: int, fraction: float) -> SelectionContext:
    """The selection context of a class-balanced pool of `size` points at `fraction` (shared with
    bench_deepcore.py, so both time the same problem)."""
    rows = balanced_rows(stored["labels"].numpy(), size)
    return SelectionContext(labels=stored["labels"].numpy()[rows], num_classes=10,
                            budget=10 * round(fraction * (size // 10)), seed=0, features=BenchFeatures(stored, rows))


def worker(method: str, size: int, fraction: float, path: Path) -> None:
    stored = torch.load(path)
    context = bench_context(stored, size, fraction)
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
    parser.add_argument("--sizes", default="45000", help="pool sizes, comma-separated")
    parser.add_argument("--fractions", default="0.1,0.5")
    parser.add_argument("--model-bound-size", type=int, default=1000,
                        help=f"pool size for {', '.join(sorted(MODEL_BOUND))} (reported per 1,000 points)")
    parser.add_argument("--methods", default="all")
    parser.add_argument("--limit", type=float, default=900.0, help="seconds before a selection is stopped")
    parser.add_argument("--features", type=Path, default=Path("bench-features.pt"), help="cache of the features")
    parser.add_argument("--worker", nargs=3, metavar=("METHOD", "N", "FRACTION"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args.worker[0], int(args.worker[1]), float(args.worker[2]), args.features)
    if not args.features.exists():
        make_features(args.cifar10, args.features)
    methods = [m for m in available_selectors() if m not in SKIP] if args.methods == "all" else args.methods.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    fractions = [float(f) for f in args.fractions.split(",")]
    columns = [(n, f) for n in sizes for f in fractions]
    names = [f"N={n:,} {f:.0%}" for n, f in columns]
    print(f"| method | {' | '.join(f'{name} s' for name in names)} | {' | '.join(f'{name} MB' for name in names)} |")
    print("|---" * (1 + 2 * len(columns)) + "|")
    for method in methods:
        results = []
        for size, fraction in columns:
            measured = args.model_bound_size if method in MODEL_BOUND else size
            try:
                done = subprocess.run([sys.executable, __file__, "--features", str(args.features), "--worker",
                                       method, str(measured), str(fraction)], capture_output=True, text=True,
                                      timeout=args.limit)
            except subprocess.TimeoutExpired:
                results.append({"seconds": float("inf"), "peak_mb": float("nan")})
                continue
            if done.returncode != 0:
                results.append(None)
                reason = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
                print(f"{method} N={measured} failed: {reason}", file=sys.stderr)
                continue
            result = json.loads(done.stdout.strip().splitlines()[-1])
            if method in MODEL_BOUND:  # scaled to the column's N from the measured per-point cost
                result["seconds"] *= size / measured
                result["scaled"] = True
            results.append(result)
        seconds = " | ".join("failed" if r is None else f"> {args.limit:.0f} (stopped)" if r["seconds"] == float("inf")
                             else f"{r['seconds']:.2f}" + (" (est.)" if r.get("scaled") else "") for r in results)
        memory = " | ".join("failed" if r is None else f"{r['peak_mb']:.0f}" for r in results)
        print(f"| {method} | {seconds} | {memory} |", flush=True)


if __name__ == "__main__":
    main()
