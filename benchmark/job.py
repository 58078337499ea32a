"""`python -m benchmark job`: a board's runs in a window of fixed length (a GPU lent for minutes), in priority
order, several at once on one device, stopping before the window ends, with the finished records packed into one
archive small enough to come back from the machine and be committed.

- Priority: the study's methods and the full pool first, then every other selector; within each, fraction by
  fraction (smallest first; the full pool's one run per seed after them), then seed by seed, then method by
  method (the study's order, then by name). Runs whose record is in `--out` or in a `--done` folder (the
  committed board) are skipped, so the next window goes on where the last one stopped.
- Budget: a run starts only if it can finish before the deadline (the budget less a margin for packing), by an
  estimate from the records finished so far (this window's and those in `--done`: training in proportion to
  the fraction, the rest per run). A run without an estimate yet starts. At the deadline the workers still
  running are stopped: their runs are left for the next window. With `carry_training` K, up to K runs that
  cannot finish in this window (a standard run at fraction 0.5 or on the full pool trains for longer than a
  window lasts) start anyway when at least a few of their epochs fit, train until the deadline and are carried
  to the next window, which resumes them after their last epoch.
- Several runs per device: `runs_per_device` worker processes, each loading the data once and taking the next
  run from one shared queue. A seed's shared proxy is trained once (a lock in the cache); the others wait and
  load it. A run's record is the one it would write alone (the same code, seed and thread count).
- The archive (tar.gz, at most `archive_limit` bytes): every finished record with its selection and gallery,
  then model weights in priority order while they fit, and `job.txt` saying what is in it and what is not.
- Unfinished runs: with `unfinished` (a folder), the runs stopped at the deadline after their training are
  packed into `unfinished/` beside the archive, one file each (`benchmark.unfinished`); the next window, given
  that folder, starts with them and only attacks.
"""

from __future__ import annotations

import io
import json
import logging
import multiprocessing
import os
import queue
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from benchmark.errors import UserError, failure_line
from benchmark.progress import format_duration
from benchmark.protocol import Protocol
from benchmark.record import Record
from benchmark.records import artifact_path
from benchmark.run import RunSpec, run_spec
from benchmark.schema import load_records
from benchmark.selection import create_selector
from benchmark.storage import atomic_write
from benchmark.study import STUDY_METHODS
from benchmark.unfinished import pack_unfinished, progress, unpack_unfinished

log = logging.getLogger("benchmark")
ARCHIVE_LIMIT = 16 * 2 ** 20  # what one file back from a device machine may weigh
FULL = "full"
CARRY_EPOCHS = 3  # a run that cannot finish starts, to be carried, only if this many of its epochs fit


def board_order(protocol: Protocol, methods: list[str], params: dict[str, dict], out: Path) -> list[RunSpec]:
    """Every run of the board, most wanted first (see the module's docstring)."""
    tiers = [[m for m in STUDY_METHODS if m in methods] + [m for m in methods if m == FULL],
             sorted(m for m in methods if m not in STUDY_METHODS and m != FULL)]
    specs = []
    for tier in tiers:
        cells = []
        for method in tier:
            method_params = protocol.method_params(method, params.get(method))
            whole_pool = create_selector(method, method_params).whole_pool
            for fraction in ((1.0,) if whole_pool else protocol.fractions):
                for seed in protocol.seeds:
                    cells.append(((whole_pool, fraction, seed, tier.index(method)), method, method_params,
                                  fraction, seed))
        for _, method, method_params, fraction, seed in sorted(cells, key=lambda cell: cell[0]):
            specs.append(run_spec(method=method, params=method_params, protocol=protocol, fraction=fraction,
                                  seed=seed, out=out))
    return specs


def done_names(folders: list[Path]) -> set[str]:
    """The file names of the records already on the board (valid ones: a damaged record stops the job)."""
    folders = [folder for folder in folders if Path(folder).exists()]
    return {item.path.name for item in load_records(folders, allow_empty=True)} if folders else set()


