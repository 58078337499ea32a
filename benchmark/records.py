"""Record files on disk: their names, the files beside them, the provenance a run states, and the atomic write.
The record itself is `benchmark.record.Record`. Importing this module does not import torch: the leaderboard
reads records with only the pages' dependencies installed."""

from __future__ import annotations

import datetime
import functools
import hashlib
import json
import os
import platform
import subprocess
from pathlib import Path

import benchmark
from benchmark.record import SCHEMA, Environment, Record
from benchmark.storage import atomic_write, slug

LOCK = ".coreset-bench.lock"  # in a record folder: `run` and `attack` write its records one at a time
__all__ = ["LOCK", "SCHEMA", "artifact_path", "environment", "indices_sha256", "now", "record_path", "write_json",
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


def environment(device, *, threads: int | None = None, peak_memory_mb: dict | None = None,
                runs_per_device: int | None = None) -> Environment:
    """What a run was made with: versions, the device, the CPU (model, family, the instruction set torch uses:
    CPU results differ between them), the checkout's git commit, threads, and how many runs shared the device."""
    import timm
    import torch
    import torchattacks
    import torchvision

    from benchmark.train import compile_mode

    cuda = device.type == "cuda"
    family = cpu_field("cpu family")
    commit, dirty = git_state()
    return Environment(
        package=benchmark.__version__, python=platform.python_version(), torch=torch.__version__,
        torchvision=torchvision.__version__, timm=timm.__version__, torchattacks=torchattacks.__version__,
        device=device.type, device_name=torch.cuda.get_device_name(device) if cuda else cpu_name(),
        threads=threads if threads is not None else torch.get_num_threads(), peak_memory_mb=peak_memory_mb,
        cuda=torch.version.cuda if cuda else None,
        cudnn=str(torch.backends.cudnn.version()) if cuda and torch.backends.cudnn.is_available() else None,
        cpu=f"{cpu_name()} (family {family})" if family else cpu_name(),
        cpu_capability=torch.backends.cpu.get_cpu_capability(), git_commit=commit, git_dirty=dirty,
        compile=compile_mode() if cuda else None, runs_per_device=runs_per_device)


@functools.cache
def git_state() -> tuple[str, bool | None]:
    """(commit, dirty) of the checkout this package runs from; CORESET_BENCH_GIT_COMMIT (and _DIRTY) stand in
    where the tree was copied without its .git (a device machine); ("unknown", None) outside a checkout."""
    if os.environ.get("CORESET_BENCH_GIT_COMMIT"):
        return os.environ["CORESET_BENCH_GIT_COMMIT"], os.environ.get("CORESET_BENCH_GIT_DIRTY", "") == "1"
    root = Path(benchmark.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown", None
    text = commit.stdout.strip()
    if commit.returncode or len(text) != 40:
        return "unknown", None
    return text, bool(status.stdout.strip()) if status.returncode == 0 else None


def cpu_field(key: str) -> str:
    """A field of /proc/cpuinfo's first processor ("" where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.split(":", 1)[0].strip() == key and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return ""


def cpu_name() -> str:
    """The CPU's model name: /proc/cpuinfo's on Linux (platform.processor() there is only the architecture)."""
    return cpu_field("model name") or platform.processor() or "unknown CPU"


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
