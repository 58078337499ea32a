"""Records shaped as the harness writes them, for the schema, leaderboard and export tests: version 1 (FGSM
only, `make_record`), version 2 (`make_record_v2`, the suite with per-image masks consistent with its
accuracies), version 3 (`make_record_v3`: and provenance, failed attacks), 4 (training methods) and 5 (radii,
clean accuracy on the whole test split), and a writer that names files after their run."""

import base64
import copy
import json
from pathlib import Path

import numpy as np

from benchmark.storage import slug

V1 = "coreset-bench/run/1"
V2 = "coreset-bench/run/2"
V4 = "coreset-bench/run/4"
EPS = [1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
PROTOCOL = {"preset": "smoke", "dataset": "digits", "model": "mobilenetv2_035", "epochs": 4, "lrs": [0.05],
            "eps": EPS, "proxy_epochs": 2, "proxy_lr": 0.05, "batch_size": 64, "momentum": 0.9, "nesterov": True,
            "weight_decay": 0.0005, "method_defaults": {}}


def make_record(method="random", *, fraction=0.1, seed=0, clean=0.5, fgsm=None, params=None, paper=None,
                pool_size=1000, seconds=0.25, protocol=None, url=None) -> dict:
    """A valid version-1 record; FGSM accuracies default to clean - 0.05 * (i + 1)."""
    protocol = copy.deepcopy(protocol or PROTOCOL)
    fgsm = fgsm if fgsm is not None else [round(clean - 0.05 * (i + 1), 6) for i in range(len(protocol["eps"]))]
    budget = max(1, min(pool_size, round(fraction * pool_size)))
    record = {
        "schema": V1, "method": method, "method_params": params or {},
        "paper": paper if paper is not None else f"{method} et al. 2020",
        "dataset": protocol["dataset"], "model": protocol["model"], "preset": protocol["preset"],
        "protocol": protocol, "fraction": fraction, "seed": seed, "budget": budget, "pool_size": pool_size,
        "selection": {"indices_sha256": "ab" * 32, "seconds": seconds, "weighted": False,
                      "artifact": f"{slug(str(method))}__f{fraction:g}__s{seed}.selection.npz"},
        "training": {"epochs": protocol["epochs"], "lr": 0.05, "lr_grid": [{"lr": 0.05, "validation_accuracy": 0.4}],
                     "optimizer": "SGD momentum 0.9, nesterov True, weight decay 0.0005, cosine schedule",
                     "batch_size": 64, "seconds": 3.0, "validation_accuracy": 0.4},
        "clean_accuracy": clean,
        "attacks": [{"name": "fgsm", "eps": eps, "accuracy": accuracy, "inhouse_accuracy": accuracy,
                     "max_abs_diff": 0.0} for eps, accuracy in zip(protocol["eps"], fgsm)],
        "environment": {"package": "0.1.0", "python": "3.11.2", "torch": "2.5.0", "device": "cpu: x86_64"},
        "created": "2026-01-02T03:04:05+00:00",
    }
    if url is not None:
        record["paper_url"] = url
    return record


def mask(count: int, size: int) -> str:
    """The first `count` of `size` images set, packed as the harness packs masks."""
    bits = np.zeros(size, dtype=bool)
    bits[:count] = True
    return base64.b64encode(np.packbits(bits).tobytes()).decode()


PROTOCOL_V2 = {**PROTOCOL, "preset": "cifar10-cpu", "dataset": "cifar10", "headline_eps": 2 / 255,
               "attacks": [{"name": "fgsm", "params": {}, "eps": []},
                           {"name": "pgd", "params": {"steps": 20, "rel_step": 2.5, "restarts": 1}, "eps": []}],
               "cross_check_images": 16, "train_per_class": 0, "test_per_class": 0, "precise_bn": False,
               "min_steps": 0, "balance": True}


def make_record_v2(method="random", *, fraction=0.1, seed=0, clean=0.5, fgsm=None, pgd=None, params=None,
                   paper=None, url="", pool_size=1000, test_size=200, seconds=0.25, protocol=None,
                   flags=None) -> dict:
    """A valid version-2 record with FGSM and PGD at the protocol's eps grid; accuracies default to clean -
    0.05 (i + 1) for FGSM and clean - 0.08 (i + 1) for PGD (floored at 0), and every mask agrees with them."""
    protocol = copy.deepcopy(protocol or PROTOCOL_V2)
    grid = protocol["eps"]
    fgsm = fgsm if fgsm is not None else [max(0.0, round(clean - 0.05 * (i + 1), 6)) for i in range(len(grid))]
    pgd = pgd if pgd is not None else [max(0.0, round(clean - 0.08 * (i + 1), 6)) for i in range(len(grid))]
    budget = max(1, min(pool_size, round(fraction * pool_size)))

    def count(accuracy):
        return round(accuracy * test_size)

    attacks = []
    for name, accuracies, params in (("fgsm", fgsm, {}), ("pgd", pgd, protocol["attacks"][1]["params"])):
        for eps, accuracy in zip(grid, accuracies):
            attacks.append({"name": name, "threat": "Linf", "eps": eps, "params": params,
                            "accuracy": count(accuracy) / test_size, "robust": mask(count(accuracy), test_size),
                            "cross_check": {"reference": "torchattacks.X (torchattacks 3.5.1)", "images": 16,
                                            "accuracy": 0.5, "reference_accuracy": 0.5, "disagreements": 0,
                                            "tolerance_points": 0.1, "tolerance_images": 0}})
    worst = [{"threat": "Linf", "eps": eps, "accuracy": count(min(f, p)) / test_size, "attacks": ["fgsm", "pgd"],
              "robust": mask(count(min(f, p)), test_size)} for eps, f, p in zip(grid, fgsm, pgd)]
    name = slug(str(method))
    return {
        "schema": V2, "method": method, "method_params": params or {},
        "paper": paper if paper is not None else f"{method} et al. 2020", "paper_url": url,
        "dataset": protocol["dataset"], "model": protocol["model"], "preset": protocol["preset"],
        "protocol": protocol, "fraction": fraction, "seed": seed, "budget": budget, "pool_size": pool_size,
        "selection": {"indices_sha256": "ab" * 32, "seconds": seconds, "proxy_training_seconds": 0.0,
                      "weighted": False, "artifact": f"{name}__f{fraction:g}__s{seed}.selection.npz"},
        "training": {"epochs": protocol["epochs"], "lr": 0.05, "lr_grid": [{"lr": 0.05, "validation_accuracy": 0.4}],
                     "optimizer": "SGD momentum 0.9, nesterov True, weight decay 0.0005, cosine schedule",
                     "batch_size": 64, "steps": 100, "seconds": 3.0, "validation_accuracy": 0.4},
        "model_weights": {"artifact": f"{name}__f{fraction:g}__s{seed}.model.safetensors", "sha256": "cd" * 32,
                          "format": "safetensors", "image_size": 32, "num_classes": 10},
        "clean_accuracy": count(clean) / test_size,
        "evaluation": {"test_size": test_size, "test_sha256": "ef" * 32, "clean_correct": mask(count(clean), test_size),
                       "batch_size": 128, "cross_check_images": 16, "seconds": {"total": 1.0}},
        "attacks": attacks,
        "worst_case": worst,
        "checks": [{"check": "worst-case", "attack": "", "passed": True, "detail": "0 image(s)"}],
        "flags": flags or [],
        "environment": {"package": "0.2.0", "python": "3.11.2", "torch": "2.5.0", "device": "cpu",
                        "device_name": "x86_64", "threads": 2},
        "created": "2026-01-02T03:04:05+00:00",
    }


V3 = "coreset-bench/run/3"


def make_record_v3(method="random", **given) -> dict:
    """A valid version-3 record: version 2's, with the provenance and the (empty) list of failed attacks a run
    now writes."""
    record = make_record_v2(method, **given)
    record["schema"] = V3
    record["environment"].update({"cpu": "x86_64 (family 6)", "cpu_capability": "AVX2", "git_commit": "a" * 40,
                                  "git_dirty": False})
    record["attack_failures"] = []
    return record


def make_record_v4(method="random", *, training: dict | None = None, monitor: list | None = None,
                   **given) -> dict:
    """A valid version-4 record: version 3's; with `training` (a training method's {"name", "params"}), an
    adversarially trained one, its lr chosen by validation robust accuracy and its guard's per-epoch `monitor`
    (default: three epochs of rising accuracies)."""
    record = make_record_v3(method, **given)
    record["schema"] = V4
    if training is not None:
        record["protocol"].update({"training": training, "adversarial_proxy": False, "monitor_images": 64})
        monitor = monitor if monitor is not None else [
            {"epoch": e, "clean": 0.3 + 0.1 * e, "fgsm": 0.2 + 0.1 * e, "pgd": 0.15 + 0.1 * e} for e in (1, 2, 3)]
        record["training"].update({"method": training, "step_size": 5 / 255, "monitor": monitor,
                                   "selected_by": "validation robust accuracy: PGD-10 at the training eps on 64 "
                                                  "held-out validation images"})
        for trial in record["training"]["lr_grid"]:
            trial["validation_robust_accuracy"] = 0.3
    return record


V5 = "coreset-bench/run/5"


def make_record_v5(method="random", *, full_test: tuple[int, int] | None = (10000, 4321), **given) -> dict:
    """A valid version-5 record: version 4's, with each test image's radius (the smallest eps of the grid at which
    its worst-case mask is clear; 0 when wrong clean, never fooled: none) and `full_test` (size, correct)."""
    record = make_record_v4(method, **given)
    record["schema"] = V5
    size = record["evaluation"]["test_size"]
    radii = np.full(size, 65535, dtype="<u2")
    for worst in sorted(record["worst_case"], key=lambda w: -w["eps"]):  # the smallest eps written last
        robust = np.unpackbits(np.frombuffer(base64.b64decode(worst["robust"]), dtype=np.uint8))[:size].astype(bool)
        radii[~robust] = int(np.ceil(round(worst["eps"] * 65535, 6)))
    clean = np.unpackbits(np.frombuffer(base64.b64decode(record["evaluation"]["clean_correct"]), dtype=np.uint8))
    radii[~clean[:size].astype(bool)] = 0
    record["evaluation"]["radii"] = base64.b64encode(radii.tobytes()).decode()
    if full_test is not None:
        record["protocol"].update({"test_per_class": 20, "full_test_clean": True})
        record["evaluation"]["full_test"] = {"size": full_test[0], "correct_images": full_test[1], "sha256": "12" * 32}
    return record


V6 = "coreset-bench/run/6"


def make_record_v6(method="random", *, runs_per_device: int | None = None, **given) -> dict:
    """A valid version-6 record: version 5's, with how many runs shared its device (absent: not stated)."""
    record = make_record_v5(method, **given)
    record["schema"] = V6
    if runs_per_device is not None:
        record["environment"]["runs_per_device"] = runs_per_device
    return record


def write_records(directory: Path, records: list[dict]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        # Hostile tests put any text in these fields: the file name must stay a legal one.
        name = f"{slug(str(record['method']))}__f{slug(str(record['fraction']))}__s{slug(str(record['seed']))}"
        if record["method_params"] and isinstance(record["method_params"], dict):
            name += "__" + slug(json.dumps(record["method_params"], sort_keys=True))
        path = directory / f"{name[:200]}.json"
        path.write_text(json.dumps(record, indent=2))
        paths.append(path)
    return paths
