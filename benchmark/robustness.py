"""Robustness of a trained model under a suite of attacks, measured the way RobustBench counts it, cross-checked
and sanity-checked; the result is the record's `attacks`, `worst_case` and `checks`.

- An image counts as robust to an attack at an eps only if the model classifies it correctly when clean
  and under that attack. Every attack runs on the clean-correct images only (the others are not robust).
- Worst case: per threat model (norm) and eps, an image is robust only if no attack in the suite at that
  eps fooled it. Per-sample results are kept in the record (bit masks), so attacks added later can join.
- Cross-check: each attack at each eps, on `cross_check_images` clean-correct images (the same ones for
  every attack), is run in-house without its early stop and by its independent `reference` from the same
  random start; their accuracies on those images must agree within the attack's tolerance or the run fails.
- Sanity checks against gradient masking, recorded whether they pass or not (never "fixed"): eps = 0 leaves
  every image as it is; a very large eps (64/255) leaves almost nothing robust; no iterative attack does
  worse than FGSM; accuracy does not rise with eps; the worst case is below each attack, per sample.
"""

from __future__ import annotations

import base64
import logging
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from benchmark.attacks import Attack, LibraryView, bucket_floor, create_attack
from benchmark.errors import UserError
from benchmark.progress import progress
from benchmark.seeding import derive_seed, torch_generator
from benchmark.train import to_float

log = logging.getLogger("benchmark")
LARGE_EPS = 64 / 255
LARGE_EPS_MAX_ACCURACY = 0.01  # "near 0": at most 1 % of the test set robust at 64/255
RISE_TOLERANCE = 0.001  # accuracy may rise by at most 0.1 points with eps, or be above FGSM by as much
EPS0_IMAGES = 4
GALLERY_IMAGES = 6


class CrossCheckFailed(UserError):
    """An attack and its independent reference disagree beyond the tolerance: one of them is wrong."""


@dataclass(frozen=True)
class AttackSpec:
    """One attack of a suite: its registered name, its parameters and the eps values it runs at."""

    name: str
    params: dict = field(default_factory=dict)
    eps: tuple[float, ...] = ()

    def to_json(self) -> dict:
        return {"name": self.name, "params": dict(self.params), "eps": list(self.eps)}

    def build(self) -> Attack:
        return create_attack(self.name, self.params)


def pack(mask: np.ndarray) -> str:
    """A boolean mask as base64 of its packed bits (first image in the highest bit of the first byte)."""
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def unpack(text: str, size: int) -> np.ndarray:
    bits = np.unpackbits(np.frombuffer(base64.b64decode(text.encode("ascii"), validate=True), dtype=np.uint8))
    if len(bits) < size or bits[size:].any():
        raise ValueError(f"mask does not hold {size} images")
    return bits[:size].astype(bool)


