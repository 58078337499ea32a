"""Progress of a long phase: a tqdm bar on a terminal, and off one (CI, nohup, a pipe) a plain log line every
`CORESET_BENCH_PROGRESS_SECONDS` seconds (default 30), so a log never goes quiet for minutes."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from tqdm.auto import tqdm

from benchmark.record import Record, eps_text

log = logging.getLogger("benchmark")
T = TypeVar("T")


def interval() -> float:
    try:
        return max(0.0, float(os.environ.get("CORESET_BENCH_PROGRESS_SECONDS", "30")))
    except ValueError:
        return 30.0


def on_terminal() -> bool:
    return sys.stderr.isatty()


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress(iterable: Iterable[T], *, desc: str, total: int | None = None, unit: str = "it",
             initial: int = 0) -> Iterator[T]:
    """Iterates over `iterable`, reporting how far it got."""
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    if on_terminal():
        yield from tqdm(iterable, desc=desc, total=total, unit=unit, leave=False, initial=initial)
        return
    every = interval()
    started = last = time.monotonic()
    done = initial
    for item in iterable:
        yield item
        done += 1
        now = time.monotonic()
        if now - last >= every and (total is None or done < total):
            last = now
            log.info("%s", _line(desc, done, total, unit, now - started, done - initial))


def _line(desc: str, done: int, total: int | None, unit: str, elapsed: float, this_session: int) -> str:
    if not total:
        return f"{desc}: {done} {unit} after {format_duration(elapsed)}"
    left = ""
    if this_session:
        left = f", about {format_duration(elapsed / this_session * (total - done))} left"
    return f"{desc}: {done}/{total} {unit} ({100 * done / total:.0f} %) after {format_duration(elapsed)}{left}"


@dataclass
class Progress:
    """Runs done / running / left, and the time left, estimated from the finished runs' own timings (their
    records'): training takes time in proportion to the fraction, selection and attacks about the same per
    run. The records' timings, not the wall clock, because the Ray executor queues every run at once (a run's
    wait in the queue is not its cost); proxy trainings, done once per seed, are left out of the pace."""

    total: int
    done_before: int
    pending: list  # the RunSpecs to do (`benchmark.run.RunSpec`)
    slots: int = 1  # runs that can be running at once
    finished: int = 0
    failures: list[tuple] = field(default_factory=list)  # (RunSpec, reason)
    in_flight: set = field(default_factory=set)
    started: float = field(default_factory=lambda: time.monotonic())

    def __post_init__(self):
        self._fraction_done = 0.0  # of the finished runs: their fractions, training and other seconds
        self._training_seconds = 0.0
        self._other_seconds = 0.0
        self._fraction_left = sum(spec.fraction for spec in self.pending)
        self._starts: dict[Path, float] = {}

    def start(self, spec) -> None:
        self.in_flight.add(spec.record)
        self._starts[spec.record] = time.monotonic()

    def finish(self, spec, record: Record | None, error: str | None = None) -> None:
        self.in_flight.discard(spec.record)
        self._fraction_left -= spec.fraction
        took = time.monotonic() - self._starts.pop(spec.record, time.monotonic())
        if error is None:
            self.finished += 1
            self._fraction_done += spec.fraction
            training, other = _run_seconds(record, took)
            self._training_seconds += training
            self._other_seconds += other
            robust = ", ".join(f"{eps_text(eps)} {100 * acc:.1f}%" for eps, acc in record.worst_linf().items())
            flags = f" [flagged: {', '.join(record.flag_codes)}]" if record.flags else ""
            outcome = f"clean {100 * record.clean_accuracy:.1f}%, worst case {robust}{flags} -> {spec.record.name}"
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


def _run_seconds(record: Record, took: float) -> tuple[float, float]:
    """A finished run's (training, everything else) seconds from its record, proxy training left out; the
    wall clock since it was started where the record has no timings."""
    seconds = record.evaluation.seconds if record.evaluation else None
    if seconds is None or seconds.total is None:
        return 0.0, max(0.0, took - (record.selection.proxy_training_seconds or 0.0))
    return float(record.training.seconds), float(record.selection.seconds) + float(seconds.total)