@dataclass
class Estimate:
    """Seconds a run will take: training in proportion to its fraction, the rest (selection, attacks) per run,
    from finished records (an average; None until one has finished)."""

    training_per_fraction: list[float] = field(default_factory=list)
    other: list[float] = field(default_factory=list)
    selection: list[float] = field(default_factory=list)  # part of `other`: the selection and its proxy

    def add(self, record: Record) -> None:
        seconds = record.evaluation.seconds if record.evaluation else None
        if seconds is None or seconds.total is None:
            return
        self.training_per_fraction.append(record.training.seconds / record.fraction)
        self.selection.append(record.selection.seconds + (record.selection.proxy_training_seconds or 0.0))
        self.other.append(self.selection[-1] + seconds.total)

    def seconds(self, fraction: float, done: float = 0.0) -> float | None:
        """`done`: the share of the run's training already saved (carried from an earlier window; 1.0: it resumes
        after its training)."""
        if not self.other:
            return None
        return self.training(fraction) * (1.0 - done) + sum(self.other) / len(self.other)

    def training(self, fraction: float) -> float:
        return sum(self.training_per_fraction) / len(self.training_per_fraction) * fraction

    def first_epochs(self, fraction: float, epochs: int, count: int) -> float:
        """Seconds until a new run has trained `count` of its `epochs` (its selection first)."""
        return sum(self.selection) / len(self.selection) + self.training(fraction) * count / epochs


@dataclass
class JobResult:
    specs: list[RunSpec]  # the whole board, in priority order
    already: int  # runs recorded before this job
    finished: list[RunSpec]
    failed: list[tuple[RunSpec, str]]
    not_started: list[RunSpec]  # left for the next window (no time for them)
    stopped: list[RunSpec]  # running at the deadline and stopped
    archive: Path | None
    archive_bytes: int
    packed: list[str]  # record files in the archive
    weights: list[str]  # weight files in the archive
    left_out: list[str]  # files of finished runs the archive could not take
    elapsed: float
    carried_in: list[RunSpec] = field(default_factory=list)  # resumed where an earlier window stopped them
    carried_out: list[RunSpec] = field(default_factory=list)  # under way, not yet recorded: for the next window
    carried_text: dict[str, str] = field(default_factory=dict)  # label -> how far: "trained", "epoch 80 of 200"
    carried_in_text: dict[str, str] = field(default_factory=dict)  # the same for the runs carried in

    @staticmethod
    def _with_progress(spec: RunSpec, texts: dict[str, str]) -> str:
        return f"{spec.label} ({texts[spec.label]})" if spec.label in texts else spec.label

    def lines(self) -> list[str]:
        lines = [f"{len(self.finished)} run(s) finished, {len(self.failed)} failed, {len(self.stopped)} stopped at "
                 f"the deadline, {len(self.not_started)} left for the next window; {self.already} of "
                 f"{len(self.specs)} were recorded before; took {format_duration(self.elapsed)}"]
        lines += [f"failed: {spec.label}: {reason}" for spec, reason in self.failed]
        if self.carried_in:
            lines.append(f"resumed (carried from an earlier window): "
                         f"{', '.join(self._with_progress(spec, self.carried_in_text) for spec in self.carried_in)}")
        if self.carried_out:
            lines.append(f"not yet recorded, carried to the next window: "
                         f"{', '.join(self._with_progress(spec, self.carried_text) for spec in self.carried_out)}")
        if self.archive is not None:
            lines.append(f"archive {self.archive}: {len(self.packed)} record(s), {len(self.weights)} with weights, "
                         f"{self.archive_bytes / 2 ** 20:.2f} MiB" + (f"; left out: {', '.join(self.left_out)}"
                                                                     if self.left_out else ""))
        return lines


