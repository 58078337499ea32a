"""Seconds per 1,000 test images for each attack of a suite, this benchmark's implementation beside the library
implementation of the same attack run the usual way (torchattacks on every clean-correct image, every step,
one eps at a time), on one model, in one process. Prints a Markdown table (docs/attacks.md keeps one).

    python scripts/bench_attacks.py --cifar10 ../shared/data/cifar10-jpeg [--device cpu] [--weights W]

Without --weights it trains the preset's model on a random half of its pool first (for cifar10-cpu about a
minute on 2 cores; --epochs shortens the standard preset's 200). Both sides attack the same images (those the
model classifies correctly), at the preset's eps grid; accuracies are printed too, so a faster attack that is
also weaker would show."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torchattacks

from benchmark.attacks import bucket_size, create_attack, losses_and_gradient, pads_batches
from benchmark.evaluation import clean_predictions, default_batch_size
from benchmark.protocol import preset
from benchmark.run import load_protocol_data, resolve_device, train_on_selection
from benchmark.selection import Selection
from benchmark.train import to_float


def library_attack(name: str, params: dict, model, eps: float, classes: int):
    """The library implementation a user would reach for, with this benchmark's settings."""
    if name == "fgsm":
        return torchattacks.FGSM(model, eps=eps)
    if name == "bim":
        return torchattacks.BIM(model, eps=eps, alpha=1 / 255, steps=0)
    if name == "pgd":
        steps = params.get("steps", 20)
        return torchattacks.PGD(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    if name == "pgd-l2":
        steps = params.get("steps", 20)
        return torchattacks.PGDL2(model, eps=eps, alpha=2.5 * eps / steps, steps=steps, random_start=True)
    if name == "apgd":
        steps = params.get("steps", 100)
        first = torchattacks.APGD(model, eps=eps, steps=steps, loss="ce")
        second = torchattacks.APGD(model, eps=eps, steps=steps, loss="dlr")
        return torchattacks.MultiAttack([first, second])
    if name == "autoattack":
        attack = torchattacks.AutoAttack(model, eps=eps, version="standard", n_classes=classes)
        for part in attack._autoattack.attacks:
            if isinstance(part, torchattacks.Square):
                part.n_queries = params.get("queries", 5000)
            else:
                part.steps = params.get("steps", 100)
        return attack
    raise ValueError(name)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cifar10", type=Path, required=True, help="CIFAR-10 in ImageFolder layout")
    parser.add_argument("--preset", default="cifar10-cpu")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--weights", type=Path, help="a run's .model.safetensors (trained by this preset)")
    parser.add_argument("--epochs", type=int, help="train the model this many epochs instead of the preset's "
                        "(the standard preset's 200 take long; attack cost depends on how many images the model "
                        "gets right, so say which)")
    parser.add_argument("--attacks", default="", help="comma-separated subset of the preset's attacks")
    args = parser.parse_args()
    device = resolve_device(args.device)
    protocol = preset(args.preset).with_overrides(dataset=f"imagefolder:{args.cifar10}", epochs=args.epochs)
    data, _ = load_protocol_data(protocol, device=device, data_root=None, cache_dir=Path.home() / ".cache" /
                                 "coreset-bench")
    if args.weights:
        from safetensors.torch import load_file

        model = data.build_model(protocol.model, seed=0)
        model.load_state_dict(load_file(args.weights))
        model = model.to(device, memory_format=torch.channels_last).eval()
    else:
        half = np.random.default_rng(0).permutation(len(data.pool_labels))[: len(data.pool_labels) // 2]
        model = train_on_selection(data=data, selection=Selection(np.sort(half)), protocol=protocol, seed=0)["model"]
    images, labels = data.test_images, data.test_labels
    batch = default_batch_size(model, device, tuple(images.shape[1:]))
    right = np.flatnonzero(clean_predictions(model, images, batch) == labels.cpu().numpy())
    index = torch.as_tensor(right, device=device)
    x, y = to_float(images[index]).contiguous(), labels[index]
    scale = 1000 / len(images)
    chosen = [s for s in args.attacks.split(",") if s] or [spec.name for spec in protocol.attacks]
    # warm-up at every batch shape the harness's attacks use on this device, so that the attack timed first
    # does not pay for kernel selection and lazy CUDA loading: on an H100 the first passes at new batch sizes
    # took seconds each (docs/gpu.md), a cost a run pays once, which the library's fixed-size batches pay
    # for one size only
    sizes = sorted({bucket_size(n) for n in range(1, batch + 1)}) if pads_batches(x) else [batch]
    warm_up = time.perf_counter()
    for size in sizes:
        losses_and_gradient(model, x[:size], y[:size])
    if device.type == "cuda":
        torch.cuda.synchronize()
    warm_up = time.perf_counter() - warm_up
    print(f"{device.type}, {torch.get_num_threads()} threads; {protocol.model}; {len(images)} test images, "
          f"{len(right)} correct when clean; batch {batch}; warm-up at {len(sizes)} batch sizes {warm_up:.1f} s")
    print("| attack | eps | this benchmark s / 1,000 images | robust % | library | library s / 1,000 images | "
          "robust % | ratio |")
    print("|---|---|---|---|---|---|---|---|")
    for spec in protocol.suite():
        if spec.name not in chosen:
            continue
        attack = create_attack(spec.name, spec.params)
        started = time.perf_counter()
        robust = np.zeros((len(spec.eps), len(right)), dtype=bool)
        for start in range(0, len(right), batch):
            generators = [torch.Generator(device=device).manual_seed(start + i) for i in range(len(spec.eps))]
            outcomes = attack.perturb_grid(model, x[start:start + batch], y[start:start + batch], list(spec.eps),
                                           generators=generators)
            for i, outcome in enumerate(outcomes):
                robust[i, start:start + batch] = outcome.robust.cpu().numpy()
        ours = time.perf_counter() - started
        started = time.perf_counter()
        theirs_robust = np.zeros_like(robust)
        for i, eps in enumerate(spec.eps):
            library = library_attack(spec.name, spec.params, model, eps, data.num_classes)
            for start in range(0, len(right), batch):
                adversarial = library(x[start:start + batch], y[start:start + batch])
                with torch.no_grad():
                    theirs_robust[i, start:start + batch] = (model(adversarial).argmax(1) ==
                                                             y[start:start + batch]).cpu().numpy()
        theirs = time.perf_counter() - started
        eps_text = ", ".join(f"{e * 255:g}" if attack.threat == "Linf" else f"{e:g}" for e in spec.eps)
        ours_acc = ", ".join(f"{100 * r.sum() / len(images):.1f}" for r in robust)
        theirs_acc = ", ".join(f"{100 * r.sum() / len(images):.1f}" for r in theirs_robust)
        unit = "/255" if attack.threat == "Linf" else ""
        print(f"| {spec.name} | {eps_text}{unit} | {ours * scale:.1f} | {ours_acc} "
              f"| {type(library).__name__} | {theirs * scale:.1f} | {theirs_acc} | {theirs / ours:.1f}x |")


if __name__ == "__main__":
    main()
