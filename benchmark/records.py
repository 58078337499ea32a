"""Record files on disk: their names, the files beside them, the provenance a run states, and the atomic write.
The record itself is `benchmark.record.Record`. Importing this module does not import torch: the leaderboard
reads records with only the pages' dependencies installed."""

from __future__ import annotations

import datetime
import hashlib
import json
import platform
from pathlib import Path

import benchmark
from benchmark.record import SCHEMA, Record
from benchmark.storage import atomic_write, slug

__all__ = ["SCHEMA", "artifact_path", "environment", "indices_sha256", "now", "record_path", "write_json",
           "write_record"]


def record_path(out: Path, *, method: str, dataset: str, model: str, fraction: float, seed: int, key: str) -> Path:
    """The file name names the run; `key` hashes the protocol settings and the method's parameters."""
    return Path(out) / f"{slug(method)}__{slug(dataset)}__{slug(model)}__f{fraction:g}__s{seed}__{key}.json"


def artifact_path(record: Path, kind: str) -> Path:
    """A file that belongs to a record: selection (.selection.npz), model (.model.safetensors), gallery."""
    suffix = {"selection": ".selection.npz", "model": ".model.safetensors", "gallery": ".gallery.npz"}[kind]
    return record.with_name(record.stem + suffix)


def indices_sha256(indices) -> str:
    import numpy as np

    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()


def dumps(record: dict) -> str:
    return json.dumps(record, indent=2, allow_nan=False) + "\n"


def write_json(value: dict, path: Path) -> None:
    atomic_write(Path(path), dumps(value).encode("utf-8"))


def write_record(record: Record, path: Path) -> None:
    """Atomically; `Record.dumps` refuses a record its own schema would refuse."""
    atomic_write(Path(path), record.dumps().encode("utf-8"))


def environment(device, threads: int | None = None) -> dict:
    import timm
    import torch
    import torchattacks
    import torchvision

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"package": benchmark.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "torchattacks": torchattacks.__version__, "device": device.type, "device_name": name,
            "threads": threads if threads is not None else torch.get_num_threads()}


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux (platform.processor() there is only the architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