def job(*, protocol: Protocol, methods: list[str], params: dict[str, dict], out: Path, cache_dir: Path,
        budget: float, runs_per_device: int = 1, done: list[Path] = (), data_root: Path | None = None,
        device: str = "auto", archive: Path | None = None, archive_limit: int = ARCHIVE_LIMIT,
        margin: float = 30.0, threads: int | None = None, eval_batch_size: int | None = None,
        unfinished: Path | None = None, unfinished_files: int = 4, unfinished_bytes: int | None = None,
        carry_training: int = 0) -> JobResult:
    """Runs the board's next runs until `budget` seconds from now (less `margin`), then packs the archive and,
    with `unfinished` (the folder of runs carried from the last window), the runs under way and not yet recorded
    into `unfinished/` beside the archive (at most `unfinished_files` files, each within `archive_limit`, and
    `unfinished_bytes` in all). `carry_training`: how many runs that cannot finish in time may start anyway, to
    be carried (only with `unfinished` and `archive`)."""
    started = time.monotonic()
    if not budget > 0:
        raise UserError(f"--budget must be a positive number of seconds, got {budget}")
    if runs_per_device < 1:
        raise UserError(f"--runs-per-device must be at least 1, got {runs_per_device}")
    if not 0 < archive_limit:
        raise UserError("--archive-limit-mb must be positive")
    out = Path(out)
    specs = board_order(protocol, methods, params, out)
    recorded = done_names([out, *done])
    pending = [spec for spec in specs if spec.record.name not in recorded]
    carried = unpack_unfinished(unfinished, pending) if unfinished is not None and Path(unfinished).is_dir() else []
    saved = {spec.record.name: progress(spec, len(protocol.lrs)) for spec in carried}
    saved = {name: state for name, state in saved.items() if state is not None}  # a selection alone: a new run
    carried = [spec for spec in carried if spec.record.name in saved]
    pending = carried + [spec for spec in pending if spec not in carried]  # nearest to a record first
    estimate = Estimate()
    for item in load_records([d for d in done if Path(d).exists()], allow_empty=True) if done else []:
        if item.record.preset == protocol.preset:
            estimate.add(item.record)
    deadline = started + budget - margin
    log.info("job: %d of %d run(s) of the board to do, %d at once, %s until the deadline", len(pending), len(specs),
             runs_per_device, format_duration(max(0.0, deadline - time.monotonic())))
    finished, failed, not_started, stopped = _run_workers(
        pending, protocol=protocol, cache_dir=cache_dir, data_root=data_root, device=device, deadline=deadline,
        workers=runs_per_device, estimate=estimate, threads=threads, eval_batch_size=eval_batch_size,
        done={name: state.done for name, state in saved.items()}, carry_training=carry_training,
        can_carry=archive is not None and unfinished is not None)
    packed, weights, left_out, size = [], [], [], 0
    carried_out, carried_text = [], {}
    if archive is not None and unfinished is not None:
        carried_out = pack_unfinished(specs, Path(archive).parent / "unfinished", lrs=len(protocol.lrs),
                                      limit=archive_limit, count=unfinished_files, total=unfinished_bytes)
        carried_text = {spec.label: progress(spec, len(protocol.lrs)).text() for spec in carried_out}
    if archive is not None:
        order = [spec for spec in specs if spec.record.exists()]
        packed, weights, left_out, size = pack(order, Path(archive), archive_limit, summary={
            "protocol": protocol.preset, "finished": [s.label for s in finished],
            "failed": [s.label for s, _ in failed], "stopped": [s.label for s in stopped],
            "not started": [s.label for s in not_started], "carried to the next window": carried_text})
    return JobResult(specs, len(specs) - len(pending), finished, failed, not_started, stopped,
                     Path(archive) if archive is not None else None, size, packed, weights, left_out,
                     time.monotonic() - started, carried, carried_out, carried_text,
                     {spec.label: saved[spec.record.name].text() for spec in carried})


