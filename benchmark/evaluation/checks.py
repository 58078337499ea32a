"""What the per-image outcomes say about the model and the attacks: the worst case, the sanity checks against
gradient masking (recorded whether they pass or not, never "fixed"), and the flags of a run.

- Worst case: per threat model and eps, an image is robust only if right when clean and robust to every attack
  of the suite at that eps (L-infinity: and its radius, the smallest eps at which any attack fooled it, is
  above eps, so the worst case never rises with eps).
- Sanity checks: eps = 0 leaves every image as it is; a very large eps (64/255) leaves almost nothing robust; no
  iterative attack does worse than FGSM; accuracy does not rise with eps; the worst case is below each attack,
  image by image.
"""

from __future__ import annotations

import math

import numpy as np

from benchmark.attacks import Attack, available_attacks
from benchmark.evaluation.suite import batch, build, generator
from benchmark.record import (
    AttackFailure,
    AttackResult,
    AttackSpec,
    Check,
    Flag,
    WorstCase,
    eps_text,
    pack_mask,
    robust_beyond,
    unpack_mask,
)

LARGE_EPS = 64 / 255
LARGE_EPS_MAX_ACCURACY = 0.01  # "near 0": at most 1 % of the test set robust at 64/255
RISE_TOLERANCE = 0.001  # accuracy may rise by at most 0.1 points with eps, or be above FGSM by as much
EPS0_IMAGES = 4
FEW_STEPS = 20  # a final training with fewer optimizer steps than this is flagged


def worst_case(entries: tuple[AttackResult, ...], clean_correct: np.ndarray,
               radii: np.ndarray | None = None) -> tuple[WorstCase, ...]:
    """Per (threat, eps): robust only if clean-correct and robust to every attack that ran at that eps, and (with
    `radii`, L-infinity) not fooled by any perturbation within eps that an attack found at a larger eps."""
    grouped: dict[tuple[str, float], list[AttackResult]] = {}
    for entry in entries:
        grouped.setdefault((entry.threat_model, entry.eps), []).append(entry)
    rows = []
    for (threat, eps), members in sorted(grouped.items()):
        robust = clean_correct.copy()
        for entry in members:
            robust &= unpack_mask(entry.robust, len(clean_correct))
        if radii is not None and threat == "Linf":
            robust &= robust_beyond(radii, eps)
        rows.append(WorstCase(threat=threat, eps=eps, accuracy=float(robust.mean()),
                              attacks=tuple(entry.name for entry in members), robust=pack_mask(robust)))
    return tuple(rows)


REPORT_TOLERANCE = 0.005  # of the attacked images: float noise between two batch compositions, no more


def report_check(run) -> Check:
    """The harness reads every returned image itself; where the attack's own report differed (an image it said
    was robust that the model misclassifies, or the reverse) more often than float noise explains, its reports
    are wrong. The harness's reading is what counts either way."""
    worst = max(run.disagreements.values(), default=0)
    allowed = max(1, REPORT_TOLERANCE * run.attacked)
    return _check("self-report", worst <= allowed, f"the attack's own report differed from the model's reading of "
                  f"its images on at most {worst} of {run.attacked} image(s) per eps (at most {allowed:g} "
                  f"expected)", run.spec.name)


def _check(name: str, passed: bool, detail: str, attack: str = "") -> Check:
    return Check(check=name, attack=attack, passed=bool(passed), detail=detail)


def eps0_check(model, images, labels, attack: Attack, right: np.ndarray, seed: int) -> list[Check]:
    """At eps 0 an attack must leave every image as it is (and so fool none)."""
    sample = right[:EPS0_IMAGES]
    if attack.name == "autoattack" or not len(sample):
        return []  # a composite of a library's attacks; its APGD is the checked `apgd`
    x, y = batch(images, labels, sample)
    outcome = attack.perturb(model, x, y, 0.0, generator=generator(seed, "eps0", x.device))
    moved = float((outcome.adversarial - x).abs().max())
    fooled = int((~outcome.robust).sum())
    return [_check("eps0", moved == 0 and fooled == 0, f"at eps 0 the largest pixel change was {moved:g} and "
                   f"{fooled} of {len(sample)} clean-correct images were fooled", attack.name)]


def large_eps_check(model, images, labels, suite: list[AttackSpec], clean_correct: np.ndarray, *, seed: int,
                    batch_size: int) -> list[Check]:
    """At eps 64/255 (L-infinity) the strongest iterative attack of the suite must leave almost nothing."""
    names = {spec.name: spec for spec in suite}
    spec = next((names[n] for n in ("apgd", "pgd", "bim", "fgsm") if n in names), None)
    if spec is None:
        return []
    attack = build(spec)
    if attack.threat != "Linf":
        return []
    right = np.flatnonzero(clean_correct)
    robust = np.zeros(len(images), dtype=bool)
    for start in range(0, len(right), batch_size):
        positions = right[start:start + batch_size]
        x, y = batch(images, labels, positions)
        outcome = attack.perturb(model, x, y, LARGE_EPS, generator=generator(seed, f"large-eps/{start}", x.device))
        robust[positions] = outcome.robust.cpu().numpy()
    return [_check("large-eps", robust.mean() <= LARGE_EPS_MAX_ACCURACY,
                   f"{100 * robust.mean():.1f} % robust at eps {eps_text(LARGE_EPS)} (at most "
                   f"{100 * LARGE_EPS_MAX_ACCURACY:g} % expected)", spec.name)]


