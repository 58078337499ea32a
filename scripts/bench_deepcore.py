"""DeepCore's own selection algorithms timed beside this benchmark's, on the same arrays: Herding, k-center
greedy, CRAIG and GRAD-MATCH on the features of `bench_selectors.py` (the 45,000-point class-balanced pool by
default), at 10 % and 50 %, with the Jaccard overlap of the two selections.

    git clone https://github.com/PatrickZH/DeepCore ../DeepCore
    python scripts/bench_selectors.py --methods random          # writes bench-features.pt once
    python scripts/bench_deepcore.py --deepcore ../DeepCore

DeepCore's functions are called as its `finish_run` calls them in balanced mode, one class at a time, each
class in its own process under `--limit` seconds: a class that takes longer is stopped, and the row says how
many classes finished and extrapolates from them (or gives a lower bound when none did). Inputs are those
DeepCore computes itself: embeddings for Herding and k-center (Euclidean metric), last-layer gradients
[p - y, (p - y) outer h] for CRAIG (its Euclidean distance matrix, negated and shifted, with its lazy greedy)
and GRAD-MATCH (its NumPy OMP, target the class's mean gradient, lam = 1). Overlap is not expected to be 1:
the DeepCore bugs named in this benchmark's docstrings (Herding's argmax, GradMatch's short selections)
and k-center's random first centre change the picks.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_selectors import balanced_rows, bench_context  # noqa: E402

from benchmark.selection import create_selector, last_layer_gradients  # noqa: E402

METHODS = ("herding", "kcenter_greedy", "craig", "gradmatch")
QUIET = SimpleNamespace(print_freq=10 ** 9)  # DeepCore prints every print_freq steps


def load(path: Path, size: int) -> tuple[dict, np.ndarray, np.ndarray]:
    stored = torch.load(path)
    rows = balanced_rows(stored["labels"].numpy(), size)
    return stored, rows, stored["labels"].numpy()[rows]


def ours(method: str, path: Path, size: int, fraction: float) -> dict:
    context = bench_context(torch.load(path), size, fraction)
    context.embeddings(), context.probabilities()  # outside the timing, as in the harness
    started = time.perf_counter()
    selection = create_selector(method).select(context)
    return {"seconds": time.perf_counter() - started, "indices": np.asarray(selection.indices).tolist()}


def deepcore_class(method: str, path: Path, size: int, fraction: float, label: int) -> dict:
    from deepcore.methods.herding import Herding
    from deepcore.methods.kcentergreedy import k_center_greedy
    from deepcore.methods.methods_utils import FacilityLocation, euclidean_dist, submodular_optimizer
    from deepcore.methods.methods_utils.euclidean import euclidean_dist_pair_np

    stored, rows, labels = load(path, size)
    index = np.flatnonzero(labels == label)
    budget = round(fraction * len(index))
    embeddings = stored["embeddings"][rows][index].float()
    started = time.perf_counter()
    if method == "herding":
        herding = Herding.__new__(Herding)  # its method needs only these two attributes
        herding.args, herding.metric = QUIET, euclidean_dist
        chosen = Herding.herding(herding, embeddings, budget=budget, index=index)
    elif method == "kcenter_greedy":
        chosen = k_center_greedy(embeddings, budget, euclidean_dist, "cpu", random_seed=0, index=index,
                                 already_selected=[], print_freq=QUIET.print_freq)
    else:
        gradients = last_layer_gradients(embeddings, stored["probabilities"][rows][index].float(),
                                         torch.as_tensor(labels[index])).numpy()
        if method == "craig":
            matrix = -1.0 * euclidean_dist_pair_np(gradients)
            matrix -= np.min(matrix) - 1e-3
            function = FacilityLocation(index=index, similarity_matrix=matrix)
            greedy = submodular_optimizer.LazyGreedy(args=QUIET, index=index, budget=budget)
            chosen = greedy.select(gain_function=function.calc_gain, update_state=function.update_state)
        else:
            from deepcore.methods.gradmatch import GradMatch

            gradmatch = GradMatch.__new__(GradMatch)
            gradmatch.args = QUIET
            weights = GradMatch.orthogonal_matching_pursuit_np(gradmatch, gradients.T, gradients.mean(0),
                                                               budget=budget)
            chosen = index[np.nonzero(weights)[0]]
    return {"seconds": time.perf_counter() - started, "indices": np.asarray(chosen).tolist()}


def run_worker(args: list[str], limit: float) -> dict | None:
    try:
        done = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {done.stderr.strip().splitlines()[-1]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--deepcore", type=Path, required=True, help="a clone of PatrickZH/DeepCore")
    parser.add_argument("--features", type=Path, default=Path("bench-features.pt"))
    parser.add_argument("--size", type=int, default=45_000)
    parser.add_argument("--fractions", default="0.1,0.5")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--limit", type=float, default=120.0, help="seconds per DeepCore class before it is stopped")
    parser.add_argument("--worker", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        side, method, size, fraction, label = args.worker
        sys.path.insert(0, str(args.deepcore.resolve()))
        if side == "ours":
            result = ours(method, args.features, int(size), float(fraction))
        else:
            result = deepcore_class(method, args.features, int(size), float(fraction), int(label))
        return print(json.dumps(result))
    if not args.features.exists():
        raise SystemExit(f"{args.features} not found: run scripts/bench_selectors.py once to write it")
    common = ["--deepcore", str(args.deepcore), "--features", str(args.features)]
    print("| method | budget | this benchmark s | DeepCore s | DeepCore / this | DeepCore selected | Jaccard |")
    print("|---|---|---|---|---|---|---|")
    for method in args.methods.split(","):
        for fraction in (float(f) for f in args.fractions.split(",")):
            mine = run_worker(common + ["--worker", "ours", method, str(args.size), str(fraction), "-1"], 3600)
            theirs, seconds, stopped = [], 0.0, 0
            for label in range(10):
                result = run_worker(common + ["--worker", "deepcore", method, str(args.size), str(fraction),
                                              str(label)], args.limit)
                if result is None:
                    stopped = 10 - label
                    break
                theirs += result["indices"]
                seconds += result["seconds"]
            if stopped == 10:
                deepcore, ratio, overlap, count = f"> {10 * args.limit:.0f}", "-", "-", "-"
            else:
                estimate = seconds * 10 / (10 - stopped)
                deepcore = (f"{seconds:.1f}" if not stopped else
                            f"~{estimate:.0f} (est. from {10 - stopped} of 10 classes)")
                ratio = f"{estimate / mine['seconds']:.1f}x"
                a, b = set(mine["indices"]), set(theirs)
                overlap = "-" if stopped else f"{len(a & b) / len(a | b):.2f}"
                count = "-" if stopped else f"{len(b):,}"
            print(f"| {method} | {fraction:.0%} | {mine['seconds']:.1f} | {deepcore} | {ratio} | {count} | {overlap} |",
                  flush=True)


if __name__ == "__main__":
    main()
