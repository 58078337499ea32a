"""`python -m benchmark attack RECORDS --attack NAME --eps ...`: re-measures stored models with any registered
attack, without retraining, and adds the results to their records.

Everything is checked before anything runs (nothing is written when a check fails): the records are valid
records with stored weights that match the record's hash, the attack and its parameters are valid, eps is within
the norm's range, the test set loaded now is the one the run used (its hash), and the model attacked is the
model trained: its clean predictions now are the record's, image by image. Each record is then rewritten
atomically, under a lock on its folder, from its current content on disk (so two `attack` calls on one folder
both land): the new entries replace earlier ones of the same attack, parameters and eps, the worst case and
the sanity checks are recomputed over everything it holds, and a line goes to `reevaluations`. Records that
already hold the results are skipped, so an interrupted call resumes."""

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
from benchmark.evaluation import merge, reevaluate
from benchmark.progress import progress
from benchmark.record import AttackSpec, Record, Reevaluation, eps_text
from benchmark.records import LOCK, now, write_record
from benchmark.run import resolve_device
from benchmark.schema import load_records
from benchmark.storage import file_lock, read_regular, read_weights

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
             cross_check_images: int | None = None, force: bool = False,
             max_prediction_changes: int = 0) -> ReattackResult:
    """`eps` in [0, 1] pixel units (`benchmark.record.parse_eps` reads the command line's)."""
    built = create_attack(attack, params)
    if not eps:
        raise UserError("no eps given: pass --eps, e.g. 1/255,2/255,4/255 for L-infinity attacks")
    if any(not math.isfinite(e) or e < 0 for e in eps) or len(set(eps)) != len(eps):
        raise UserError(f"eps values must be distinct, finite and non-negative, got "
                        f"{', '.join(eps_text(e, built.threat) for e in eps)}")
    if cross_check_images is not None and cross_check_images < 0:
        raise UserError("--cross-check-images must be 0 or more")
    if built.threat == "Linf" and max(eps) > 1:
        raise UserError(f"--eps: {eps_text(max(eps))} is beyond the largest L-infinity perturbation (255/255)")
    if eval_batch_size is not None and eval_batch_size < 1:
        raise UserError(f"--eval-batch-size must be at least 1, got {eval_batch_size}")
    if max_prediction_changes < 0:
        raise UserError(f"--max-prediction-changes must be 0 or more, got {max_prediction_changes}")
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
    models = {}
    for item in todo:  # every test set, model and clean prediction is checked before any record is touched
        record = item.record
        key = _test_key(record)
        if key not in loaded:
            loaded[key] = _test_set(record, dataset, data_root, cache_dir, resolved)
        images, labels, num_classes = loaded[key]
        if test_sha256(images, labels) != record.evaluation.test_sha256:
            raise UserError(f"{item.path}: the test set loaded now differs from the one the run used (its hash "
                            f"does not match); point --dataset / --data-root at the data the run had")
        if built.threat == "L2" and max(eps) > math.sqrt(images[0].numel()):
            raise UserError(f"--eps: an L2 eps of {max(eps):g} is beyond the largest possible perturbation of these "
                            f"images ({math.sqrt(images[0].numel()):.4g}, every pixel from 0 to 1)")
        model = _model(record, weights.pop(item.path), images, num_classes, resolved)
        _same_clean_predictions(item.path, record, model, images, labels, max_prediction_changes)
        models[item.path] = model
    for item in progress(todo, desc=f"{attack} on stored models", unit="record"):
        record = item.record
        images, labels, _ = loaded[_test_key(record)]
        added = reevaluate(record, models.pop(item.path), images, labels, spec, batch_size=eval_batch_size,
                           cross_check_images=cross_check_images if cross_check_images is not None
                           else record.evaluation.cross_check_images)
        line = Reevaluation(attack=spec.name, params=dataclasses.asdict(built), eps=spec.eps,
                            package=benchmark.__version__, created=now())
        with file_lock(item.path.parent / LOCK):  # another `attack` or `run` on this folder waits: no lost update
            current = Record.parse(read_regular(item.path).decode("utf-8"))
            if current.run_key() != record.run_key():
                raise UserError(f"{item.path} was replaced by another run's record while it was attacked; run the "
                                f"command again")
            updated = merge(current, added)
            updated = dataclasses.replace(updated, reevaluations=(updated.reevaluations or ()) + (line,))
            write_record(updated, item.path)
        result.updated.append(item.path)
        result.accuracies[item.path] = [a.accuracy for a in updated.attacks
                                        if a.name == attack and a.params == spec.params]
    return result


def _same_clean_predictions(path: Path, record: Record, model, images, labels, allowed: int) -> None:
    """The model attacked is the model trained: its clean predictions now (in the record's own batch size, so in
    the same batches) must be the record's, image by image."""
    from benchmark.evaluation import clean_predictions

    now_right = clean_predictions(model, images, record.evaluation.batch_size) == labels.cpu().numpy()
    changed = int((now_right != record.clean_mask()).sum())
    if changed > allowed:
        raise UserError(f"{path}: the stored weights classify {changed} of {len(now_right)} test images differently "
                        f"from the run this record measured (its clean_correct): they are not that model, or this "
                        f"machine computes differently (another CPU or thread count; --max-prediction-changes N "
                        f"allows N); nothing was written")


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
    missing = [name for name in ("mean", "std") if name not in state]
    if missing:
        raise UserError(f"the stored weights of {record.model} lack the input normalisation ({', '.join(missing)}): "
                        f"they were not written by coreset-bench; re-run that run")
    if info.num_classes != num_classes:
        raise UserError(f"the stored model has {info.num_classes} classes, the dataset {num_classes}")
    model = build_model(record.model, num_classes, state["mean"].flatten(), state["std"].flatten(), seed=0,
                        image_size=info.image_size)
    try:
        model.load_state_dict(state)
    except RuntimeError as error:
        raise UserError(f"the stored weights do not fit {record.model}: {str(error).splitlines()[0]}") from None
    return prepare(model, device).eval()
