"""Sweeps: the grid of a protocol (methods x fractions x seeds) expanded once, checked against what is on
disk, and run one run at a time here (`run_local`) or as Ray tasks (`benchmark.ray_executor`).

Whatever kills a sweep, running it again finishes it: finished runs have their record and are skipped,
an unfinished one resumes from its partial state (selection, per-epoch checkpoints), and the shared proxy
of a (dataset, model, seed) comes from the cache. The final records are those of an uninterrupted sweep."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from benchmark.errors import UserError
from benchmark.models import check_model_name
from benchmark.protocol import Protocol
from benchmark.run import RunSpec, load_protocol_data, remove_partial, run_one, run_spec
from benchmark.schema import load_records
from benchmark.selection import available_selectors, create_selector

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
    `whole_pool` method (full) runs once per seed. Unknown or ill-typed parameters fail here, at once."""
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
    """Runs done / running / left, and the time left, estimated from the finished runs' pace per unit of
    work (a run's work is taken as proportional to its fraction: its coreset size)."""

    total: int
    done_before: int
    pending: list[RunSpec]
    slots: int = 1  # runs that can be running at once
    finished: int = 0
    failures: list[tuple[RunSpec, str]] = field(default_factory=list)
    in_flight: set = field(default_factory=set)
    started: float = field(default_factory=lambda: time.monotonic())

    def __post_init__(self):
        self._pace_from = None  # the first run's start: loading data and starting Ray do not count in the pace
        self._work_done = 0.0
        self._work_left = sum(spec.fraction for spec in self.pending)
        self._bar = tqdm(total=len(self.pending), desc="sweep", unit="run", disable=None, leave=False)

    def start(self, spec: RunSpec) -> None:
        if self._pace_from is None:
            self._pace_from = time.monotonic()
        self.in_flight.add(spec.record)
        self.refresh()

    def finish(self, spec: RunSpec, record: dict | None, error: str | None = None) -> None:
        self.in_flight.discard(spec.record)
        self._work_left -= spec.fraction
        if error is None:
            self.finished += 1
            self._work_done += spec.fraction
            attacks = ", ".join(f"{a['eps'] * 255:g}/255 {100 * a['accuracy']:.1f}%" for a in record["attacks"])
            outcome = f"clean {100 * record['clean_accuracy']:.1f}%, FGSM {attacks} -> {spec.record.name}"
        else:
            self.failures.append((spec, error))
            outcome = f"FAILED: {error}"
        self._bar.update(1)
        self.refresh()
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
        if not self._work_done:
            return "time left estimated after the first run"
        seconds = (time.monotonic() - self._pace_from) / self._work_done * max(self._work_left, 0.0)
        return f"about {format_duration(seconds)} left"

    def elapsed(self) -> str:
        return format_duration(time.monotonic() - self.started)

    def refresh(self) -> None:
        self._bar.set_postfix_str(self.summary(), refresh=True)

    def close(self) -> None:
        self._bar.close()


def format_duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def run_local(pending: list[RunSpec], progress: Progress, *, protocol: Protocol, cache_dir: Path,
              device: torch.device, data_root: Path | None, keep_going: bool) -> None:
    """One run at a time on this machine, the data loaded once. A run that fails on bad input is reported
    and the sweep goes on (`keep_going`), or it stops the sweep."""
    data, pool_indices = load_protocol_data(protocol, device=device, data_root=data_root, cache_dir=cache_dir)
    for spec in pending:
        progress.start(spec)
        try:
            record = run_one(spec, protocol=protocol, data=data, pool_indices=pool_indices, cache_dir=cache_dir)
        except UserError as error:
            if not keep_going:
                raise
            progress.finish(spec, None, str(error))
            continue
        progress.finish(spec, record)


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


def partial_state(spec: RunSpec, protocol: Protocol) -> str:
    """How far an unfinished run got ("" when it has not started): for the dry run."""
    if not spec.partial.exists():
        return ""
    parts = ["selected"] if (spec.partial / "selection.npz").exists() else []
    for i, lr in enumerate(protocol.lrs):
        checkpoint = spec.partial / f"lr{i}.pt"
        if checkpoint.exists():
            try:
                epoch = torch.load(checkpoint, map_location="cpu", weights_only=True)["epoch"]
            except Exception:
                epoch = "?"
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
             f"records in {out}: {len(specs) - len(pending)} done, {len(partial)} partly done (resume where they "
             f"were), {len(pending) - len(partial)} not started"]
    proxy_seeds = sorted({spec.seed for spec in pending if spec.uses_proxy})
    users = sorted({spec.method for spec in pending if spec.uses_proxy})
    if not proxy_seeds:
        lines.append("proxies: none to train (no run left uses the shared proxy)")
    elif cached_proxy_seeds is None:
        lines.append(f"proxies: {len(proxy_seeds)} needed (seed(s) {', '.join(map(str, proxy_seeds))}), one per "
                     f"seed shared by {', '.join(users)}; the cache was not checked (the data did not load)")
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
