"""Sweeps: the grid of a protocol (methods x fractions x seeds) expanded once, checked against what is on
disk, and run one run at a time here (`run_local`) or as Ray tasks (`benchmark.ray_executor`). `sweep()` is
the whole thing as one call that returns a `SweepResult`; the CLI's `run` and `sweep` only print it.

Whatever kills a sweep, running it again finishes it: finished runs have their record and are skipped,
an unfinished one resumes from its partial state (selection, per-epoch checkpoints), and the shared proxy
of a (dataset, model, seed) comes from the cache. The final records are those of an uninterrupted sweep."""

from __future__ import annotations

import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.models import check_model_name
from benchmark.progress import format_duration, interval
from benchmark.protocol import Protocol
from benchmark.run import RunSpec, load_protocol_data, remove_partial, resolve_device, run_one, run_spec
from benchmark.schema import SchemaError, load_records
from benchmark.selection import available_selectors, create_selector
from benchmark.storage import ensure_writable, read_checkpoint, remove_stale_temporaries

log = logging.getLogger("benchmark")


def parse_methods(text: str) -> list[str]:
    """`all` or a comma-separated list of registered selectors, each once."""
    known = available_selectors()
    names = list(known) if text.strip() == "all" else [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise UserError("no methods given: pass --methods all or a list such as cal,random")
    for name in names:
        create_selector(name)  # an unknown name fails here, with the known ones listed
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise UserError(f"method(s) {', '.join(repeated)} listed twice in --methods: list each once")
    return names


def method_params(methods: list[str], given: list[tuple[str, str]]) -> dict[str, dict]:
    """--param METHOD.KEY=VALUE, grouped by method (a bare KEY=VALUE applies when one method is swept)."""
    params: dict[str, dict] = {name: {} for name in methods}
    for key, value in given:
        method, _, name = key.rpartition(".")
        if not method and len(methods) == 1:
            method = methods[0]
        if method not in params:
            raise UserError(f"--param {key}={value}: name the method it is for, as METHOD.KEY=VALUE with METHOD "
                            f"one of {', '.join(methods)}")
        params[method][name] = value
    return params


def expand_grid(protocol: Protocol, methods: list[str], params: dict[str, dict], out: Path) -> list[RunSpec]:
    """Every run of the sweep, seed by seed (so each seed's runs, and its proxy, come together); a
    `whole_pool` method (full) runs once per seed. Unknown or invalid parameters fail here, at once."""
    check_model_name(protocol.model)
    specs = []
    for seed in protocol.seeds:
        for method in methods:
            method_params = protocol.method_params(method, params.get(method))
            fractions = (1.0,) if create_selector(method, method_params).whole_pool else protocol.fractions
            for fraction in fractions:
                specs.append(run_spec(method=method, params=method_params, protocol=protocol, fraction=fraction,
                                      seed=seed, out=out))
    return specs


def existing_records(specs: list[RunSpec]) -> dict[Path, dict]:
    """The records already written for this grid, checked against the schema: a damaged one stops the
    sweep (listed, with what to do) rather than being overwritten or silently counted as done."""
    found = [spec.record for spec in specs if spec.record.exists()]
    return {loaded.path: loaded.record for loaded in load_records(found, allow_empty=True)} if found else {}


@dataclass
class Progress:
    """Runs done / running / left, and the time left, estimated from the finished runs' own timings (their
    records'): training takes time in proportion to the fraction, selection and attacks about the same per
    run. The records' timings, not the wall clock, because the Ray executor queues every run at once (a run's
    wait in the queue is not its cost); proxy trainings, done once per seed, are left out of the pace."""

    total: int
    done_before: int
    pending: list[RunSpec]
    slots: int = 1  # runs that can be running at once
    finished: int = 0
    failures: list[tuple[RunSpec, str]] = field(default_factory=list)
    in_flight: set = field(default_factory=set)
    started: float = field(default_factory=lambda: time.monotonic())

    def __post_init__(self):
        self._fraction_done = 0.0  # of the finished runs: their fractions, training and other seconds
        self._training_seconds = 0.0
        self._other_seconds = 0.0
        self._fraction_left = sum(spec.fraction for spec in self.pending)
        self._starts: dict[Path, float] = {}

    def start(self, spec: RunSpec) -> None:
        self.in_flight.add(spec.record)
        self._starts[spec.record] = time.monotonic()

    def finish(self, spec: RunSpec, record: dict | None, error: str | None = None) -> None:
        self.in_flight.discard(spec.record)
        self._fraction_left -= spec.fraction
        took = time.monotonic() - self._starts.pop(spec.record, time.monotonic())
        if error is None:
            self.finished += 1
            self._fraction_done += spec.fraction
            training, other = _run_seconds(record, took)
            self._training_seconds += training
            self._other_seconds += other
            worst = {w["eps"]: w["accuracy"] for w in record.get("worst_case", []) if w["threat"] == "Linf"}
            if not worst:  # a version-1 record
                worst = {a["eps"]: a["accuracy"] for a in record["attacks"]}
            robust = ", ".join(f"{eps * 255:g}/255 {100 * acc:.1f}%" for eps, acc in worst.items())
            flags = f" [flagged: {', '.join(f['code'] for f in record.get('flags', []))}]" if record.get("flags") \
                else ""
            outcome = f"clean {100 * record['clean_accuracy']:.1f}%, worst case {robust}{flags} -> {spec.record.name}"
        else:
            self.failures.append((spec, error))
            outcome = f"FAILED: {error}"
        log.info("[%s] %s: %s", self.summary(), spec.label, outcome)

    def summary(self) -> str:
        running = min(len(self.in_flight), self.slots)
        left = len(self.pending) - self.finished - len(self.failures) - running
        parts = [f"{self.done_before + self.finished}/{self.total} done", f"{running} running", f"{left} left"]
        if self.failures:
            parts.append(f"{len(self.failures)} failed")
        if left + running:
            parts.append(self.eta())
        return ", ".join(parts)

    def eta(self) -> str:
        if not self.finished:
            return "time left estimated once a run has finished (proxy training not counted)"
        runs_left = len(self.pending) - self.finished - len(self.failures)
        seconds = (self._training_seconds / self._fraction_done * max(self._fraction_left, 0.0)
                   + self._other_seconds / self.finished * runs_left) / max(self.slots, 1)
        return f"about {format_duration(seconds)} left (plus any proxy training)"

    def elapsed(self) -> str:
        return format_duration(time.monotonic() - self.started)

    def refresh(self) -> None:
        """Called while nothing finishes: a summary line now and then, so a long run's log is not silent."""
        now = time.monotonic()
        if now - getattr(self, "_last_refresh", self.started) >= interval():
            self._last_refresh = now
            if len(self.in_flight) <= self.slots:
                log.info("[%s] still running: %s", self.summary(), ", ".join(sorted(p.stem for p in self.in_flight)))
            else:  # the Ray executor queues every run at once: which of them run now, only Ray knows
                log.info("[%s]", self.summary())


def _run_seconds(record: dict, took: float) -> tuple[float, float]:
    """A finished run's (training, everything else) seconds from its record, proxy training left out; the
    wall clock since it was started where the record has no timings."""
    try:
        training = float(record["training"]["seconds"])
        other = float(record["selection"]["seconds"]) + float(record["evaluation"]["seconds"]["total"])
    except (KeyError, TypeError, ValueError):
        return 0.0, max(0.0, took - record["selection"].get("proxy_training_seconds", 0.0))
    return training, other


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
            progress.finish(spec, None, _one_line(spec))
            continue
        except Exception as error:  # a plug-in's bug must not take the sweep (or a traceback) to the user
            reason = failure_line(spec, error)
            if not keep_going:
                raise UserError(f"{spec.label}: {reason}") from None
            progress.finish(spec, None, reason)
            continue
        progress.finish(spec, record)


def _one_line(spec: RunSpec) -> str:
    import sys

    error = sys.exc_info()[1]
    if isinstance(error, OSError) and not isinstance(error, UserError):
        return f"cannot read or write {error.filename or ''}: {error.strerror or error}".replace("  ", " ")
    return str(error)


def failure_line(spec: RunSpec, error: BaseException) -> str:
    """`Type: message` of an unexpected failure (a plug-in's bug, say); the traceback is logged when
    CORESET_BENCH_DEBUG is set, for whoever debugs the plug-in."""
    text = str(error).strip().splitlines()
    line = f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")
    if os.environ.get("CORESET_BENCH_DEBUG"):
        log.error("%s failed:\n%s", spec.label, "".join(traceback.format_exception(error)).rstrip())
        return line
    return f"{line} (CORESET_BENCH_DEBUG=1 shows the traceback)"


def prepare_pending(specs: list[RunSpec], done: dict[Path, dict], force: bool) -> list[RunSpec]:
    """The runs to do. A finished run's leftover partial state (killed between its record and the clean-up)
    is removed; `force` redoes finished runs, from scratch."""
    pending = []
    for spec in specs:
        if spec.record in done and not force:
            if spec.partial.exists():
                remove_partial(spec)
            continue
        if force:
            remove_partial(spec)
        pending.append(spec)
    return pending


@dataclass
class SweepResult:
    specs: list[RunSpec]
    records: list[dict]  # every record of the grid now on disk, in grid order
    failures: list[tuple[RunSpec, str]]
    skipped: int  # runs that were recorded before this call
    elapsed: str
    executor: str

    @property
    def flagged(self) -> list[dict]:
        return [record for record in self.records if record.get("flags")]


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


def _read(path: Path) -> dict:
    import json

    return json.loads(path.read_text())


def checked_records(specs: list[RunSpec], out: Path) -> dict[Path, dict]:
    try:
        return existing_records(specs)
    except SchemaError as error:
        more = f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
        raise UserError(f"{error.problems[0]}{more}; nothing was run: move the damaged record(s) out of {out} "
                        f"to redo those runs") from None


def partial_state(spec: RunSpec, protocol: Protocol) -> str:
    """How far an unfinished run got ("" when it has not started): for the dry run."""
    if not spec.partial.exists():
        return ""
    parts = ["selected"] if (spec.partial / "selection.sealed").exists() else []
    for i, lr in enumerate(protocol.lrs):
        checkpoint = spec.partial / f"lr{i}.checkpoint"
        if checkpoint.exists():
            state = read_checkpoint(checkpoint)
            epoch = state["epoch"] if state else "?"
            parts.append(f"lr {lr:g} at epoch {epoch}/{protocol.epochs}")
    return ", ".join(parts) or "started"


def dry_run_report(specs: list[RunSpec], done: dict[Path, dict], pending: list[RunSpec], *, protocol: Protocol,
                   methods: list[str], out: Path, cached_proxy_seeds: set[int] | None) -> list[str]:
    """The grid, its size, what is done, and how many shared proxies the runs left will train."""
    whole_pool = [m for m in methods if available_selectors()[m].whole_pool]
    shape = f"{len(methods)} method(s) x {len(protocol.fractions)} fraction(s) x {len(protocol.seeds)} seed(s)"
    if whole_pool:
        shape += f" ({', '.join(whole_pool)}: one run per seed)"
    partial = [spec for spec in pending if spec.partial.exists()]
    lines = [f"sweep of {len(specs)} run(s): {shape}; {protocol.dataset}, {protocol.model}, preset {protocol.preset}",
             f"attacks: {', '.join(spec.name for spec in protocol.attacks)}",
             f"records in {out}: {len(specs) - len(pending)} done, {len(partial)} partly done (resume where they "
             f"were), {len(pending) - len(partial)} not started"]
    proxy_seeds = sorted({spec.seed for spec in pending if spec.uses_proxy})
    users = sorted({spec.method for spec in pending if spec.uses_proxy})
    if not proxy_seeds:
        lines.append("proxies: none to train (no run left uses the shared proxy)")
    elif cached_proxy_seeds is None:
        lines.append(f"proxies: {len(proxy_seeds)} needed (seed(s) {', '.join(map(str, proxy_seeds))}), one per "
                     f"seed shared by {', '.join(users)}; the cache was not checked (the data is not here)")
    else:
        to_train = [seed for seed in proxy_seeds if seed not in cached_proxy_seeds]
        lines.append(f"proxies: {len(to_train)} to train, {len(proxy_seeds) - len(to_train)} in the cache "
                     f"(one per seed, shared by {', '.join(users)})")
    own = {}
    for spec in pending:
        count, _ = create_selector(spec.method, spec.params).own_proxies()
        if count:
            own.setdefault(spec.method, (count, set()))[1].add(spec.seed)
    for method, (count, seeds) in own.items():
        lines.append(f"{method} trains {count} proxies of its own per seed: up to {count * len(seeds)} for the "
                     f"{len(seeds)} seed(s) left (those in the cache are loaded instead)")
    rows = [("status", "method", "fraction", "seed", "record")]
    for spec in specs:
        if spec.record in done and spec not in pending:
            status = "done"
        else:
            state = partial_state(spec, protocol)
            status = f"partial ({state})" if state else "to run"
        rows.append((status, spec.method, f"{spec.fraction:g}", str(spec.seed), spec.record.name))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    lines += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths)) + "  " + row[-1] for row in rows]
    return lines


def dry_run(*, protocol: Protocol, methods: list[str], params: dict[str, dict], out: Path, cache_dir: Path,
            data_root: Path | None, force: bool = False) -> list[str]:
    """The dry run's lines. It never downloads: the proxy cache is checked only when the data is already here."""
    from benchmark.proxy import build_proxy

    out = Path(out)
    specs = expand_grid(protocol, methods, params, out)
    done = checked_records(specs, out)
    pending = [spec for spec in specs if force or spec.record not in done]
    cached = None
    if any(spec.uses_proxy for spec in pending):
        try:  # which proxies are cached depends on the data's contents: load it (on the CPU), if it is here
            data, _ = load_protocol_data(protocol, device=torch.device("cpu"), data_root=data_root,
                                         cache_dir=cache_dir, download=False)
            cached = {seed for seed in protocol.seeds
                      if build_proxy(protocol, data, seed=seed, cache_dir=cache_dir).cached()}
        except UserError as error:
            log.warning("proxy cache not checked: %s", error)
    return dry_run_report(specs, done, pending, protocol=protocol, methods=methods, out=out, cached_proxy_seeds=cached)