def default_batch_size(model: nn.Module, device: torch.device, image_shape: tuple[int, ...]) -> int:
    """Images per attack batch, from the memory one image's forward and backward pass needs (measured with
    forward hooks on one image: every module output is kept for the backward pass, and gradients of the
    same size flow back) against a budget: 1 GiB on a CPU, a quarter of the GPU's memory. On a GPU it is rounded
    down to a size the attacks pad to (`bucket_floor`), so that a full batch is not padded."""
    sizes = []
    hooks = [module.register_forward_hook(lambda _m, _i, out: sizes.append(out.numel() * out.element_size())
                                          if torch.is_tensor(out) else None)
             for module in model.modules() if not list(module.children())]
    try:
        with torch.no_grad():
            model(torch.zeros(1, *image_shape, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    per_image = max(1, 3 * sum(sizes))
    budget = torch.cuda.get_device_properties(device).total_memory // 4 if device.type == "cuda" else 2 ** 30
    size = int(min(1024, max(8, budget // per_image)))
    return bucket_floor(size) if device.type == "cuda" else size


def _generator(seed: int, purpose: str, device: torch.device) -> torch.Generator:
    return torch_generator(seed, purpose, device=device)


def clean_predictions(model: nn.Module, images: torch.Tensor, batch_size: int) -> np.ndarray:
    predictions = np.zeros(len(images), dtype=np.int64)
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = to_float(images[start:start + batch_size]).contiguous()
            predictions[start:start + len(batch)] = model(batch).argmax(1).cpu().numpy()
    return predictions


def cross_check_positions(clean_correct: np.ndarray, count: int, seed: int) -> np.ndarray:
    """The clean-correct test images every attack is cross-checked on (seeded, the same for every attack)."""
    order = np.random.default_rng(derive_seed(seed, "cross-check-images")).permutation(np.flatnonzero(clean_correct))
    return np.sort(order[:count])


def run_attack(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec,
               clean_correct: np.ndarray, *, seed: int, batch_size: int, checked: np.ndarray,
               keep: int = 0) -> dict:
    """One attack of the suite at each of its eps on the clean-correct images, its cross-check, and its
    model-level sanity check (eps = 0). Returns {"entries": [...], "checks": [...], "seconds",
    "cross_check_seconds", "kept"}: `kept` maps eps to the adversarial images of the first `keep` test images
    (the clean image where it was wrong when clean), for the gallery."""
    attack = spec.build()
    right = np.flatnonzero(clean_correct)
    tick = time.perf_counter()
    robust = {eps: np.zeros(len(images), dtype=bool) for eps in spec.eps}
    kept = {eps: to_float(images[:keep]).contiguous() for eps in spec.eps}
    for start in progress(range(0, len(right), batch_size), desc=f"{spec.name} at {len(spec.eps)} eps",
                          unit="batch"):
        positions = right[start:start + batch_size]
        x, y = _batch(images, labels, positions)
        generators = [_generator(seed, f"attack/{spec.name}/{eps!r}/{start}", images.device) for eps in spec.eps]
        for eps, outcome in zip(spec.eps, attack.perturb_grid(model, x, y, list(spec.eps), generators=generators)):
            robust[eps][positions] = outcome.robust.cpu().numpy()
            shown = positions < keep
            if shown.any():
                kept[eps][torch.as_tensor(positions[shown], device=images.device)] = outcome.adversarial[
                    torch.as_tensor(shown, device=images.device)]
    seconds = time.perf_counter() - tick
    tick = time.perf_counter()
    entries = []
    for eps in spec.eps:
        entry = {"name": spec.name, "threat": attack.threat, "eps": eps, "params": attack.params(),
                 "accuracy": float(robust[eps].mean()), "robust": pack(robust[eps])}
        if len(checked):
            entry["cross_check"] = cross_check(model, attack, images, labels, checked, eps, seed)
        entries.append(entry)
    cross_seconds = time.perf_counter() - tick
    log.info("%s: %s (%.1f s; cross-check on %d images %.1f s)", spec.name,
             ", ".join(f"{eps * 255:g}/255 {100 * r.mean():.1f}%" for eps, r in robust.items()), seconds,
             len(checked), cross_seconds)
    return {"entries": entries, "checks": eps0_check(model, images, labels, attack, right, seed),
            "seconds": seconds, "cross_check_seconds": cross_seconds, "kept": kept}


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suite: list[AttackSpec], *,
             seed: int, batch_size: int | None = None, cross_check_images: int = 16,
             gallery: int = GALLERY_IMAGES) -> dict:
    """Clean accuracy, every attack of `suite` with its cross-check, the worst case and the sanity checks, for
    uint8 test `images` (N x 3 x H x W) on the model's device. Returns the record's fields, plus `gallery`
    (arrays for the record's gallery artifact)."""
    model.eval()
    started = time.perf_counter()
    batch_size = batch_size or default_batch_size(model, images.device, tuple(images.shape[1:]))
    predictions = clean_predictions(model, images, batch_size)
    clean_correct = predictions == labels.cpu().numpy()
    clean_seconds = time.perf_counter() - started
    checked = cross_check_positions(clean_correct, cross_check_images, seed)
    entries, checks, seconds, cross_seconds = [], [], {}, {}
    shown_spec = gallery_attack(suite) if gallery else None
    shown = None
    for spec in suite:
        result = run_attack(model, images, labels, spec, clean_correct, seed=seed, batch_size=batch_size,
                            checked=checked, keep=gallery if spec is shown_spec else 0)
        entries += result["entries"]
        checks += result["checks"]
        seconds[spec.name], cross_seconds[spec.name] = result["seconds"], result["cross_check_seconds"]
        if spec is shown_spec:
            shown = _gallery(model, images, labels, spec, result["kept"])
    tick = time.perf_counter()
    checks += large_eps_check(model, images, labels, suite, clean_correct, seed=seed, batch_size=batch_size)
    worst = worst_case(entries, clean_correct)
    checks += mask_checks(entries, worst, len(images))
    check_seconds = time.perf_counter() - tick
    return {
        "clean_accuracy": float(clean_correct.mean()),
        "evaluation": {
            "test_size": len(images), "clean_correct": pack(clean_correct), "batch_size": batch_size,
            "top_prediction_share": float(np.bincount(predictions).max() / len(images)) if len(images) else 0.0,
            "cross_check_images": int(len(checked)),
            "seconds": {"clean": clean_seconds, "checks": check_seconds, "attacks": seconds,
                        "cross_checks": cross_seconds, "total": time.perf_counter() - started},
        },
        "attacks": entries,
        "worst_case": worst,
        "checks": checks,
        "gallery": shown,
    }


def _batch(images: torch.Tensor, labels: torch.Tensor, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    index = torch.as_tensor(positions, device=images.device)
    return to_float(images[index]).contiguous(), labels[index]


def cross_check(model: nn.Module, attack: Attack, images: torch.Tensor, labels: torch.Tensor,
                positions: np.ndarray, eps: float, seed: int) -> dict:
    """The attack without early stop and its reference, from the same random start, on the same images."""
    x, y = _batch(images, labels, positions)
    start_seed = derive_seed(seed, f"cross-check/{attack.name}/{eps!r}") % 2 ** 31
    ours = attack.perturb(model, x, y, eps, generator=_generator_seeded(start_seed, x.device),
                          early_stop=False).final_correct
    devices = [x.device] if x.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(start_seed)
        adversarial = attack.reference_perturb(LibraryView(model), x, y, eps, seed=start_seed)
    model.eval()  # whatever mode the library left it in
    with torch.no_grad():
        theirs = model(adversarial.to(x.device)).argmax(1) == y
    ours_count, theirs_count = int(ours.sum()), int(theirs.sum())
    allowed = max(attack.tolerance_points / 100 * len(positions), attack.tolerance_images)
    reference = f"{attack.reference} ({_version(attack.reference)})"
    if abs(ours_count - theirs_count) > allowed + 1e-9:
        raise CrossCheckFailed(
            f"{attack.name} cross-check failed at eps={eps:.5f}: in-house {ours_count}/{len(positions)} robust, "
            f"{reference} {theirs_count}/{len(positions)} (tolerance {attack.tolerance_points:g} points or "
            f"{attack.tolerance_images} images)")
    return {"reference": reference, "images": len(positions), "accuracy": ours_count / len(positions),
            "reference_accuracy": theirs_count / len(positions), "disagreements": int((ours != theirs).sum()),
            "tolerance_points": attack.tolerance_points, "tolerance_images": attack.tolerance_images}


def _generator_seeded(seed: int, device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _version(reference: str) -> str:
    import importlib.metadata

    package = {"torchattacks": "torchattacks", "pyautoattack": "pyautoattack"}.get(reference.split(".")[0])
    try:
        return f"{package} {importlib.metadata.version(package)}" if package else "unknown version"
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def worst_case(entries: list[dict], clean_correct: np.ndarray) -> list[dict]:
    """Per (threat, eps): robust only if clean-correct and robust to every attack that ran at that eps."""
    grouped: dict[tuple[str, float], list[dict]] = {}
    for entry in entries:
        grouped.setdefault((entry["threat"], entry["eps"]), []).append(entry)
    rows = []
    for (threat, eps), members in sorted(grouped.items()):
        robust = clean_correct.copy()
        for entry in members:
            robust &= unpack(entry["robust"], len(clean_correct))
        rows.append({"threat": threat, "eps": eps, "accuracy": float(robust.mean()),
                     "attacks": [entry["name"] for entry in members], "robust": pack(robust)})
    return rows


def _check(name: str, passed: bool, detail: str, attack: str = "") -> dict:
    return {"check": name, "attack": attack, "passed": bool(passed), "detail": detail}


def eps0_check(model, images, labels, attack: Attack, right: np.ndarray, seed: int) -> list[dict]:
    """At eps 0 an attack must leave every image as it is (and so fool none)."""
    sample = right[:EPS0_IMAGES]
    if attack.name == "autoattack" or not len(sample):
        return []  # a composite of a library's attacks; its APGD is the checked `apgd`
    x, y = _batch(images, labels, sample)
    outcome = attack.perturb(model, x, y, 0.0, generator=_generator(seed, "eps0", x.device))
    moved = float((outcome.adversarial - x).abs().max())
    fooled = int((~outcome.robust).sum())
    return [_check("eps0", moved == 0 and fooled == 0, f"at eps 0 the largest pixel change was {moved:g} and "
                   f"{fooled} of {len(sample)} clean-correct images were fooled", attack.name)]


def large_eps_check(model, images, labels, suite: list[AttackSpec], clean_correct: np.ndarray, *, seed: int,
                    batch_size: int) -> list[dict]:
    """At eps 64/255 (L-infinity) the strongest iterative attack of the suite must leave almost nothing."""
    names = {spec.name: spec for spec in suite}
    spec = next((names[n] for n in ("apgd", "pgd", "bim", "fgsm") if n in names), None)
    if spec is None:
        return []
    attack = spec.build()
    if attack.threat != "Linf":
        return []
    right = np.flatnonzero(clean_correct)
    robust = np.zeros(len(images), dtype=bool)
    for start in range(0, len(right), batch_size):
        positions = right[start:start + batch_size]
        x, y = _batch(images, labels, positions)
        outcome = attack.perturb(model, x, y, LARGE_EPS, generator=_generator(seed, f"large-eps/{start}", x.device))
        robust[positions] = outcome.robust.cpu().numpy()
    return [_check("large-eps", robust.mean() <= LARGE_EPS_MAX_ACCURACY,
                   f"{100 * robust.mean():.1f} % robust at eps 64/255 (at most {100 * LARGE_EPS_MAX_ACCURACY:g} % "
                   f"expected)", spec.name)]


def mask_checks(entries: list[dict], worst: list[dict], size: int) -> list[dict]:
    """The checks the per-sample results alone decide: no iterative attack above FGSM, no rise with eps, and
    the worst case below every attack, image by image."""
    from benchmark.attacks import available_attacks

    known = available_attacks()
    checks = []
    by_attack: dict[tuple, dict[float, dict]] = {}
    for entry in entries:
        by_attack.setdefault((entry["name"], entry["threat"]), {})[entry["eps"]] = entry
    fgsm = by_attack.get(("fgsm", "Linf"), {})
    for (name, threat), by_eps in by_attack.items():
        if name not in known or not known[name].iterative:
            continue
        if threat == "Linf":
            for eps in sorted(set(by_eps) & set(fgsm)):
                ours, single = unpack(by_eps[eps]["robust"], size), unpack(fgsm[eps]["robust"], size)
                missed = int((ours & ~single).sum())
                checks.append(_check("below-fgsm", ours.mean() <= single.mean() + RISE_TOLERANCE,
                                     f"at {eps * 255:g}/255: {100 * ours.mean():.1f} % vs FGSM "
                                     f"{100 * single.mean():.1f} %; {missed} image(s) fooled by FGSM only", name))
        eps_values = sorted(by_eps)
        rises = [(a, b) for a, b in zip(eps_values, eps_values[1:])
                 if by_eps[b]["accuracy"] > by_eps[a]["accuracy"] + RISE_TOLERANCE]
        checks.append(_check("monotone", not rises, "accuracy falls or stays as eps grows" if not rises else
                             "; ".join(f"rises from {100 * by_eps[a]['accuracy']:.1f} % at {a * 255:g}/255 to "
                                       f"{100 * by_eps[b]['accuracy']:.1f} % at {b * 255:g}/255" for a, b in rises),
                             name))
    worst_by = {(w["threat"], w["eps"]): unpack(w["robust"], size) for w in worst}
    violations = sum(int((worst_by[(e["threat"], e["eps"])] & ~unpack(e["robust"], size)).sum()) for e in entries)
    checks.append(_check("worst-case", violations == 0, f"{violations} image(s) robust in the worst case but "
                         f"fooled by some attack"))
    return checks


def gallery_attack(suite: list[AttackSpec]) -> AttackSpec | None:
    """The attack whose examples the gallery shows: the suite's first iterative L-infinity attack."""
    for spec in suite:
        attack = spec.build()
        if attack.iterative and attack.threat == "Linf":
            return spec
    return None


def _gallery(model, images, labels, spec: AttackSpec, kept: dict[float, torch.Tensor]) -> dict:
    """The first test images, clean and as the attack left them at two eps (the middle and the largest of its
    grid), with the model's predictions: the arrays of the record's gallery artifact."""
    eps_values = sorted(spec.eps)
    chosen = [eps_values[len(eps_values) // 2], eps_values[-1]] if len(eps_values) > 1 else eps_values
    count = len(next(iter(kept.values())))
    x, y = _batch(images, labels, np.arange(count))
    with torch.no_grad():
        shown = {"attack": spec.name, "eps": np.asarray(chosen, dtype=np.float64), "labels": y.cpu().numpy(),
                 "clean": images[:count].cpu().numpy(), "clean_predictions": model(x).argmax(1).cpu().numpy()}
        for i, eps in enumerate(chosen):
            shown[f"predictions_{i}"] = model(kept[eps]).argmax(1).cpu().numpy()
            shown[f"adversarial_{i}"] = (kept[eps] * 255).round().clamp(0, 255).to(torch.uint8).cpu().numpy()
    return shown
