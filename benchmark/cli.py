"""`python -m benchmark VERB ...` (also installed as `coreset-bench`). Bad input ends with one line on
stderr and exit status 2; nothing is written for a run that failed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

from benchmark.errors import UserError

log = logging.getLogger("benchmark")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UserError(f"{self.prog}: {message} (see --help)")


def _numbers(kind, scale: float = 1.0):
    def parse(text: str):
        try:
            return tuple(kind(item) * scale if scale != 1.0 else kind(item)
                         for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def _param(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _add_protocol_options(parser: argparse.ArgumentParser, grid: bool) -> None:
    group = parser.add_argument_group("protocol (defaults from the preset)")
    group.add_argument("--preset", default="standard",
                       help="standard (CIFAR-10, GPU), smoke (digits, CPU, a minute) or cifar10-cpu (a CIFAR-10 "
                       "subset at CPU scale, the published leaderboard's)")
    group.add_argument("--dataset", help="cifar10, digits or imagefolder:PATH")
    group.add_argument("--model", help="mobilenetv2_100, mobilenetv2_050, ... or any timm model name")
    if grid:
        group.add_argument("--fractions", type=_numbers(float), help="coreset fractions, e.g. 0.1,0.5")
        group.add_argument("--seeds", type=_numbers(int), help="distinct integer seeds, e.g. 0,1,2")
        group.add_argument("--epochs", type=int, help="final training epochs")
        group.add_argument("--lrs", type=_numbers(float), help="lr grid; the best on validation is kept")
        group.add_argument("--eps", type=_numbers(float, 1 / 255), help="FGSM eps in 1/255 units, e.g. 1,2,4,8,16")
    group.add_argument("--proxy-epochs", type=int, help="epochs of the selection proxy")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--train-per-class", type=int, metavar="N",
                       help="a seeded class-balanced subset: N training images per class (0: all)")
    group.add_argument("--test-per-class", type=int, metavar="N", help="likewise for the test set")
    where = parser.add_argument_group("where things are")
    where.add_argument("--data-root", type=Path, help="directory holding (or receiving) CIFAR-10")
    where.add_argument("--cache-dir", type=Path, help="proxy and decoded-image cache "
                       "(default $CORESET_BENCH_CACHE or ~/.cache/coreset-bench)")
    where.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    if grid:
        where.add_argument("--out", type=Path, default=Path("results"), help="record directory (default results/)")
        where.add_argument("--force", action="store_true", help="redo every run, from the start, records or not")


def _protocol(args):
    from benchmark.protocol import preset

    overrides = {"dataset": args.dataset, "model": args.model, "proxy_epochs": args.proxy_epochs,
                 "batch_size": args.batch_size, "train_per_class": args.train_per_class,
                 "test_per_class": args.test_per_class}
    for name in ("fractions", "seeds", "epochs", "lrs", "eps"):
        overrides[name] = getattr(args, name, None)
    return preset(args.preset).with_overrides(**overrides)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmark", description="Accuracy and FGSM robustness of models trained on "
                     "coresets chosen by data-selection methods.")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the final table")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = verbs.add_parser("run", help="select, train, attack and record, for each fraction and seed",
                           description="Runs the protocol for one method: one JSON record per "
                           "(fraction, seed) under --out, then a Markdown table of those runs.")
    run.add_argument("--method", required=True, help="a registered selector (see `benchmark methods`)")
    run.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                     help="a selector parameter (repeatable)")
    _add_protocol_options(run, grid=True)

    sweep = verbs.add_parser("sweep", help="run a grid of methods x fractions x seeds; resumes after any kill",
                             description="Expands the grid of the protocol for the given methods, skips runs "
                             "whose record exists, resumes unfinished runs from their last epoch, and runs the rest "
                             "here one at a time or as Ray tasks. Runs again after a kill finish the same records.")
    sweep.add_argument("--methods", required=True, help="all, or a comma-separated list such as cal,random")
    sweep.add_argument("--param", type=_param, action="append", default=[], metavar="METHOD.KEY=VALUE",
                       help="a selector parameter for one method, e.g. grand.repeats=5 (repeatable)")
    _add_protocol_options(sweep, grid=True)
    sweep.add_argument("--dry-run", action="store_true",
                       help="print the grid, what is done and the proxies to train; run nothing")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: one run at a time here; ray: each run a Ray task (1 GPU where there are GPUs)")
    sweep.add_argument("--address", help="Ray cluster to join (e.g. auto); default: a new local Ray instance")
    sweep.add_argument("--cpus-per-run", type=int, default=1, metavar="N",
                       help="CPUs (torch threads) per Ray task on a cluster without GPUs (default 1)")

    select = verbs.add_parser("select", help="export the coreset a method chooses, as JSON",
                              description="Selects one coreset and writes its indices (into the pool and "
                              "into the training set) as JSON.")
    select.add_argument("--method", required=True)
    select.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    select.add_argument("--fraction", type=float, required=True)
    select.add_argument("--seed", type=int, required=True)
    select.add_argument("--out", type=Path, required=True, help="JSON file to write")
    _add_protocol_options(select, grid=False)

    verbs.add_parser("methods", help="list the registered selectors with their papers",
                     description="Lists every registered selector, its parameters and its paper.")

    board = verbs.add_parser("leaderboard", help="build the leaderboard pages from run records",
                             description="Validates every record, then writes index.html (tables and "
                             "robustness curves, works offline), leaderboard.md and copies of the records "
                             "under records/ into --out. Invalid records: nothing is written.")
    board.add_argument("--records", type=Path, nargs="+", default=[Path("submissions")], metavar="DIR",
                       help="record files or directories, searched recursively (default submissions/)")
    board.add_argument("--out", type=Path, default=Path("site"),
                       help="site directory: new, empty, or a site written before (default site/)")

    validate = verbs.add_parser("validate", help="check run records against the schema",
                                description="Checks every *.json under the given paths (recursively) "
                                "against the record schema and for duplicate runs; lists every problem.")
    validate.add_argument("paths", type=Path, nargs="*", default=[Path("submissions")], metavar="PATH",
                          help="record files or directories (default submissions/)")
    return parser


def _cmd_methods(args) -> None:
    import dataclasses

    from benchmark.selection import available_selectors

    for name, cls in available_selectors().items():
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)) or "no parameters"
        print(f"{name:22} {cls.paper}\n{'':22} parameters: {params}" + (f"\n{'':22} {cls.url}" if cls.url else ""))


def _cmd_run(args) -> None:
    _sweep(args, [args.method], {args.method: dict(args.param)}, keep_going=False)


def _cmd_sweep(args) -> None:
    from benchmark.sweep import method_params, parse_methods

    if args.executor != "ray" and args.address:
        raise UserError("--address is for --executor ray; add --executor ray to use a Ray cluster")
    if args.cpus_per_run < 1:
        raise UserError(f"--cpus-per-run must be at least 1, got {args.cpus_per_run}")
    methods = parse_methods(args.methods)
    _sweep(args, methods, method_params(methods, args.param), keep_going=True, executor=args.executor,
           dry_run=args.dry_run)


def _sweep(args, methods: list[str], params: dict[str, dict], *, keep_going: bool, executor: str = "local",
           dry_run: bool = False) -> None:
    """`run` is a sweep of one method that stops at its first failure; `sweep` reports failures at the end."""
    from tqdm.contrib.logging import logging_redirect_tqdm

    from benchmark.data import default_cache_dir
    from benchmark.records import ensure_writable, remove_stale_temporaries
    from benchmark.run import resolve_device
    from benchmark.schema import SchemaError
    from benchmark.summary import markdown_table
    from benchmark.sweep import Progress, existing_records, expand_grid, prepare_pending, run_local

    protocol = _protocol(args)
    cache_dir = args.cache_dir or default_cache_dir()
    specs = expand_grid(protocol, methods, params, args.out)
    try:
        done = existing_records(specs)
    except SchemaError as error:
        more = f" (and {len(error.problems) - 1} more)" if len(error.problems) > 1 else ""
        raise UserError(f"{error.problems[0]}{more}; nothing was run: move the damaged record(s) out of {args.out} "
                        f"to redo those runs") from None
    if dry_run:
        _print_dry_run(args, specs, done, protocol, methods, cache_dir)
        return
    ensure_writable(args.out)
    stale = remove_stale_temporaries(args.out, cache_dir)
    if stale:
        log.info("removed %d temporary file(s) left by writes that were killed", stale)
    pending = prepare_pending(specs, done, args.force)
    if len(pending) < len(specs):
        log.info("%d of %d run(s) already recorded in %s: skipped (--force redoes them)", len(specs) - len(pending),
                 len(specs), args.out)
    if pending:
        device = resolve_device(args.device) if executor == "local" else None
        progress = Progress(total=len(specs), done_before=len(specs) - len(pending), pending=pending)
        log.info("%d of %d run(s) to do (%s executor), records in %s", len(pending), len(specs), executor, args.out)
        try:
            with logging_redirect_tqdm():
                if executor == "ray":
                    from benchmark.ray_executor import run_on_ray

                    run_on_ray(pending, progress, protocol=protocol, cache_dir=cache_dir, data_root=args.data_root,
                               address=args.address, cpus_per_run=args.cpus_per_run)
                else:
                    run_local(pending, progress, protocol=protocol, cache_dir=cache_dir, device=device,
                              data_root=args.data_root, keep_going=keep_going)
        finally:
            progress.close()
        log.info("%s; took %s", progress.summary(), progress.elapsed())
        failures = progress.failures
    else:
        failures = []
    records = [json.loads(spec.record.read_text()) for spec in specs if spec.record.exists()]
    if records:
        print(markdown_table(records))
    log.info("%d of %d record(s) in %s", len(records), len(specs), args.out)
    if failures:
        for spec, reason in failures:
            print(f"failed: {spec.label}: {reason}", file=sys.stderr)
        raise UserError(f"{len(failures)} of {len(specs)} run(s) failed (listed above, each retried "
                        f"{'once' if executor == 'ray' else 'never'}); the others are recorded: fix the cause and "
                        f"run the same command again to do only those")


def _print_dry_run(args, specs, done, protocol, methods, cache_dir) -> None:
    from benchmark.proxy import ProxyFeatures
    from benchmark.run import load_protocol_data, resolve_device
    from benchmark.sweep import dry_run_report

    pending = [spec for spec in specs if args.force or spec.record not in done]
    cached = None
    if any(spec.uses_proxy for spec in pending):
        try:  # which proxies are cached depends on the data's contents: load it (on the CPU)
            data, _ = load_protocol_data(protocol, device=resolve_device("cpu"), data_root=args.data_root,
                                         cache_dir=cache_dir)
            cached = {seed for seed in protocol.seeds
                      if ProxyFeatures(data, model=protocol.model, seed=seed, epochs=protocol.proxy_epochs,
                                       lr=protocol.proxy_lr, batch_size=protocol.batch_size,
                                       cache_dir=cache_dir).cached()}
        except UserError as error:
            log.warning("proxy cache not checked: %s", error)
    print("\n".join(dry_run_report(specs, done, pending, protocol=protocol, methods=methods, out=args.out,
                                   cached_proxy_seeds=cached)))


def _cmd_select(args) -> None:
    from benchmark.data import default_cache_dir
    from benchmark.protocol import Protocol
    from benchmark.records import write_json
    from benchmark.run import load_protocol_data, resolve_device, select_coreset
    from benchmark.selection import create_selector

    protocol: Protocol = _protocol(args).with_overrides(fractions=(args.fraction,), seeds=(args.seed,))
    selector = create_selector(args.method, protocol.method_params(args.method, dict(args.param)))
    cache_dir = args.cache_dir or default_cache_dir()
    data, pool_indices = load_protocol_data(protocol, device=resolve_device(args.device), data_root=args.data_root,
                                            cache_dir=cache_dir)
    selection, seconds = select_coreset(selector=selector, data=data, protocol=protocol,
                                           fraction=args.fraction, seed=args.seed, cache_dir=cache_dir)
    write_json({"method": args.method, "method_params": selector.params(), "dataset": data.dataset,
                "model": protocol.model, "fraction": args.fraction, "seed": args.seed,
                "budget": len(selection.indices), "seconds": seconds,
                "pool_indices": selection.indices.tolist(),
                "train_indices": pool_indices[selection.indices].tolist(),
                "weights": None if selection.weights is None else selection.weights.tolist()}, args.out)
    log.info("%d indices written to %s", len(selection.indices), args.out)


def _cmd_leaderboard(args) -> None:
    from benchmark.schema import SchemaError
    from leaderboard import build_site

    try:
        groups = build_site(args.records, args.out)
    except SchemaError as error:
        print("\n".join(error.problems), file=sys.stderr)
        raise UserError(f"{error}; nothing written (run `python -m benchmark validate` for the same list)") from None
    log.info("leaderboard of %d section(s) written to %s (index.html, leaderboard.md, records/)",
             len(groups), args.out)


def _cmd_validate(args) -> None:
    from benchmark.schema import SchemaError, load_records

    try:
        records = load_records(args.paths, allow_empty=True)
    except SchemaError as error:
        print("\n".join(error.problems), file=sys.stderr)
        raise
    if not records:
        print(f"no record files (*.json) under {', '.join(str(path) for path in args.paths)}: nothing to check")
        return
    runs = {(r.record["method"], r.record["dataset"], r.record["model"], r.record["preset"]) for r in records}
    print(f"{len(records)} record(s) valid ({len(runs)} method/dataset/model/preset combination(s)) in "
          f"{', '.join(str(path) for path in args.paths)}")


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
        verbs = {"run": _cmd_run, "sweep": _cmd_sweep, "select": _cmd_select, "methods": _cmd_methods,
                 "leaderboard": _cmd_leaderboard, "validate": _cmd_validate}
        verbs[args.verb](args)
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # an unwritable --out, a full disk: the record was not written
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot read or write{where}: {error.strerror or error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished records and the checkpoints of the unfinished run are kept; run the same "
              "command again to resume", file=sys.stderr)
        return 130
