"""Evaluation, one stage of a run: a trained model and the test set in, the record's evaluation part out.
`evaluate` is entered once by `run_one` (every attack of the protocol's suite) and `reevaluate` once by the
`attack` verb (one more attack on a stored model, joined to what its record holds).

    suite (attacks, each cross-checked: `suite.py`) -> per-image outcomes (masks) -> worst case and sanity
    checks (`checks.py`) -> `Measured`, the parts of a `benchmark.record.Record`; a gallery (`gallery.py`).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError, failure_line
from benchmark.evaluation.checks import (
    eps0_check,
    failure_flags,
    large_eps_check,
    mask_checks,
    run_flags,
    sanity_flags,
    worst_case,
)
from benchmark.evaluation.gallery import GALLERY_IMAGES, gallery_arrays, gallery_attack
from benchmark.evaluation.suite import (
    CrossCheckFailed,
    build,
    clean_predictions,
    cross_check,
    cross_check_positions,
    default_batch_size,
    run_attack,
)
from benchmark.record import (
    AttackFailure,
    AttackResult,
    AttackSpec,
    Check,
    Evaluation,
    EvaluationSeconds,
    Record,
    WorstCase,
    pack_mask,
)

log = logging.getLogger("benchmark")
__all__ = ["CrossCheckFailed", "Measured", "build", "clean_predictions", "cross_check", "default_batch_size",
           "evaluate", "reevaluate", "run_flags"]


@dataclass(frozen=True)
class Measured:
    """What evaluation adds to a record, and the arrays of its gallery (None without one)."""

    clean_accuracy: float
    evaluation: Evaluation
    attacks: tuple[AttackResult, ...]
    worst_case: tuple[WorstCase, ...]
    checks: tuple[Check, ...]
    top_prediction_share: float
    gallery: dict | None
    failures: tuple[AttackFailure, ...] = ()


def evaluate(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, suite: list[AttackSpec], *,
             seed: int, batch_size: int | None = None, cross_check_images: int = 16,
             gallery: int = GALLERY_IMAGES, test_sha256: str = "") -> Measured:
    """Clean accuracy, every attack of `suite` with its cross-check, the worst case and the sanity checks, for
    uint8 test `images` (N x 3 x H x W) on the model's device."""
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
    right = np.flatnonzero(clean_correct)
    failures = []
    for spec in suite:
        try:
            result = run_attack(model, images, labels, spec, clean_correct, seed=seed, batch_size=batch_size,
                                checked=checked, keep=gallery if spec is shown_spec else 0)
            checks += eps0_check(model, images, labels, result.attack, right, seed)
        except Exception as error:  # one attack's failure is recorded; the rest of the suite still runs
            failures.append(AttackFailure(name=spec.name, params=build(spec).params(), eps=tuple(spec.eps),
                                          reason=_reason(spec, error)))
            log.warning("WARNING: %s failed and is recorded as failed: %s", spec.name, failures[-1].reason)
            continue
        entries += result.entries
        seconds[spec.name], cross_seconds[spec.name] = result.seconds, result.cross_check_seconds
        if spec is shown_spec:
            shown = gallery_arrays(model, images, labels, spec, result.kept)
    tick = time.perf_counter()
    working = [spec for spec in suite if spec.name not in {failure.name for failure in failures}]
    checks += large_eps_check(model, images, labels, working, clean_correct, seed=seed, batch_size=batch_size)
    worst = worst_case(tuple(entries), clean_correct)
    checks += mask_checks(tuple(entries), worst, len(images))
    check_seconds = time.perf_counter() - tick
    evaluation = Evaluation(
        test_size=len(images), clean_correct=pack_mask(clean_correct), batch_size=batch_size,
        cross_check_images=int(len(checked)),
        seconds=EvaluationSeconds(clean=clean_seconds, checks=check_seconds, attacks=seconds,
                                  cross_checks=cross_seconds, total=time.perf_counter() - started),
        test_sha256=test_sha256)
    share = float(np.bincount(predictions).max() / len(images)) if len(images) else 0.0
    return Measured(float(clean_correct.mean()), evaluation, tuple(entries), worst, tuple(checks), share, shown,
                    tuple(failures))


def _reason(spec: AttackSpec, error: Exception) -> str:
    """One line: the harness's own message (a cross-check that failed, a refused output), else the exception."""
    return str(error) if isinstance(error, UserError) else failure_line(spec.name, error)


def reevaluate(record: Record, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec, *,
               batch_size: int | None, cross_check_images: int) -> Record:
    """`record` with `spec`'s results added (replacing earlier ones of the same attack, parameters and eps), the
    worst case, the sanity checks and their flag recomputed over everything it holds."""
    size = record.evaluation.test_size
    clean_correct = record.clean_mask()
    batch_size = batch_size or default_batch_size(model, images.device, tuple(images.shape[1:]))
    measured = run_attack(model, images, labels, spec, clean_correct, seed=record.seed, batch_size=batch_size,
                          checked=cross_check_positions(clean_correct, cross_check_images, record.seed))
    new = {entry.identity for entry in measured.entries}
    entries = tuple(e for e in record.attacks if e.identity not in new) + measured.entries
    worst = worst_case(entries, clean_correct)
    kept = tuple(c for c in record.checks or () if c.check in ("eps0", "large-eps") and c.attack != spec.name)
    right = np.flatnonzero(clean_correct)
    checks = kept + tuple(eps0_check(model, images, labels, measured.attack, right, record.seed)) \
        + tuple(mask_checks(entries, worst, size))
    failures = tuple(f for f in record.attack_failures or () if not (f.name == spec.name
                                                                       and same_params(f.params, spec.params)))
    flags = tuple(f for f in record.flags or () if f.code not in ("sanity-check", "attack-failed")) \
        + sanity_flags(checks) + failure_flags(failures)
    return dataclasses.replace(record, attacks=entries, worst_case=worst, checks=checks, flags=flags,
                               attack_failures=failures if record.attack_failures is not None else None)


def same_params(a: dict | None, b: dict | None) -> bool:
    return json.dumps(a or {}, sort_keys=True) == json.dumps(b or {}, sort_keys=True)
