"""Runs a GPU window stopped after their training, carried to the next window (`benchmark job --unfinished`).

A standard run trains for minutes and is then attacked for minutes: a window of fixed length often ends with
runs whose model is trained and whose attacks are under way. Their saved state (`RunSpec.partial`: the sealed
selection and the last epoch's checkpoint) is packed, one archive per run named after its record, for the next
window to unpack: the run resumes after its training (the same weights, bit for bit) and after the attacks it
had finished (`benchmark.evaluation.progress`), and goes on with the rest.

Only runs whose training has finished are carried: a checkpoint taken mid-training also holds the optimizer's
momentum, as large again as the weights, and MobileNetV2-1.0's would not fit in the 16 MiB one file back from
a device machine may weigh; the last epoch's checkpoint leaves the momentum out (`benchmark.train`).
"""

from __future__ import annotations

import io
import logging
import re
import tarfile
from pathlib import Path

from benchmark.errors import UserError
from benchmark.run import RunSpec
from benchmark.storage import atomic_write, read_checkpoint

log = logging.getLogger("benchmark")
SUFFIX = ".tar.gz"
# what `run_one` keeps in a run's partial state: the selection, a checkpoint per lr, each finished attack
MEMBER = re.compile(r"(selection\.sealed|lr[0-9]+\.checkpoint|attack[0-9]+\.sealed)")
MEMBER_LIMIT = 64 * 2 ** 20


def trained(spec: RunSpec, lrs: int) -> bool:
    """Whether the run's partial state holds a finished training for each of its `lrs` learning rates."""
    for i in range(lrs):
        path = spec.partial / f"lr{i}.checkpoint"
        state = read_checkpoint(path) if path.exists() else None
        if state is None or state.get("epoch") != state.get("config", {}).get("epochs"):
            return False
    return (spec.partial / "selection.sealed").exists()


def pack_unfinished(specs: list[RunSpec], folder: Path, *, lrs: int, limit: int, count: int) -> list[RunSpec]:
    """One archive in `folder` per run of `specs` (priority order) that is trained and not recorded, at most
    `count` of them, each within `limit` bytes; archives there of other runs of these specs are removed (they
    finished, or are no longer carried). Returns the runs packed."""
    folder = Path(folder)
    packed = []
    for spec in specs:
        target = folder / (spec.record.stem + SUFFIX)
        if len(packed) < count and not spec.record.exists() and spec.partial.is_dir() and trained(spec, lrs):
            data = _archive(spec.partial)
            if len(data) <= limit:
                atomic_write(target, data)
                packed.append(spec)
                continue
            log.warning("%s: its trained state (%.1f MiB) is over the %.1f MiB limit; not carried", spec.label,
                        len(data) / 2 ** 20, limit / 2 ** 20)
        target.unlink(missing_ok=True)
    return packed


def unpack_unfinished(folder: Path, specs: list[RunSpec]) -> list[RunSpec]:
    """The carried states in `folder` put back as the partial states of the runs of `specs` they belong to;
    returns those runs. An archive of no run in `specs` (recorded since, or of another board) is passed over."""
    by_name = {spec.record.stem + SUFFIX: spec for spec in specs}
    carried = []
    for path in sorted(Path(folder).glob("*" + SUFFIX)):
        spec = by_name.get(path.name)
        if spec is None:
            log.info("unfinished: %s is not a run still to do here; passed over", path.name)
            continue
        for name, data in _members(path):
            atomic_write(spec.partial / name, data)
        carried.append(spec)
    return carried


def _archive(partial: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(partial.iterdir()):
            if path.is_file() and MEMBER.fullmatch(path.name):
                tar.add(path, arcname=path.name, recursive=False)
    return buffer.getvalue()


def _members(path: Path) -> list[tuple[str, bytes]]:
    """The files of one carried state, each a plain file with a name a partial state holds (nothing written
    outside the run's own folder)."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            members = tar.getmembers()
            bad = [m.name for m in members if not (m.isfile() and MEMBER.fullmatch(m.name) and m.size <= MEMBER_LIMIT)]
            if bad or not members:
                raise UserError(f"{path}: not a carried run state (unexpected member {bad[0]!r}); remove it"
                                if bad else f"{path}: an empty archive, not a carried run state; remove it")
            return [(m.name, tar.extractfile(m).read()) for m in members]
    except (tarfile.TarError, OSError, EOFError) as error:
        raise UserError(f"{path}: not a readable .tar.gz ({error}); remove it or fetch it again") from None
