"""Planning a sweep: the grid of a protocol (methods x fractions x seeds) expanded once into `RunSpec`s, checked
against the records already on disk, and what is left to run; the dry run's report. Running the plan is
`benchmark.sweep`'s."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from benchmark.errors import UserError
from benchmark.models import check_model_name
from benchmark.protocol import Protocol
from benchmark.record import Record
from benchmark.run import RunSpec, load_protocol_data, remove_partial, run_spec
from benchmark.schema import SchemaError, load_records
from benchmark.selection import available_selectors, create_selector
from benchmark.storage import read_checkpoint

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


def existing_records(specs: list[RunSpec]) -> dict[Path, Record]:
    """The records already written for this grid, checked against the schema: a damaged one stops the
    sweep (listed, with what to do) rather than being overwritten or silently counted as done."""
    found = [spec.record for spec in specs if spec.record.exists()]
    return {loaded.path: loaded.record for loaded in load_records(found, allow_empty=True)} if found else {}


def prepare_pending(specs: list[RunSpec], done: dict[Path, Record], force: bool) -> list[RunSpec]:
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


def checked_records(specs: list[RunSpec], out: Path) -> dict[Path, Record]:
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


def dry_run_report(specs: list[RunSpec], done: dict[Path, Record], pending: list[RunSpec], *, protocol: Protocol,
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
