"""Every file the harness writes goes through here: atomically (temporary file, fsync, rename, so a kill leaves
the whole file or none), and every file it reads back is verified before it is used.

- Caches and partial state (proxies, decoded images, checkpoints, saved selections) are "sealed": a header
  line with the SHA-256 of the payload, then the payload (safetensors, numpy's npz without pickles, or a
  torch checkpoint loaded with weights_only). A damaged or foreign file fails the check and is recomputed;
  nothing read back can run code, whatever torch version is installed.
- Published artifacts (model weights next to a record) are plain safetensors files; their hash is in the
  record.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import re
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger("benchmark")
SEAL = b"coreset-bench sealed sha256="


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.+-]+", "-", text).strip("-")


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


FILE_MODE = _file_mode()  # what open() would give; mkstemp's own 0600 would hide records from a shared group
WRITER = f"{slug(socket.gethostname()).replace('.', '-')}-{os.getpid()}"  # host and process, in temporary names
_TEMPORARY = re.compile(r"\..+\.(?P<host>[^.]+)-(?P<pid>\d+)\.[^.]+\.(tmp|old)")


MAX_READ = 4 << 30  # no file this package reads is larger (a 45,000-image cache is about 140 MB)


class UnsafeFile(OSError):
    """A path that is not a regular file of bounded size: a FIFO, a device, a link, or too large."""


def read_regular(path: Path, limit: int = MAX_READ, *, follow_links: bool = False) -> bytes:
    """The bytes of `path` when it is a regular file of at most `limit` bytes; UnsafeFile when it is anything
    else (a FIFO would block the read forever, /dev/zero never ends, a link could read any file), and
    FileNotFoundError when it is missing. The size is checked on the open file, so a swap in between does not
    help."""
    path = Path(path)
    if not follow_links and path.is_symlink():
        raise UnsafeFile(f"{path}: a symbolic link, not a regular file (links are not followed)")
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | (0 if follow_links else getattr(os, "O_NOFOLLOW", 0))
    try:
        descriptor = os.open(path, flags)
    except OSError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise UnsafeFile(f"{path}: cannot be opened as a regular file ({error.strerror or error})") from None
    with os.fdopen(descriptor, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(f"{path}: not a regular file (a FIFO, a device or a folder)")
        if info.st_size > limit:
            raise UnsafeFile(f"{path}: {info.st_size:,} bytes, more than the {limit:,} this file may hold")
        data = handle.read(limit + 1)
    if len(data) > limit:
        raise UnsafeFile(f"{path}: more than the {limit:,} bytes this file may hold")
    return data


def remove_stale_temporaries(*folders: Path, prefix: str = "") -> int:
    """Deletes the temporary files and folders that writers on this host left when killed mid-write; a live
    writer's (another sweep's, a Ray task's) are left alone. With `prefix`, only temporaries of names starting
    with it (a folder that is not ours, such as the parent of a site, keeps everything else). Returns how many
    were deleted."""
    import shutil

    host = WRITER.rsplit("-", 1)[0]
    removed = 0
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            continue
        found = folder.glob(f".{prefix}*") if prefix else [*folder.rglob(".*.tmp"), *folder.rglob(".*.old")]
        for path in list(found):
            if not path.name.endswith((".tmp", ".old")):
                continue
            match = _TEMPORARY.fullmatch(path.name)
            if match and match["host"] == host and not _running(int(match["pid"])):
                if path.is_dir() and not path.is_symlink():
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    path.unlink(missing_ok=True)
                removed += 1
    return removed


def temporary_name(path: Path, suffix: str = ".tmp") -> str:
    return f".{path.name}.{WRITER}."


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def atomic_write(path: Path, data: bytes) -> None:
    """Writes `data` to `path` as a whole or not at all. An OS-level failure (a full disk, a file-size
    limit, a read-only folder) is an OSError naming `path`, with no temporary file left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=temporary_name(path), suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(data)
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


