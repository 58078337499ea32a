"""Evaluation, one stage of a run: a trained model and the test set in, the record's evaluation part out.
`evaluate` is entered once by `run_one` (every attack of the protocol's suite) and `reevaluate` once by the
`attack` verb (one more attack on a stored model, joined to what its record holds).

    suite (attacks, each cross-checked: `suite.py`) -> per-image outcomes (masks) -> worst case and sanity
    checks (`checks.py`) -> `Measured`, the parts of a `benchmark.record.Record`; a gallery (`gallery.py`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmark.errors import UserError, failure_line
from benchmark.evaluation import progress
from benchmark.evaluation.checks import (
    eps0_check,
    failure_flags,
    large_eps_check,
    mask_checks,
    report_check,
    run_flags,
    sanity_flags,
    worst_case,
)
from benchmark.evaluation.gallery import GALLERY_IMAGES, gallery_arrays, gallery_attack, gallery_positions
from benchmark.evaluation.suite import (
    AttackRefused,
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
    FullTest,
    Record,
    WorstCase,
    pack_mask,
    pack_radii,
    unpack_mask,
)

log = logging.getLogger("benchmark")
CLEAN_BATCH = 128  # clean predictions alone: the fastest batch on one CPU thread (docs/cpu-protocol.md)
__all__ = ["Added", "AttackRefused", "CrossCheckFailed", "Measured", "build", "clean_predictions", "cross_check",
           "default_batch_size", "evaluate", "merge", "reevaluate", "run_flags"]


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
             gallery: int = GALLERY_IMAGES, headline_eps: float = 8 / 255, test_sha256: str = "",
             cascade: bool = False, cross_check_eps: tuple[float, ...] | None = None,
             full_test: tuple[torch.Tensor, torch.Tensor, str] | None = None,
             saved: Path | None = None) -> Measured:
    """Clean accuracy, every attack of `suite` with its cross-check (at every eps, or at `cross_check_eps`), the
    radii, the worst case and the sanity checks, for uint8 test `images` (N x 3 x H x W) on the model's device;
    `full_test`: (images, labels, sha256) of the whole test split, classified clean only. `saved`: a folder
    where each attack's result is saved as it finishes, and found there again on a resume
    (`benchmark.evaluation.progress`)."""
    model.eval()
    started = time.perf_counter()
    batch_size = batch_size or default_batch_size(model, images.device, tuple(images.shape[1:]))
    predictions = clean_predictions(model, images, batch_size)
    clean_correct = predictions == labels.cpu().numpy()
    full = None
    if full_test is not None:
        full_images, full_labels, full_sha256 = full_test
        tick = time.perf_counter()
        correct = int((clean_predictions(model, full_images, CLEAN_BATCH) == full_labels.cpu().numpy()).sum())
        full = FullTest(size=len(full_labels), correct_images=correct, sha256=full_sha256,
                        seconds=time.perf_counter() - tick)
    clean_seconds = time.perf_counter() - started
    radii = np.where(clean_correct, np.inf, 0.0)
    checked = cross_check_positions(clean_correct, cross_check_images, seed)
    entries, checks, seconds, cross_seconds = [], [], {}, {}
    # a cascade's later attacks leave out the images fooled before: the gallery shows the first attack's
    shown_spec = (next(iter(suite), None) if cascade else gallery_attack(suite)) if gallery else None
    survivors: dict[tuple[str, float], np.ndarray] = {}  # (threat, eps) -> robust to every attack so far
    shown = None
    shown_positions = gallery_positions(predictions, labels.cpu().numpy(), gallery) if shown_spec else None
    right = np.flatnonzero(clean_correct)
    failures = []
    guard = WeightsGuard(model)
    settings = {"batch_size": batch_size, "cross_check_images": cross_check_images, "cascade": cascade,
                "cross_check_eps": list(cross_check_eps) if cross_check_eps is not None else None,
                "gallery": gallery, "headline_eps": headline_eps}
    resumed_seconds = 0.0  # of the attacks a resumed evaluation found finished
    for index, spec in enumerate(suite):
        identity = progress.identity(spec, weights=guard.digest, test_sha256=test_sha256, seed=seed,
                                     settings=settings)
        finished = progress.load(saved, index, identity) if saved is not None else None
        if finished is not None:
            log.info("%s: finished before this resume (%s)", spec.name, progress.path_of(saved, index).name)
            resumed_seconds += finished.seconds + finished.cross_check_seconds
        else:
            threat = build(spec).threat
            attacked = {eps: survivors[(threat, eps)] for eps in spec.eps} \
                if cascade and all((threat, eps) in survivors for eps in spec.eps) else None
            finished = _one_attack(model, images, labels, spec, clean_correct, seed=seed, batch_size=batch_size,
                                   checked=checked, shown=(shown_positions if spec is shown_spec else None),
                                   attacked=attacked, cross_check_eps=cross_check_eps, guard=guard, right=right,
                                   headline_eps=headline_eps)
            if saved is not None:
                progress.save(saved, index, identity, finished)
        checks += finished.checks
        if finished.failure is not None:
            failures.append(finished.failure)
            continue
        entries += finished.entries
        if finished.radii is not None:
            radii = np.minimum(radii, finished.radii)
        for entry in finished.entries:
            robust = unpack_mask(entry.robust, len(images))
            key = (entry.threat_model, entry.eps)
            survivors[key] = survivors[key] & robust if key in survivors else robust
        seconds[spec.name], cross_seconds[spec.name] = finished.seconds, finished.cross_check_seconds
        if finished.gallery is not None:
            shown = finished.gallery
    tick = time.perf_counter()
    working = [spec for spec in suite if spec.name not in {failure.name for failure in failures}]
    checks += large_eps_check(model, images, labels, working, clean_correct, seed=seed, batch_size=batch_size)
    linf = any(entry.threat_model == "Linf" for entry in entries)
    worst = worst_case(tuple(entries), clean_correct, radii if linf else None)
    checks += mask_checks(tuple(entries), worst, len(images))
    check_seconds = time.perf_counter() - tick
    evaluation = Evaluation(
        test_size=len(images), clean_correct=pack_mask(clean_correct), batch_size=batch_size,
        cross_check_images=int(len(checked)),
        seconds=EvaluationSeconds(clean=clean_seconds, checks=check_seconds, attacks=seconds,
                                  cross_checks=cross_seconds,
                                  total=time.perf_counter() - started + resumed_seconds),
        test_sha256=test_sha256, radii=pack_radii(radii) if linf else None, full_test=full)
    share = float(np.bincount(predictions).max() / len(images)) if len(images) else 0.0
    return Measured(float(clean_correct.mean()), evaluation, tuple(entries), worst, tuple(checks), share, shown,
                    tuple(failures))


def _one_attack(model, images, labels, spec: AttackSpec, clean_correct: np.ndarray, *, seed: int, batch_size: int,
                checked: np.ndarray, shown: np.ndarray | None, attacked: dict | None,
                cross_check_eps: tuple[float, ...] | None, guard: WeightsGuard, right: np.ndarray,
                headline_eps: float) -> progress.Finished:
    """One attack of the suite with its checks (and the gallery's arrays when it is the one shown), or its
    failure: an attack that fails is recorded as failed and the rest of the suite still runs."""
    checks = []
    try:
        result = _checked_attack(model, images, labels, spec, clean_correct, guard, right, checks, seed=seed,
                                 batch_size=batch_size, checked=checked, keep=shown, attacked=attacked,
                                 cross_check_eps=cross_check_eps)
    except Exception as error:
        failure = AttackFailure(name=spec.name, params=build(spec).params(), eps=tuple(spec.eps),
                                reason=_reason(spec, error))
        log.warning("WARNING: %s failed and is recorded as failed: %s", spec.name, failure.reason)
        return progress.Finished(checks=tuple(checks), failure=failure)
    gallery = gallery_arrays(model, images, labels, spec, result.kept, shown, headline_eps) \
        if shown is not None and len(shown) else None
    return progress.Finished(entries=result.entries, checks=tuple(checks), seconds=result.seconds,
                             cross_check_seconds=result.cross_check_seconds, radii=result.radii, gallery=gallery)


def _checked_attack(model, images, labels, spec: AttackSpec, clean_correct: np.ndarray, guard: WeightsGuard,
                    right: np.ndarray, checks: list, *, seed: int, **options):
    """`run_attack` under the weights guard, then its eps-0 and self-report checks, appended to `checks` as they
    are made (the suite keeps those made before a failure)."""
    with guard.watching(spec.name):
        result = run_attack(model, images, labels, spec, clean_correct, seed=seed, **options)
        checks += eps0_check(model, images, labels, result.attack, right, seed)
    checks.append(report_check(result))
    return result


class WeightsGuard:
    """Attacks must not change the model: its parameters and buffers are hashed before each attack and after it;
    a change fails that attack, and the weights (and eval mode) are put back before anything else runs."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.saved = {name: tensor.detach().clone() for name, tensor in model.state_dict().items()}
        self.digest = weights_digest(model)

    @contextlib.contextmanager
    def watching(self, name: str):
        changed = False
        try:
            yield
        finally:
            changed = weights_digest(self.model) != self.digest
            if changed:
                self.model.load_state_dict(self.saved)
            self.model.eval()
        if changed:
            raise AttackRefused(f"{name} changed the model's weights or buffers (they were put back; its results "
                                f"are not counted)")


def weights_digest(model: nn.Module) -> str:
    digest = hashlib.sha256()
    for name, tensor in model.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def _reason(spec: AttackSpec, error: Exception) -> str:
    """One line: the harness's own message (a cross-check that failed, a refused output), else the exception."""
    return str(error) if isinstance(error, UserError) else failure_line(spec.name, error)


@dataclass(frozen=True)
class Added:
    """What one more attack on a stored model adds to its record: its entries and its own checks."""

    spec: AttackSpec
    entries: tuple[AttackResult, ...]
    checks: tuple[Check, ...]
    radii: np.ndarray | None = None  # per test image, the smallest eps the attack fooled it at (`AttackRun.radii`)


def reevaluate(record: Record, model: nn.Module, images: torch.Tensor, labels: torch.Tensor, spec: AttackSpec, *,
               batch_size: int | None, cross_check_images: int) -> Added:
    """`spec` on the stored model of `record`, on the images its record says were right when clean (the caller
    has checked that the model still classifies them so), with its cross-check, eps-0 check and self-report."""
    clean_correct = record.clean_mask()
    batch_size = batch_size or default_batch_size(model, images.device, tuple(images.shape[1:]))
    checks = []
    measured = _checked_attack(model, images, labels, spec, clean_correct, WeightsGuard(model),
                               np.flatnonzero(clean_correct), checks, seed=record.seed, batch_size=batch_size,
                               checked=cross_check_positions(clean_correct, cross_check_images, record.seed))
    return Added(spec, measured.entries, tuple(checks), measured.radii)


def merge(record: Record, added: Added) -> Record:
    """`record` with `added` in it: its entries replace earlier ones of the same attack, parameters and eps; the
    worst case, the checks the masks decide, the flags and the failures are recomputed over everything held."""
    size = record.evaluation.test_size
    new = {entry.identity for entry in added.entries}
    entries = tuple(e for e in record.attacks if e.identity not in new) + added.entries
    evaluation = record.evaluation
    radii = evaluation.radii_array()
    if radii is not None and added.radii is not None:  # a radius is the smallest eps any attack fooled at
        radii = np.minimum(radii, added.radii)
        evaluation = dataclasses.replace(evaluation, radii=pack_radii(radii))
    worst = worst_case(entries, record.clean_mask(), radii)
    kept = tuple(c for c in record.checks or () if c.check in ("eps0", "large-eps", "self-report")
                 and c.attack != added.spec.name)
    checks = kept + added.checks + tuple(mask_checks(entries, worst, size))
    failures = tuple(f for f in record.attack_failures or () if not (f.name == added.spec.name
                                                                       and same_params(f.params, added.spec.params)))
    flags = tuple(f for f in record.flags or () if f.code not in ("sanity-check", "attack-failed")) \
        + sanity_flags(checks) + failure_flags(failures)
    return dataclasses.replace(record, evaluation=evaluation, attacks=entries, worst_case=worst, checks=checks,
                               flags=flags,
                               attack_failures=failures if record.attack_failures is not None else None)


def same_params(a: dict | None, b: dict | None) -> bool:
    return json.dumps(a or {}, sort_keys=True) == json.dumps(b or {}, sort_keys=True)
