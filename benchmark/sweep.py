"""Sweeps: the grid of a protocol (methods x fractions x seeds), planned by `benchmark.plan`, run one run at a
time here (`run_local`) or as Ray tasks (`benchmark.ray_executor`). `sweep()` is
the whole thing as one call that returns a `SweepResult`; the CLI's `run` and `sweep` only print it.

Whatever kills a sweep, running it again finishes it: finished runs have their record and are skipped,
an unfinished one resumes from its partial state (selection, per-epoch checkpoints), and the shared proxy
of a (dataset, model, seed) comes from the cache. The final records are those of an uninterrupted sweep."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from benchmark.errors import UserError, failure_line
from benchmark.plan import checked_records, expand_grid, prepare_pending
from benchmark.progress import Progress
from benchmark.protocol import Protocol
from benchmark.record import Record
from benchmark.run import RunSpec, load_protocol_data, resolve_device, run_one
from benchmark.storage import ensure_writable, read_regular, remove_stale_temporaries

log = logging.getLogger("benchmark")


def run_local(pending: list[RunSpec], progress: Progress, *, protocol: Protocol, cache_dir: Path,
              device: torch.device, data_root: Path | None, keep_going: bool,
              eval_batch_size: int | None = None) -> None:
    """One run at a time on this machine, the data loaded once. A run that fails (bad input, or a selector
    that raises) is reported and the sweep goes on (`keep_going`), or it stops the sweep with one line."""
    data, pool_indices = load_protocol_data(protocol, device=device, data_root=data_root, cache_dir=cache_dir)
    for spec in pending:
        progress.start(spec)
        try:
            record = run_one(spec, protocol=protocol, data=data, pool_indices=pool_indices, cache_dir=cache_dir,
                             eval_batch_size=eval_batch_size)
        except (UserError, OSError):
            if not keep_going:
                raise
            progress.finish(spec, None, _one_line())
            continue
        except Exception as error:  # a plug-in's bug must not take the sweep (or a traceback) to the user
            reason = failure_line(spec.label, error)
            if not keep_going:
                raise UserError(f"{spec.label}: {reason}") from None
            progress.finish(spec, None, reason)
            continue
        progress.finish(spec, record)


def _one_line() -> str:
    import sys

    error = sys.exc_info()[1]
    if isinstance(error, OSError) and not isinstance(error, UserError):
        return f"cannot read or write {error.filename or ''}: {error.strerror or error}".replace("  ", " ")
    return str(error)


@dataclass
class SweepResult:
    specs: list[RunSpec]
    records: list[Record]  # every record of the grid now on disk, in grid order
    failures: list[tuple[RunSpec, str]]
    skipped: int  # runs that were recorded before this call
    elapsed: str
    executor: str

    @property
    def flagged(self) -> list[Record]:
        return [record for record in self.records if record.flags]


def sweep(*, protocol: Protocol, methods: list[str], params: dict[str, dict], out: Path, cache_dir: Path,
          data_root: Path | None = None, device: str = "auto", executor: str = "local", address: str | None = None,
          cpus_per_run: int = 1, keep_going: bool = True, force: bool = False,
          eval_batch_size: int | None = None) -> SweepResult:
    """Runs every run of the grid that has no record yet (all of them with `force`); returns what is on disk."""
    out = Path(out)
    specs = expand_grid(protocol, methods, params, out)
    done = checked_records(specs, out)
    ensure_writable(out)
    stale = remove_stale_temporaries(out, cache_dir)
    if stale:
        log.info("removed %d temporary file(s) left by writes that were killed", stale)
    pending = prepare_pending(specs, done, force)
    if len(pending) < len(specs):
        log.info("%d of %d run(s) already recorded in %s: skipped (--force redoes them)", len(specs) - len(pending),
                 len(specs), out)
    progress = Progress(total=len(specs), done_before=len(specs) - len(pending), pending=pending)
    if pending:
        if executor == "ray":
            from benchmark.ray_executor import run_on_ray

            log.info("%d of %d run(s) to do (Ray executor), records in %s", len(pending), len(specs), out)
            run_on_ray(pending, progress, protocol=protocol, cache_dir=cache_dir, data_root=data_root,
                       address=address, cpus_per_run=cpus_per_run, eval_batch_size=eval_batch_size)
        else:
            resolved = resolve_device(device)
            log.info("%d of %d run(s) to do on %s, records in %s", len(pending), len(specs), _describe(resolved), out)
            if resolved.type == "cpu" and protocol.epochs >= 100:
                log.warning("WARNING: preset %s trains %d epochs per run, a GPU protocol; on this CPU it will take a "
                            "very long time (try --preset cifar10-cpu or smoke)", protocol.preset, protocol.epochs)
            run_local(pending, progress, protocol=protocol, cache_dir=cache_dir, device=resolved,
                      data_root=data_root, keep_going=keep_going, eval_batch_size=eval_batch_size)
        log.info("%s; took %s", progress.summary(), progress.elapsed())
    records = [done.get(spec.record) or _read(spec.record) for spec in specs if spec.record.exists()]
    return SweepResult(specs, records, progress.failures, len(specs) - len(pending), progress.elapsed(), executor)


def _describe(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"the CPU ({torch.get_num_threads()} threads)"


def _read(path: Path) -> Record:
    return Record.parse(read_regular(path).decode("utf-8"))
