"""Run records: one JSON file per run, written atomically (temporary file, fsync, then rename), so a
killed run leaves either the whole record or none. Every other file the harness writes goes the same way."""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import platform
import re
import socket
import tempfile
from pathlib import Path

import numpy as np
import torch

import benchmark

SCHEMA = "coreset-bench/run/1"


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


def record_path(out: Path, *, method: str, dataset: str, model: str, fraction: float, seed: int, key: str) -> Path:
    """The file name names the run; `key` hashes the protocol settings and the method's parameters."""
    return Path(out) / f"{slug(method)}__{slug(dataset)}__{slug(model)}__f{fraction:g}__s{seed}__{key}.json"


def indices_sha256(indices: np.ndarray) -> str:
    return hashlib.sha256(np.sort(np.asarray(indices, dtype=np.int64)).tobytes()).hexdigest()


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # what open() would give; mkstemp's own 0600 would hide records from a shared group


WRITER = f"{slug(socket.gethostname()).replace('.', '-')}-{os.getpid()}"  # host and process, in temporary names
_TEMPORARY = re.compile(r"\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.tmp")


def remove_stale_temporaries(*folders: Path) -> int:
    """Deletes the temporary files that writers on this host left when killed mid-write; a live writer's
    (another sweep's, a Ray task's) are left alone. Returns how many were deleted."""
    host = WRITER.rsplit("-", 1)[0]
    removed = 0
    for folder in folders:
        for path in Path(folder).rglob(".*.tmp") if Path(folder).is_dir() else ():
            match = _TEMPORARY.fullmatch(path.name)
            if match and match["host"] == host and not _running(int(match["pid"])):
                path.unlink(missing_ok=True)
                removed += 1
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _atomic_write(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{WRITER}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            write(stream)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temporary, FILE_MODE)
        os.replace(temporary, path)
    except OSError as error:
        Path(temporary).unlink(missing_ok=True)
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error  # name the file
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def ensure_writable(directory: Path) -> None:
    """Fails before any work when records could not be written there (read-only, no permission, full)."""
    from benchmark.errors import UserError

    existing = Path(directory).absolute()
    while not existing.exists():  # probe where the folder would be made, without making it yet
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, "not a directory", str(existing))
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".write-probe.", suffix=".tmp")
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        raise UserError(f"cannot write records to {directory}: {error.strerror or error}; pass a writable "
                        f"--out") from None


def write_json(value: dict, path: Path) -> None:
    _atomic_write(Path(path), lambda stream: stream.write((json.dumps(value, indent=2) + "\n").encode()))


def write_arrays(path: Path, **arrays: np.ndarray) -> None:
    _atomic_write(Path(path), lambda stream: np.savez_compressed(stream, **arrays))


def write_torch(value, path: Path) -> None:
    """torch.save, atomically: checkpoints and cached proxies are whole or absent after a kill."""
    _atomic_write(Path(path), lambda stream: torch.save(value, stream))


def environment(device: torch.device) -> dict:
    import timm
    import torchattacks
    import torchvision

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    return {"package": benchmark.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "torchvision": torchvision.__version__, "timm": timm.__version__,
            "torchattacks": torchattacks.__version__, "device": f"{device.type}: {name}"}


def now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
