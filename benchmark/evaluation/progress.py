"""A run's evaluation saved attack by attack in its partial state, so that a run stopped during its attacks (killed,
or at the end of a GPU window) resumes after the last attack that finished instead of from the first.

Each finished attack of the suite (or its failure) is one sealed file, `attack<i>.sealed`: its record entries,
checks, seconds, radii and gallery arrays, under the identity of what it was measured on (the attack, the model's
weights, the test set, the seed and the evaluation's settings). A file whose identity differs (the model was
trained again, the suite changed) is ignored and the attack runs again. On the CPU a resumed evaluation writes the
record an uninterrupted one writes: each attack draws from seeds of its own, and a cascade's later attacks read
the survivors from the saved entries.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.record import AttackFailure, AttackResult, AttackSpec, Check
from benchmark.storage import read_arrays_sealed, write_arrays_sealed

GALLERY = "gallery_"


@dataclass(frozen=True)
class Finished:
    """What one attack of the suite left: its entries and checks, or its failure."""

    entries: tuple[AttackResult, ...] = ()
    checks: tuple[Check, ...] = ()
    seconds: float = 0.0
    cross_check_seconds: float = 0.0
    failure: AttackFailure | None = None
    radii: np.ndarray | None = None
    gallery: dict | None = None


def path_of(folder: Path, index: int) -> Path:
    return Path(folder) / f"attack{index}.sealed"


def save(folder: Path, index: int, identity: dict, finished: Finished) -> None:
    meta = {"identity": identity, "attack_results": [entry.to_json() for entry in finished.entries],
            "attack_checks": [check.to_json() for check in finished.checks], "seconds": finished.seconds,
            "cross_check_seconds": finished.cross_check_seconds,
            "failure": finished.failure.to_json() if finished.failure else None}
    arrays = {"meta": np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)}
    if finished.radii is not None:
        arrays["radius_per_image"] = finished.radii
    for name, value in (finished.gallery or {}).items():
        arrays[GALLERY + name] = np.asarray(value)
    write_arrays_sealed(path_of(folder, index), **arrays)


def load(folder: Path, index: int, identity: dict) -> Finished | None:
    """The attack's saved result, or None when there is none for this identity (or it is damaged)."""
    path = path_of(folder, index)
    arrays = read_arrays_sealed(path) if path.exists() else None
    if arrays is None or "meta" not in arrays:
        return None
    try:
        meta = json.loads(arrays["meta"].tobytes().decode())
        if meta["identity"] != json.loads(json.dumps(identity, sort_keys=True)):
            return None
        gallery = {name[len(GALLERY):]: value for name, value in arrays.items() if name.startswith(GALLERY)}
        if "attack" in gallery:
            gallery["attack"] = str(gallery["attack"])
        return Finished(entries=tuple(AttackResult.from_json(entry) for entry in meta["attack_results"]),
                        checks=tuple(Check.from_json(check) for check in meta["attack_checks"]),
                        seconds=float(meta["seconds"]), cross_check_seconds=float(meta["cross_check_seconds"]),
                        failure=AttackFailure.from_json(meta["failure"]) if meta["failure"] else None,
                        radii=arrays.get("radius_per_image"), gallery=gallery or None)
    except (KeyError, TypeError, ValueError, UnicodeDecodeError):
        return None


def identity(spec: AttackSpec, *, weights: str, test_sha256: str, seed: int, settings: dict) -> dict:
    return {"attack": spec.to_json(), "weights": weights, "test_sha256": test_sha256, "seed": seed, **settings}