def _run_workers(pending: list[RunSpec], *, protocol: Protocol, cache_dir: Path, data_root: Path | None, device: str,
                 deadline: float, workers: int, estimate: Estimate, threads: int | None,
                 eval_batch_size: int | None, done: dict[str, float], carry_training: int, can_carry: bool):
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked into workers
    tasks, results = context.Queue(), context.Queue()
    # new runs that may still start although they cannot finish (None: nothing can be carried)
    carry_slots = context.Value("i", carry_training) if can_carry else None
    for index in range(len(pending)):
        tasks.put(index)
    threads = threads or max(1, (os.cpu_count() or 1) // workers)
    at_once = min(workers, len(pending))
    processes = [context.Process(target=_worker, args=(pending, tasks, results), kwargs=dict(
        protocol=protocol, cache_dir=cache_dir, data_root=data_root, device=device, deadline=deadline,
        estimate=estimate, threads=threads, eval_batch_size=eval_batch_size, done=done, carry_slots=carry_slots,
        epochs=protocol.epochs, at_once=at_once), daemon=True)
        for _ in range(at_once)]
    for process in processes:
        process.start()
    finished, failed, skipped, running = [], [], [], {}
    while any(process.is_alive() for process in processes) or not results.empty():
        try:
            kind, index, detail = results.get(timeout=max(0.1, min(5.0, deadline - time.monotonic())))
        except queue.Empty:
            if time.monotonic() >= deadline:
                break
            continue
        spec = pending[index]
        if kind == "started":
            running[index] = spec
        elif kind == "done":
            running.pop(index, None)
            finished.append(spec)
            log.info("job: %s finished (%s)", spec.label, format_duration(detail))
        elif kind == "failed":
            running.pop(index, None)
            failed.append((spec, detail))
            log.warning("job: %s failed: %s", spec.label, detail)
        else:  # "skipped": it could not finish before the deadline
            skipped.append(spec)
    for process in processes:
        if process.is_alive():
            process.terminate()  # the deadline: whatever runs now is left for the next window
        process.join()
    accounted = {id(spec) for spec in finished} | {id(spec) for spec, _ in failed} | {id(s) for s in running.values()}
    not_started = [spec for spec in pending if id(spec) not in accounted]
    return finished, failed, not_started, list(running.values())


def _worker(pending: list[RunSpec], tasks, results, *, protocol: Protocol, cache_dir: Path, data_root: Path | None,
            device: str, deadline: float, estimate: Estimate, threads: int, eval_batch_size: int | None,
            done: dict[str, float], carry_slots, epochs: int, at_once: int) -> None:
    """One worker: the data loaded once, then the next run of the queue while one can still finish in time (or,
    while `carry_slots` last, make a few epochs' progress to be carried)."""
    import torch

    from benchmark.run import load_protocol_data, resolve_device, run_one

    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(threads)
    resolved = resolve_device(device)
    data, pool_indices = load_protocol_data(protocol, device=resolved, data_root=data_root, cache_dir=cache_dir)
    while True:
        try:
            index = tasks.get_nowait()
        except queue.Empty:
            return
        spec = pending[index]
        saved = done.get(spec.record.name, 0.0)
        expected = estimate.seconds(spec.fraction, done=saved)
        if expected is not None and time.monotonic() + expected > deadline:
            # it cannot finish in this window; it still starts if it can be carried to the next one: a run carried
            # in always (what it does now is saved again), a new one while a slot is left and a few epochs fit
            new_run_fits = time.monotonic() + estimate.first_epochs(spec.fraction, epochs, CARRY_EPOCHS) < deadline
            if carry_slots is None or not (saved > 0 or (new_run_fits and _take(carry_slots))):
                results.put(("skipped", index, expected))
                continue
            log.info("job: %s cannot finish in this window; it goes as far as it can, to be carried", spec.label)
        results.put(("started", index, None))
        tick = time.monotonic()
        try:
            record = run_one(spec, protocol=protocol, data=data, pool_indices=pool_indices, cache_dir=cache_dir,
                             eval_batch_size=eval_batch_size, runs_per_device=at_once)
        except UserError as error:
            results.put(("failed", index, str(error)))
            continue
        except Exception as error:  # a plug-in's bug: reported in one line, the next run goes on
            results.put(("failed", index, failure_line(spec.label, error)))
            continue
        estimate.add(record)
        results.put(("done", index, time.monotonic() - tick))


def _take(slots) -> bool:
    """Takes one of the shared `slots` if one is left."""
    with slots.get_lock():
        if slots.value <= 0:
            return False
        slots.value -= 1
        return True


def pack(specs: list[RunSpec], archive: Path, limit: int, summary: dict) -> tuple[list[str], list[str], list[str],
                                                                                   int]:
    """The archive of these runs' records (in this order) within `limit` bytes: each record with its selection
    and gallery, then weights while they fit. Returns (records, weights, left out, bytes)."""
    reserve = 64 * 1024  # for the gzip stream's buffered tail and job.txt
    buffer = io.BytesIO()
    packed, weights, left_out = [], [], []
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        def add(path: Path) -> bool:
            if buffer.tell() + path.stat().st_size + 1024 > limit - reserve:  # stored at worst, never larger
                return False
            tar.add(path, arcname=path.name, recursive=False)
            return True

        for spec in specs:
            files = [spec.record] + [artifact_path(spec.record, kind) for kind in ("selection", "gallery")]
            files = [path for path in files if path.exists()]
            if sum(path.stat().st_size for path in files) + buffer.tell() + 1024 * len(files) <= limit - reserve:
                for path in files:
                    add(path)
                packed.append(spec.record.name)
            else:
                left_out.append(spec.record.name)
        for spec in specs:
            path = artifact_path(spec.record, "model")
            if spec.record.name in packed and path.exists():
                (weights if add(path) else left_out).append(path.name)
        text = json.dumps({**summary, "records": packed, "weights": weights, "left out": left_out}, indent=2)
        info = tarfile.TarInfo("job.txt")
        info.size = len(text.encode())
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(text.encode()))
    data = buffer.getvalue()
    if len(data) > limit:  # cannot happen with the reserve; refuse rather than write what will not come back
        raise UserError(f"the archive came to {len(data)} bytes, over the limit of {limit}")
    atomic_write(archive, data)
    return packed, weights, left_out, len(data)