def mask_checks(entries: tuple[AttackResult, ...], worst: tuple[WorstCase, ...], size: int) -> list[Check]:
    """The checks the per-sample results alone decide: no iterative attack above FGSM, no rise with eps, and
    the worst case below every attack, image by image."""
    known = available_attacks()
    checks = []
    by_attack: dict[tuple, dict[float, AttackResult]] = {}
    for entry in entries:
        if not entry.cascaded:  # a cascaded entry is the running worst case, not the attack's own strength
            by_attack.setdefault((entry.name, entry.threat_model), {})[entry.eps] = entry
    fgsm = by_attack.get(("fgsm", "Linf"), {})
    for (name, threat), by_eps in by_attack.items():
        if name not in known or not known[name].iterative:
            continue
        if threat == "Linf":
            for eps in sorted(set(by_eps) & set(fgsm)):
                ours, single = unpack_mask(by_eps[eps].robust, size), unpack_mask(fgsm[eps].robust, size)
                missed = int((ours & ~single).sum())
                checks.append(_check("below-fgsm", ours.mean() <= single.mean() + RISE_TOLERANCE,
                                     f"at {eps_text(eps)}: {100 * ours.mean():.1f} % vs FGSM "
                                     f"{100 * single.mean():.1f} %; {missed} image(s) fooled by FGSM only", name))
        eps_values = sorted(by_eps)
        rises = [(a, b) for a, b in zip(eps_values, eps_values[1:])
                 if by_eps[b].accuracy > by_eps[a].accuracy + RISE_TOLERANCE]
        checks.append(_check("monotone", not rises, "accuracy falls or stays as eps grows" if not rises else
                             "; ".join(f"rises from {100 * by_eps[a].accuracy:.1f} % at {eps_text(a, threat)} to "
                                       f"{100 * by_eps[b].accuracy:.1f} % at {eps_text(b, threat)}"
                                       for a, b in rises), name))
    worst_by = {(w.threat, w.eps): unpack_mask(w.robust, size) for w in worst}
    violations = sum(int((worst_by[(e.threat_model, e.eps)] & ~unpack_mask(e.robust, size)).sum()) for e in entries)
    checks.append(_check("worst-case", violations == 0, f"{violations} image(s) robust in the worst case but "
                         f"fooled by some attack"))
    return checks


def chance_threshold(num_classes: int, test_size: int) -> float:
    """Clean accuracy at or below which a model is indistinguishable from guessing: chance plus three binomial
    standard deviations of the test set's size."""
    chance = 1 / num_classes
    return chance + 3 * math.sqrt(chance * (1 - chance) / max(test_size, 1))


def run_flags(*, clean: float, num_classes: int, test_size: int, top_share: float, steps: int,
              checks: tuple[Check, ...], failures: tuple[AttackFailure, ...] = ()) -> tuple[Flag, ...]:
    """What is wrong with a run, loudly: near-chance models, one-class predictors, too few optimizer steps,
    failed sanity checks of the attacks (possible gradient masking), and attacks that failed (the worst case is
    then over the others only)."""
    flags = []
    threshold = chance_threshold(num_classes, test_size)
    if clean <= threshold:
        flags.append(Flag("chance-level", f"clean accuracy {100 * clean:.1f} % is within three standard deviations "
                          f"of chance ({100 / num_classes:.1f} %, threshold {100 * threshold:.1f} %)"))
    if top_share >= 0.9:
        flags.append(Flag("one-class", f"{100 * top_share:.0f} % of the test predictions are one class"))
    if steps < FEW_STEPS:
        flags.append(Flag("few-steps", f"the final training took {steps} optimizer steps (fewer than {FEW_STEPS})"))
    return tuple(flags) + sanity_flags(checks) + failure_flags(failures)


def failure_flags(failures: tuple[AttackFailure, ...]) -> tuple[Flag, ...]:
    """One flag naming every attack that failed (none when all ran)."""
    if not failures:
        return ()
    return (Flag("attack-failed", "; ".join(f"{f.name}: {f.reason}" for f in failures)
                 + " (the worst case is over the other attacks; `attack` can run it again)"),)


def sanity_flags(checks: tuple[Check, ...]) -> tuple[Flag, ...]:
    """One flag naming every failed sanity check of the attacks (none when all passed)."""
    failed = [c for c in checks if not c.passed]
    if not failed:
        return ()
    return (Flag("sanity-check", "; ".join(f"{c.check}{' (' + c.attack + ')' if c.attack else ''}: {c.detail}"
                                           for c in failed)),)

