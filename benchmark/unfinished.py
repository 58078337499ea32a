"""Runs a GPU window stopped before their record, carried to the next window (`benchmark job --unfinished`).

A standard run trains for minutes and is then attacked for minutes, and a run at fraction 0.5 or on the full pool
trains for longer than a window lasts: a window of fixed length ends with runs under way. Their saved state
(`RunSpec.partial`: the sealed selection, each learning rate's latest checkpoint, each finished attack) is packed,
one archive per run named after its record, for the next window to unpack: the run resumes where it stopped
(after its last finished epoch, or after its training and its finished attacks; `benchmark.evaluation.progress`)
and goes on with the rest.

What fits is carried, what saves the most training first. A trained run's last checkpoint leaves out the
optimizer's momentum (about 9 MB for MobileNetV2-1.0); a checkpoint taken mid-training holds it, twice that, over
the 16 MiB one file back from a device machine may weigh: such an archive is split into parts
(`<name>.tar.gz.1-of-2`, `<name>.tar.gz.2-of-2`), each within the limit, joined again when unpacked.
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.run import RunSpec
from benchmark.storage import atomic_write, read_checkpoint

log = logging.getLogger("benchmark")
SUFFIX = ".tar.gz"
PART = re.compile(r"(?P<name>.+\.tar\.gz)(?:\.(?P<index>[0-9]+)-of-(?P<count>[0-9]+))?")
# what `run_one` keeps in a run's partial state: the selection, a checkpoint per lr, each finished attack
MEMBER = re.compile(r"(selection\.sealed|lr[0-9]+\.checkpoint|attack[0-9]+\.sealed)")
MEMBER_LIMIT = 64 * 2 ** 20


@dataclass(frozen=True)
class Progress:
    """How far a run's saved state goes: the share of its training done (1.0: trained) and the training seconds
    it holds (what carrying it saves the next window)."""

    done: float
    seconds: float
    epochs: tuple[int, ...]  # per learning rate, epochs trained
    total: int  # epochs per learning rate

    @property
    def trained(self) -> bool:
        return self.done >= 1.0

    def text(self) -> str:
        if self.trained:
            return "trained"
        return f"epoch {self.epochs[0]} of {self.total}" if len(self.epochs) == 1 else f"{self.done:.0%} trained"


def progress(spec: RunSpec, lrs: int) -> Progress | None:
    """The training saved in the run's partial state (None without a selection or a single finished epoch)."""
    if not (spec.partial / "selection.sealed").exists():
        return None
    epochs, seconds, total = [], 0.0, None
    for i in range(lrs):
        path = spec.partial / f"lr{i}.checkpoint"
        state = read_checkpoint(path) if path.exists() else None
        total = state.get("config", {}).get("epochs") if state is not None else total
        epochs.append(int(state.get("epoch", 0)) if state is not None else 0)
        seconds += float(state.get("seconds", 0.0)) if state is not None else 0.0
    if not total or not any(epochs):
        return None
    return Progress(sum(epochs) / (total * lrs), seconds, tuple(epochs), total)


def pack_unfinished(specs: list[RunSpec], folder: Path, *, lrs: int, limit: int, count: int,
                    total: int | None = None) -> list[RunSpec]:
    """Archives in `folder` of the runs of `specs` that are under way (saved state, no record): those whose saved
    training is longest first, while they fit in `count` files of at most `limit` bytes (an archive over `limit`
    is split into parts) and `total` bytes in all; files there of other runs of these specs are removed (they
    finished, or are no longer carried). Returns the runs packed."""
    folder = Path(folder)
    candidates = []
    for order, spec in enumerate(specs):
        saved = None if spec.record.exists() or not spec.partial.is_dir() else progress(spec, lrs)
        if saved is not None:
            candidates.append((-saved.seconds, order, spec))
    packed, files, size = [], 0, 0
    for _, _, spec in sorted(candidates, key=lambda item: item[:2]):
        data = _archive(spec.partial)
        parts = [data[start:start + limit] for start in range(0, len(data), limit)]
        if files + len(parts) > count or (total is not None and size + len(data) > total):
            log.warning("%s: its saved state (%.1f MiB in %d file(s)) is not carried: %d file(s) and %s are left of "
                        "what may be carried", spec.label, len(data) / 2 ** 20, len(parts), count - files,
                        "no limit on MiB" if total is None else f"{(total - size) / 2 ** 20:.1f} MiB")
            continue
        _remove_carried(folder, spec)
        name = spec.record.stem + SUFFIX
        for index, part in enumerate(parts, start=1):
            atomic_write(folder / (name if len(parts) == 1 else f"{name}.{index}-of-{len(parts)}"), part)
        packed.append(spec)
        files, size = files + len(parts), size + len(data)
    for spec in specs:
        if spec not in packed:
            _remove_carried(folder, spec)
    return packed


def _remove_carried(folder: Path, spec: RunSpec) -> None:
    if folder.is_dir():
        for path in folder.glob(spec.record.stem + SUFFIX + "*"):
            match = PART.fullmatch(path.name)
            if match and match["name"] == spec.record.stem + SUFFIX:
                path.unlink()


def unpack_unfinished(folder: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """The carried states in `folder` put back as the partial states of the runs of `specs` they belong to;
    returns those runs. An archive of no run in `specs` (recorded since, or of another board) is passed over."""
    by_name = {spec.record.stem + SUFFIX: spec for spec in specs}
    groups: dict[str, dict[int, Path]] = {}
    counts: dict[str, int] = {}
    for path in sorted(Path(folder).iterdir()):
        match = PART.fullmatch(path.name)
        if match is None:
            continue
        name, count = match["name"], int(match["count"] or 1)
        if counts.setdefault(name, count) != count:
            raise UserError(f"{path}: parts of {name} disagree on how many there are; remove them")
        groups.setdefault(name, {})[int(match["index"] or 1)] = path
    carried = []
    for name, parts in sorted(groups.items()):
        spec = by_name.get(name)
        if spec is None:
            log.info("unfinished: %s is not a run still to do here; passed over", name)
            continue
        count = counts[name]
        if any(not 1 <= index <= count for index in parts):
            raise UserError(f"{Path(folder) / name}: a part numbered outside 1-{count}; remove its parts")
        missing = next((i for i in range(1, count + 1) if i not in parts), None)  # stops at the first gap
        if missing is not None:
            raise UserError(f"{Path(folder) / name}: part {missing} of {count} is missing; fetch it again or remove "
                            f"the other parts")
        data = b"".join(parts[i].read_bytes() for i in range(1, count + 1))
        for member, content in _members(Path(folder) / name, data):
            atomic_write(spec.partial / member, content)
        carried.append(spec)
    return carried


def _archive(partial: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(partial.iterdir()):
            if path.is_file() and MEMBER.fullmatch(path.name):
                tar.add(path, arcname=path.name, recursive=False)
    return buffer.getvalue()


def _members(path: Path, data: bytes) -> list[tuple[str, bytes]]:
    """The files of one carried state (`data`, from `path`'s parts), each a plain file with a name a partial state
    holds (nothing written outside the run's own folder)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not (m.isfile() and MEMBER.fullmatch(m.name) and m.size <= MEMBER_LIMIT)]
            if bad or not members:
                raise UserError(f"{path}: not a carried run state (unexpected member {bad[0]!r}); remove it"
                                if bad else f"{path}: an empty archive, not a carried run state; remove it")
            return [(m.name, tar.extractfile(m).read()) for m in members]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .tar.gz ({error}); remove it or fetch it again") from None