@contextlib.contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock held while the block runs, on `path` (created, never removed: removing a lock file
    another process waits on would let a third one in). Processes on one machine, or on a file system with
    POSIX locks, wait for each other; the lock goes with the process, so a killed holder frees it."""
    import fcntl

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


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


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# --- sealed files: caches and partial state ------------------------------------------------------------------
def write_sealed(path: Path, payload: bytes) -> None:
    atomic_write(path, SEAL + hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)


def read_sealed(path: Path) -> bytes | None:
    """The payload of a sealed file, or None (with a warning) when it is missing, damaged or not ours."""
    path = Path(path)
    try:
        data = read_regular(path)
    except FileNotFoundError:
        return None
    except OSError as error:
        log.warning("%s is unreadable (%s); computing it again", path, error.strerror or error)
        return None
    header, _, payload = data.partition(b"\n")
    if not header.startswith(SEAL) or header[len(SEAL):].decode("ascii", "replace") != \
            hashlib.sha256(payload).hexdigest():
        log.warning("%s is damaged or was not written by coreset-bench (its content hash does not match); "
                    "computing it again", path)
        return None
    return payload


def write_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save

    write_sealed(path, save({name: t.detach().contiguous().cpu() for name, t in tensors.items()},
                            metadata=metadata))


def read_tensors(path: Path) -> dict | None:
    from safetensors.torch import load

    payload = read_sealed(path)
    if payload is None:
        return None
    try:
        return load(payload)
    except Exception as error:  # sealed, so only a foreign writer with a valid hash gets here
        log.warning("%s does not hold tensors (%s); computing it again", path, error)
        return None


def write_arrays_sealed(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    write_sealed(path, buffer.getvalue())


def read_npz(data: bytes, limit: int) -> dict[str, np.ndarray]:
    """The arrays of an .npz held in memory, each header checked before its array is allocated: no pickled
    objects, and at most `limit` bytes in all as the headers declare them (a header can declare terabytes).
    ValueError when it is not such an archive."""
    import zipfile

    from numpy.lib import format as npy

    arrays, total = {}, 0
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for info in archive.infolist():
                if not info.filename.endswith(".npy") or info.file_size > limit:
                    raise ValueError(f"member {info.filename!r} is not an array of at most {limit:,} bytes")
                with archive.open(info) as member:
                    version = npy.read_magic(member)
                    shape, fortran, dtype = (npy.read_array_header_1_0 if version == (1, 0) else
                                             npy.read_array_header_2_0)(member)
                    if dtype.hasobject:
                        raise ValueError(f"member {info.filename!r} holds Python objects")
                    total += int(np.prod(shape, dtype=np.float64)) * dtype.itemsize
                    if total > limit:
                        raise ValueError(f"the arrays declare more than {limit:,} bytes")
                with archive.open(info) as member:
                    arrays[info.filename[:-len(".npy")]] = npy.read_array(member, allow_pickle=False)
    except (zipfile.BadZipFile, EOFError, OSError) as error:
        raise ValueError(f"not an .npz archive ({error})") from None
    return arrays


def read_arrays_sealed(path: Path) -> dict[str, np.ndarray] | None:
    payload = read_sealed(path)
    if payload is None:
        return None
    try:
        return read_npz(payload, MAX_READ)
    except Exception as error:
        log.warning("%s does not hold arrays (%s); computing it again", path, error)
        return None


def write_checkpoint(path: Path, state: dict) -> None:
    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer)
    write_sealed(path, buffer.getvalue())


def read_checkpoint(path: Path) -> dict | None:
    import torch

    payload = read_sealed(path)
    if payload is None:
        return None
    try:
        return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as error:
        log.warning("%s is not a checkpoint this version can read (%s); starting afresh", path, error)
        return None


# --- published artifacts -------------------------------------------------------------------------------------
def write_json_bytes(path: Path, text: str) -> None:
    atomic_write(path, text.encode("utf-8"))


def write_npz(path: Path, **arrays: np.ndarray) -> None:
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    atomic_write(path, buffer.getvalue())


def write_weights(path: Path, state_dict: dict) -> str:
    """The model's weights as a plain safetensors file; returns its SHA-256 (for the record)."""
    from safetensors.torch import save

    data = save({name: t.detach().contiguous().cpu() for name, t in state_dict.items()})
    atomic_write(path, data)
    return hashlib.sha256(data).hexdigest()


def read_weights(path: Path, sha256: str) -> dict:
    """The weights at `path`, after checking them against the record's hash (UserError when they differ)."""
    from safetensors.torch import load

    from benchmark.errors import UserError

    try:
        data = read_regular(Path(path))
    except FileNotFoundError:
        raise UserError(f"{path}: the record's model weights are missing; re-run the run to get them") from None
    except OSError as error:
        raise UserError(f"{error}; the weights must be the regular file the run wrote") from None
    if hashlib.sha256(data).hexdigest() != sha256:
        raise UserError(f"{path}: the weights do not match the record's model.sha256 (damaged or replaced); "
                        f"restore the file or re-run the run")
    try:
        return load(data)
    except Exception as error:
        raise UserError(f"{path}: not a safetensors file ({error})") from None
