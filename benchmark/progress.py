"""Progress of a long phase: a tqdm bar on a terminal, and off one (CI, nohup, a pipe) a plain log line every
`CORESET_BENCH_PROGRESS_SECONDS` seconds (default 30), so a log never goes quiet for minutes."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

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
