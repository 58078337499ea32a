"""`python -m benchmark attack RECORDS --attack NAME --eps ...`: re-measures stored models with any registered
attack, without retraining, and adds the results to their records.

Everything is checked before anything runs (nothing is written when a check fails): the records are valid
version-2 records, their weights are there and match the record's hash, the attack and its parameters are
valid, and the test set loaded now is the one the run used (its hash). Each record is then rewritten
atomically with the new attack entries (replacing earlier ones of the same attack, parameters and eps), the
worst case and the sanity checks recomputed over everything it holds, and a line in `reevaluations`. Records
that already hold the results are skipped, so an interrupted call resumes."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

import benchmark
from benchmark.attacks import create_attack
from benchmark.data import test_sha256
from benchmark.errors import UserError
from benchmark.evaluation import reevaluate
from benchmark.progress import progress
from benchmark.record import AttackSpec, Record, Reevaluation, eps_text
from benchmark.records import now, write_record
from benchmark.run import resolve_device
from benchmark.schema import load_records
from benchmark.storage import read_weights

log = logging.getLogger("benchmark")


@dataclass
class ReattackResult:
    attack: str
    eps: list[float]
    threat: str = "Linf"
    updated: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)  # already held these results
    without_weights: list[Path] = field(default_factory=list)
    accuracies: dict[Path, list[float]] = field(default_factory=dict)

    def lines(self) -> list[str]:
        lines = [f"{path.name}: {self.attack} robust accuracy " + ", ".join(
                 f"{eps_text(e, self.threat)} {100 * a:.1f}%" for e, a in zip(self.eps, acc))
                 for path, acc in self.accuracies.items()]
        lines.append(f"{len(self.updated)} record(s) updated, {len(self.skipped)} already had these results"
                     + (f", {len(self.without_weights)} have no stored weights (schema 1 records: re-run them to "
                        f"re-attack)" if self.without_weights else ""))
        return lines


def _holds(record: Record, name: str, params: dict, eps: float) -> bool:
    return any(a.name == name and a.params == params and math.isclose(a.eps, eps, rel_tol=1e-9)
               for a in record.attacks)


def reattack(paths: list[Path], *, attack: str, eps: list[float], params: dict, dataset: str | None,
             data_root: Path | None, cache_dir: Path, device: str = "auto", eval_batch_size: int | None = None,
             cross_check_images: int | None = None, force: bool = False) -> ReattackResult:
    """`eps` in [0, 1] pixel units (`benchmark.record.parse_eps` reads the command line's)."""
    built = create_attack(attack, params)
    if not eps:
        raise UserError("no eps given: pass --eps, e.g. 1/255,2/255,4/255 for L-infinity attacks")
    if any(not math.isfinite(e) or e < 0 for e in eps) or len(set(eps)) != len(eps):
        raise UserError(f"eps values must be distinct, finite and non-negative, got "
                        f"{', '.join(eps_text(e, built.threat) for e in eps)}")
    if cross_check_images is not None and cross_check_images < 0:
        raise UserError("--cross-check-images must be 0 or more")
    eps = sorted(eps)
    spec = AttackSpec(attack, built.params(), tuple(eps))
    records = load_records(paths)
    result = ReattackResult(attack, eps, built.threat)
    todo = []
    for item in records:
        record = item.record
        if record.version == 1:
            result.without_weights.append(item.path)
        elif not force and all(_holds(record, attack, spec.params, e) for e in eps):
            result.skipped.append(item.path)
        else:
            todo.append(item)
    if not todo and not result.skipped:
        raise UserError(f"none of the {len(records)} record(s) has stored model weights (they are schema 1 "
                        f"records, written before weights were kept): re-run those runs to re-attack them")
    weights = {item.path: read_weights(item.record.artifact(item.path, "model"), item.record.model_weights.sha256)
               for item in todo}
    resolved = resolve_device(device)
    loaded: dict[str, tuple] = {}
    for item in todo:  # every test set is loaded and checked before any record is touched
        key = _test_key(item.record)
        if key not in loaded:
            loaded[key] = _test_set(item.record, dataset, data_root, cache_dir, resolved)
        if test_sha256(*loaded[key][:2]) != item.record.evaluation.test_sha256:
            raise UserError(f"{item.path}: the test set loaded now differs from the one the run used (its hash "
                            f"does not match); point --dataset / --data-root at the data the run had")
    for item in progress(todo, desc=f"{attack} on stored models", unit="record"):
        record = item.record
        images, labels, num_classes = loaded[_test_key(record)]
        model = _model(record, weights.pop(item.path), images, num_classes, resolved)
        updated = reevaluate(record, model, images, labels, spec, batch_size=eval_batch_size,
                             cross_check_images=cross_check_images if cross_check_images is not None
                             else record.evaluation.cross_check_images)
        line = Reevaluation(attack=spec.name, params=dataclasses.asdict(built), eps=spec.eps,
                            package=benchmark.__version__, created=now())
        updated = dataclasses.replace(updated, reevaluations=(updated.reevaluations or ()) + (line,))
        write_record(updated, item.path)
        result.updated.append(item.path)
        result.accuracies[item.path] = [a.accuracy for a in updated.attacks
                                        if a.name == attack and a.params == spec.params]
    return result


def _test_key(record: Record) -> str:
    return json.dumps([record.dataset, record.protocol.test_per_class or 0])


def _test_set(record: Record, dataset: str | None, data_root: Path | None, cache_dir: Path, device: torch.device):
    from benchmark.datasets import dataset_name, load_dataset

    spec = dataset or record.dataset
    if dataset_name(spec) != record.dataset:
        raise UserError(f"--dataset {spec} is {dataset_name(spec)!r}, but the records were run on "
                        f"{record.dataset!r}")
    if spec.startswith("imagefolder:") and not dataset:
        raise UserError(f"the records were run on a local folder ({record.dataset}): pass "
                        f"--dataset imagefolder:PATH with its path")
    loaded = load_dataset(spec, data_root=data_root, cache_dir=cache_dir)
    loaded = loaded.limited(0, record.protocol.test_per_class or 0)
    return loaded.test_images.to(device), loaded.test_labels.to(device), loaded.num_classes


def _model(record: Record, state: dict, images: torch.Tensor, num_classes: int, device: torch.device):
    from benchmark.models import build_model
    from benchmark.train import prepare

    info = record.model_weights
    if info.num_classes != num_classes:
        raise UserError(f"the stored model has {info.num_classes} classes, the dataset {num_classes}")
    model = build_model(record.model, num_classes, state["mean"].flatten(), state["std"].flatten(), seed=0,
                        image_size=info.image_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"the stored weights do not fit {record.model}: {str(error).splitlines()[0]}") from None
    return prepare(model, device).eval()
