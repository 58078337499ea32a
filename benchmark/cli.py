"""`python -m benchmark VERB ...` (also installed as `coreset-bench`): argument parsing and printing only; the
work is done by functions that return results (`benchmark.sweep.sweep`, `benchmark.reattack.reattack`, ...).
Bad input ends with one line on stderr and exit status 2; nothing is written for a run that failed."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

import benchmark
from benchmark.errors import UserError

log = logging.getLogger("benchmark")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, not argparse's usage block
        raise UserError(f"{self.prog}: {message} (see --help)")


def _numbers(kind):
    def parse(text: str):
        try:
            return tuple(kind(item) for item in text.split(",") if item.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated {kind.__name__}s, got {text!r}") from None
    return parse


def _eps_grid(text: str) -> tuple[float, ...]:
    """L-infinity eps: 8/255, or plain numbers in 1/255 units (`benchmark.record.parse_eps`)."""
    from benchmark.record import parse_eps

    try:
        return tuple(parse_eps(item) for item in text.split(",") if item.strip())
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _param(text: str) -> tuple[str, str]:
    if "=" not in text:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key.strip(), value.strip()


def _names(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def _add_protocol_options(parser: argparse.ArgumentParser, grid: bool) -> None:
    group = parser.add_argument_group("protocol (defaults from the preset)")
    group.add_argument("--preset", default="standard",
                       help="standard (CIFAR-10, GPU), smoke (digits, CPU, a minute) or cifar10-cpu (a CIFAR-10 "
                       "subset at CPU scale, the published leaderboard's); `benchmark presets` lists them")
    group.add_argument("--dataset", help="a registered dataset (`benchmark datasets`), or imagefolder:PATH")
    group.add_argument("--model", help="mobilenetv2_100, mobilenetv2_050, ... or any timm model name")
    group.add_argument("--unbalanced", action="store_true",
                       help="select over the whole pool instead of per class (a protocol variant: recorded)")
    if grid:
        group.add_argument("--fractions", type=_numbers(float), help="coreset fractions, e.g. 0.1,0.5")
        group.add_argument("--seeds", type=_numbers(int), help="distinct integer seeds, e.g. 0,1,2")
        group.add_argument("--epochs", type=int, help="final training epochs")
        group.add_argument("--lrs", type=_numbers(float), help="lr grid; the best on validation is kept")
        group.add_argument("--eps", type=_eps_grid,
                           help="the L-infinity eps grid, e.g. 1/255,2/255,8/255 (or 1,2,8: plain numbers are in "
                           "1/255 units)")
        group.add_argument("--attacks", type=_names, metavar="A,B",
                           help="the attack suite (`benchmark attacks`), e.g. fgsm,pgd; the preset's parameters "
                           "are kept for attacks it has")
        group.add_argument("--attack-param", type=_param, action="append", default=[], metavar="ATTACK.KEY=VALUE",
                           help="an attack parameter, e.g. pgd.steps=50 (repeatable)")
        group.add_argument("--cross-check-images", type=int, metavar="N",
                           help="images each attack is cross-checked on against its reference implementation")
        group.add_argument("--cascade", action=argparse.BooleanOptionalAction, default=None,
                           help="run each attack after the first only on the images the earlier ones left robust "
                           "(the same worst case for less work; per-attack accuracies then not measured)")
    group.add_argument("--training", metavar="NAME",
                       help="how the final model learns (`benchmark training`): standard, fgsm-rs, pgd-at, trades")
    group.add_argument("--training-param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                       help="a training-method parameter, e.g. eps=4/255 or beta=6 (repeatable; eps as k/255, or "
                       "plain numbers in 1/255 units as --eps)")
    group.add_argument("--adversarial-proxy", action=argparse.BooleanOptionalAction, default=None,
                       help="train the selection proxy with the (adversarial) training method too, so selectors "
                       "that read it see a robust model")
    group.add_argument("--monitor-images", type=int, metavar="N",
                       help="held-out validation images attacked after each epoch of adversarial training")
    group.add_argument("--proxy-epochs", type=int, help="epochs of the selection proxy")
    group.add_argument("--batch-size", type=int)
    group.add_argument("--train-per-class", type=int, metavar="N",
                       help="a seeded class-balanced subset: N training images per class (0: all)")
    group.add_argument("--test-per-class", type=int, metavar="N", help="likewise for the test set")
    _add_where_options(parser, out=grid)


def _add_where_options(parser: argparse.ArgumentParser, out: bool) -> None:
    where = parser.add_argument_group("where things are")
    where.add_argument("--data-root", type=Path, help="directory holding (or receiving) downloaded datasets")
    where.add_argument("--cache-dir", type=Path, help="proxy and decoded-image cache "
                       "(default $CORESET_BENCH_CACHE or ~/.cache/coreset-bench)")
    where.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    where.add_argument("--threads", type=int, metavar="N",
                       help="torch CPU threads (default: torch's choice). CPU results depend on it; records say "
                            "how many were used (the publishing script runs one-thread tasks)")
    where.add_argument("--compile", choices=("none", "default", "reduce-overhead", "max-autotune",
                                             "max-autotune-no-cudagraphs"),
                       help="torch.compile the training steps on a GPU with this mode (recorded; default none: "
                       "eager). reduce-overhead replays each step as CUDA graphs")
    where.add_argument("--eval-batch-size", type=int, metavar="N",
                       help="images per attack batch (default: from the model's memory needs and the device)")
    if out:
        where.add_argument("--out", type=Path, default=Path("results"), help="record directory (default results/)")
        where.add_argument("--force", action="store_true", help="redo every run, from the start, records or not")


def _protocol(args):
    import dataclasses

    from benchmark.protocol import ProtocolError, preset
    from benchmark.record import AttackSpec

    base = preset(args.preset)
    overrides = {"dataset": args.dataset, "model": args.model, "proxy_epochs": args.proxy_epochs,
                 "batch_size": args.batch_size, "train_per_class": args.train_per_class,
                 "test_per_class": args.test_per_class, "balance": False if args.unbalanced else None,
                 "adversarial_proxy": args.adversarial_proxy, "monitor_images": args.monitor_images,
                 "training": _training_spec(base, args.training, args.training_param)}
    for name in ("fractions", "seeds", "epochs", "lrs", "eps", "cross_check_images", "cascade"):
        overrides[name] = getattr(args, name, None)
    names = getattr(args, "attacks", None)
    given = getattr(args, "attack_param", [])
    if names is not None or given:
        specs = {spec.name: spec for spec in base.attacks}
        chosen = [specs.get(name, AttackSpec(name)) for name in (names if names is not None else list(specs))]
        for key, value in given:
            name, _, param = key.rpartition(".")
            index = next((i for i, spec in enumerate(chosen) if spec.name == name), None)
            if index is None:
                raise UserError(f"--attack-param {key}={value}: name an attack of the suite as ATTACK.KEY=VALUE "
                                f"({', '.join(spec.name for spec in chosen)})")
            chosen[index] = dataclasses.replace(chosen[index], params={**chosen[index].params, param: value})
        overrides.update(attacks=tuple(chosen))
    try:
        return base.with_overrides(**overrides)
    except ProtocolError as error:  # the protocol names its field; say which option (or preset) set it
        option = OPTIONS.get(error.field)
        given = option and any(getattr(args, name, None) is not None and getattr(args, name) != []
                               for name in option[1])
        where = option[0] if given else f"preset {args.preset}: {error.field}"
        raise UserError(f"{where}: {str(error).split(': ', 1)[1]}") from None


def _training_spec(base, name: str | None, given: list[tuple[str, str]]):
    """The training method the options ask for: the preset's (with its parameters, when the name is the same),
    or another; an eps given as k/255 is read as eps does."""
    from benchmark.record import TrainingSpec, parse_eps

    if name is None and not given:
        return None
    spec = base.training if name in (None, base.training.name) else TrainingSpec(name)
    params = dict(spec.params)
    for key, value in given:
        if key == "eps":
            try:
                value = parse_eps(value)
            except ValueError as error:
                raise UserError(f"--training-param eps={value}: {error}") from None
        params[key] = value
    return TrainingSpec(spec.name, params)


# protocol field -> (its options, the argparse names that set it)
OPTIONS = {"fractions": ("--fractions", ("fractions",)), "seeds": ("--seeds", ("seeds",)),
           "epochs": ("--epochs", ("epochs",)), "proxy_epochs": ("--proxy-epochs", ("proxy_epochs",)),
           "batch_size": ("--batch-size", ("batch_size",)), "lrs": ("--lrs", ("lrs",)), "eps": ("--eps", ("eps",)),
           "train_per_class": ("--train-per-class", ("train_per_class",)),
           "test_per_class": ("--test-per-class", ("test_per_class",)),
           "cross_check_images": ("--cross-check-images", ("cross_check_images",)),
           "attacks": ("--attacks / --attack-param", ("attacks", "attack_param")),
           "training": ("--training / --training-param", ("training", "training_param")),
           "adversarial_proxy": ("--adversarial-proxy", ("adversarial_proxy",)),
           "monitor_images": ("--monitor-images", ("monitor_images",))}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="benchmark", description="Accuracy and adversarial robustness of models trained on "
                     "coresets chosen by data-selection methods.")
    parser.add_argument("--version", action="version", version=f"coreset-bench {benchmark.__version__}")
    parser.add_argument("-q", "--quiet", action="store_true", help="only errors and the final table")
    verbs = parser.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    run = verbs.add_parser("run", help="select, train, attack and record, for each fraction and seed",
                           description="Runs the protocol for one method: one JSON record per "
                           "(fraction, seed) under --out (with its selection, model weights and gallery beside it), "
                           "then a Markdown table of those runs.")
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
                       help="print the grid, what is done and the proxies to train; run nothing, download nothing")
    sweep.add_argument("--executor", choices=("local", "ray"), default="local",
                       help="local: one run at a time here; ray: each run a Ray task (1 GPU where there are GPUs)")
    sweep.add_argument("--address", help="Ray cluster to join (e.g. auto; securing it is yours: README, Security); "
                       "default: a new local Ray instance protected by a fresh token (Ray's servers listen on every "
                       "interface)")
    sweep.add_argument("--cpus-per-run", type=int, default=1, metavar="N",
                       help="CPUs (torch threads) per Ray task on a cluster without GPUs (default 1)")

    job = verbs.add_parser("job", help="a board's next runs within a time budget, several per device, packed into "
                           "one archive (for GPU windows)",
                           description="Runs the next missing runs of a board in priority order (the study's "
                           "methods and the full pool first, smaller fractions first, seeds in order), several at "
                           "once on one device, starting a run only if it can finish before the budget ends, then "
                           "packs the finished records (and model weights while they fit) into one archive.")
    job.add_argument("--methods", default="all", help="all (default), or a comma-separated list")
    job.add_argument("--param", type=_param, action="append", default=[], metavar="METHOD.KEY=VALUE")
    _add_protocol_options(job, grid=True)
    job.add_argument("--budget", type=float, required=True, metavar="SECONDS",
                     help="wall-clock seconds the job may take, packing included")
    job.add_argument("--margin", type=float, default=30.0, metavar="SECONDS",
                     help="seconds kept for packing at the end (default 30)")
    job.add_argument("--runs-per-device", type=int, default=1, metavar="K", help="runs at once (default 1)")
    job.add_argument("--done", type=Path, action="append", default=[], metavar="DIR",
                     help="records already on the board (e.g. submissions/standard): their runs are skipped and "
                     "their timings estimate the others' (repeatable)")
    job.add_argument("--archive", type=Path, metavar="FILE", help="the archive to write (default OUT/job.tar.gz)")
    job.add_argument("--archive-limit-mb", type=float, default=16.0, metavar="MB",
                     help="the archive's size limit in MiB (default 16)")
    job.add_argument("--unfinished", type=Path, metavar="DIR",
                     help="runs carried from the last window, under way and not yet recorded (e.g. "
                     ".gpu/unfinished; missing or empty: none): they resume first, where they stopped; the runs "
                     "under way at this window's end are packed into unfinished/ beside the archive, those that "
                     "saved the most training first, for the next")
    job.add_argument("--unfinished-files", type=int, default=4, metavar="K",
                     help="at most this many files carried to the next window (default 4: a device machine returns "
                     "8 files; a run stopped mid-training takes two)")
    job.add_argument("--unfinished-mb", type=float, metavar="MB",
                     help="at most this many MiB carried to the next window, all files together (default: no "
                     "limit but the files'); what is carried travels with the next call, within its 64 MiB")
    job.add_argument("--carry-training", type=int, default=0, metavar="K",
                     help="with --unfinished: up to K runs that cannot finish in this window (longer than it) start "
                     "anyway when a few of their epochs fit, and are carried mid-training (default 0)")
    job.add_argument("--dry-run", action="store_true", help="print the runs in order, with what is done")

    select = verbs.add_parser("select", help="export the coreset a method chooses, as JSON",
                              description="Selects one coreset and writes its indices (into the pool and "
                              "into the training set) as JSON.")
    select.add_argument("--method", required=True)
    select.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")
    select.add_argument("--fraction", type=float, required=True)
    select.add_argument("--seed", type=int, required=True)
    select.add_argument("--out", type=Path, required=True, help="JSON file to write")
    _add_protocol_options(select, grid=False)

    attack = verbs.add_parser("attack", help="re-evaluate stored models with an attack; adds it to their records",
                              description="Loads the model weights stored beside each record, runs the attack "
                              "(with its cross-check and sanity checks) at the given eps, and adds the results to "
                              "the record, which is rewritten atomically. Records that already hold those results "
                              "are skipped (--force redoes them), so an interrupted call resumes.")
    attack.add_argument("records", type=Path, nargs="+", metavar="RECORDS", help="record files or directories")
    attack.add_argument("--attack", required=True, help="a registered attack (`benchmark attacks`)")
    attack.add_argument("--eps", type=_names, required=True,
                        help="eps values: 8/255 (plain numbers are 1/255 units) for L-infinity attacks; the norm "
                        "for L2 (e.g. 0.25,0.5)")
    attack.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE",
                        help="an attack parameter (repeatable)")
    attack.add_argument("--dataset", help="where the records' dataset is, when it is a local folder "
                        "(imagefolder:PATH); registered datasets are found under --data-root")
    attack.add_argument("--cross-check-images", type=int, metavar="N",
                        help="images to cross-check on (default: the records' own)")
    attack.add_argument("--force", action="store_true", help="redo records that already hold these results")
    attack.add_argument("--max-prediction-changes", type=int, default=0, metavar="N",
                        help="test images whose clean prediction may differ from the record's before the stored "
                        "model is refused as not the one measured (default 0; another CPU may differ on a few)")
    _add_where_options(attack, out=False)

    check = verbs.add_parser("check", help="check a selector against the contract every selector passes",
                             description="Runs a registered selector (yours, installed through the "
                             "coreset_bench.selectors entry points, or a file in methods/) on a small synthetic pool "
                             "and checks the contract: exactly the budget per class, explicit class budgets, the "
                             "same indices for the same seed, the whole pool when unbalanced, a paper to cite. "
                             "Needs no tests folder and no pytest.")
    check.add_argument("method", help="the selector's registered name")
    check.add_argument("--param", type=_param, action="append", default=[], metavar="KEY=VALUE")

    for name, what in (("methods", "selectors"), ("attacks", "attacks"), ("training", "training methods"),
                       ("datasets", "datasets"), ("presets", "protocol presets")):
        verbs.add_parser(name, help=f"list the registered {what}", description=f"Lists the registered {what}.")

    board = verbs.add_parser("leaderboard", help="build the leaderboard pages from run records",
                             description="Validates every record, then writes index.html (tables, robustness "
                             "curves and adversarial examples; works offline), leaderboard.md and copies of the "
                             "records under records/ into --out. Invalid records: nothing is written. Only the "
                             "published presets are shown unless --include-unpublished.")
    board.add_argument("paths", type=Path, nargs="*", metavar="RECORDS",
                       help="record files or directories, searched recursively, as for validate and export "
                       "(default submissions/)")
    board.add_argument("--records", type=Path, nargs="+", metavar="DIR", help="the same as RECORDS (older spelling)")
    board.add_argument("--out", type=Path, default=Path("site"),
                       help="site directory: new, empty, or a site written before (default site/)")
    board.add_argument("--include-unpublished", action="store_true",
                       help="also show records of presets the published board does not take (smoke, custom)")

    validate = verbs.add_parser("validate", help="check run records against the published schema",
                                description="Checks every *.json under the given paths (recursively) "
                                "against the record schema and for duplicate runs; lists every problem.")
    validate.add_argument("paths", type=Path, nargs="*", default=[Path("submissions")], metavar="PATH",
                          help="record files or directories (default submissions/)")

    export = verbs.add_parser("export", help="write the records as a table (CSV or Parquet)",
                              description="One row per run and attack x eps (plus the worst case and clean rows), "
                              "for notebooks; the format follows the file name (.csv or .parquet).")
    export.add_argument("records", type=Path, nargs="*", default=[Path("submissions")], metavar="RECORDS")
    export.add_argument("--out", type=Path, required=True, help="results.csv or results.parquet")
    return parser


def _cmd_list(args) -> None:
    import dataclasses

    if args.verb == "presets":
        from benchmark.protocol import presets
        from benchmark.record import eps_text

        for name, protocol in presets().items():
            attacks = ", ".join(spec.name for spec in protocol.attacks)
            training = protocol.training.name
            if protocol.training.adversarial:
                eps = protocol.training_method().eps
                training += f" at {eps_text(eps)}" + (", proxy too" if protocol.adversarial_proxy else "")
            print(f"{name:14} {protocol.dataset}, {protocol.model}, {protocol.epochs} epochs, training {training}; "
                  f"seeds {','.join(map(str, protocol.seeds))}; attacks {attacks}")
        return
    if args.verb == "methods":
        from benchmark.selection import available_selectors as available
    elif args.verb == "attacks":
        from benchmark.attacks import available_attacks as available
    elif args.verb == "training":
        from benchmark.training import available_training as available
    else:
        from benchmark.datasets import DATASETS

        available = DATASETS.available
    for name, cls in available().items():
        params = ", ".join(f"{f.name}={f.default!r}" for f in dataclasses.fields(cls)) or "no parameters"
        extra = ""
        if args.verb == "datasets":
            extra = f"\n{'':22} {cls.source}; {cls.image_size}x{cls.image_size}; {cls.split}"
        print(f"{name:22} {cls.paper}\n{'':22} parameters: {params}{extra}"
              + (f"\n{'':22} {cls.url}" if getattr(cls, "url", "") else ""))


def _grid_args(args) -> dict:
    from benchmark.data import default_cache_dir

    return {"out": args.out, "cache_dir": args.cache_dir or default_cache_dir(), "data_root": args.data_root}


def _cmd_run(args) -> None:
    _refuse_idle_proxy(args, [args.method])
    _print_sweep(args, [args.method], {args.method: dict(args.param)}, keep_going=False)


def _cmd_sweep(args) -> None:
    from benchmark.plan import method_params, parse_methods

    if args.executor != "ray" and args.address:
        raise UserError("--address is for --executor ray; add --executor ray to use a Ray cluster")
    if args.cpus_per_run < 1:
        raise UserError(f"--cpus-per-run must be at least 1, got {args.cpus_per_run}")
    methods = parse_methods(args.methods)
    params = method_params(methods, args.param)
    _refuse_idle_proxy(args, methods)
    if args.dry_run:
        from benchmark.plan import dry_run

        print("\n".join(dry_run(protocol=_protocol(args), methods=methods, params=params, force=args.force,
                                **_grid_args(args))))
        return
    _print_sweep(args, methods, params, keep_going=True, executor=args.executor)


def _refuse_idle_proxy(args, methods: list[str]) -> None:
    """--adversarial-proxy asked for by name, for selectors none of which reads a proxy (the shared one, or
    proxies of their own such as EL2N's): a mistake to say."""
    from benchmark.selection import Selector, available_selectors

    if not args.adversarial_proxy:
        return
    known = available_selectors()

    def reads_a_proxy(cls) -> bool:
        return cls is None or cls.uses_proxy or cls.own_proxies is not Selector.own_proxies

    if not any(reads_a_proxy(known.get(name)) for name in methods):
        raise UserError(f"--adversarial-proxy: {', '.join(methods)} read(s) no proxy, so there is nothing to train "
                        f"adversarially; drop the option or pick a selector that reads one (e.g. "
                        f"adversarial_coreset, el2n, grand)")


def _print_sweep(args, methods: list[str], params: dict[str, dict], *, keep_going: bool,
                 executor: str = "local") -> None:
    """`run` is a sweep of one method that stops at its first failure; `sweep` reports failures at the end."""
    from benchmark.summary import markdown_table
    from benchmark.sweep import sweep

    if args.eval_batch_size is not None and args.eval_batch_size < 1:
        raise UserError(f"--eval-batch-size must be at least 1, got {args.eval_batch_size}")
    result = sweep(protocol=_protocol(args), methods=methods, params=params, device=args.device, executor=executor,
                   address=getattr(args, "address", None), cpus_per_run=getattr(args, "cpus_per_run", 1),
                   keep_going=keep_going, force=args.force, eval_batch_size=args.eval_batch_size,
                   **_grid_args(args))
    if result.records:
        print(markdown_table(result.records))
    for record in result.flagged:
        print(f"WARNING: {record.method} f{record.fraction:g} s{record.seed} is flagged "
              f"({', '.join(record.flag_codes)}): {record.flags[0].detail}", file=sys.stderr)
    log.info("%d of %d record(s) in %s; see them as a page with: python -m benchmark leaderboard %s "
             "--out site --include-unpublished", len(result.records), len(result.specs), args.out, args.out)
    if result.failures:
        for spec, reason in result.failures:
            print(f"failed: {spec.label}: {reason}", file=sys.stderr)
        raise UserError(f"{len(result.failures)} of {len(result.specs)} run(s) failed (listed above, each retried "
                        f"{'once' if executor == 'ray' else 'never'}); the others are recorded: fix the cause and "
                        f"run the same command again to do only those")


def _cmd_check(args) -> None:
    from benchmark.contract import check_selector

    results = check_selector(args.method, dict(args.param))
    for what, problem in results:
        print(f"{'ok  ' if not problem else 'FAIL'} {what}" + (f": {problem}" if problem else ""))
    failed = [what for what, problem in results if problem]
    if failed:
        raise UserError(f"{args.method}: {len(failed)} of {len(results)} contract check(s) failed (listed above)")
    print(f"{args.method} passes the selector contract ({len(results)} checks)")


def _cmd_job(args) -> None:
    from benchmark.job import board_order, done_names, job
    from benchmark.plan import method_params, parse_methods

    methods = parse_methods(args.methods)
    params = method_params(methods, args.param)
    protocol = _protocol(args)
    if args.dry_run:
        recorded = done_names([args.out, *args.done])
        for spec in board_order(protocol, methods, params, args.out):
            print(f"{'done' if spec.record.name in recorded else 'to run':7} {spec.label}")
        return
    if not 0 < args.archive_limit_mb <= 1024:
        raise UserError(f"--archive-limit-mb must be in (0, 1024], got {args.archive_limit_mb}")
    if args.unfinished_files < 0:
        raise UserError(f"--unfinished-files must be 0 or more, got {args.unfinished_files}")
    if args.unfinished_mb is not None and not 0 <= args.unfinished_mb <= 1024:
        raise UserError(f"--unfinished-mb must be in [0, 1024], got {args.unfinished_mb}")
    if args.carry_training < 0:
        raise UserError(f"--carry-training must be 0 or more, got {args.carry_training}")
    if args.carry_training and args.unfinished is None:
        raise UserError("--carry-training needs --unfinished DIR: a run that cannot finish is only worth starting "
                        "if it can be carried")
    if args.unfinished is not None and args.unfinished.exists() and not args.unfinished.is_dir():
        raise UserError(f"--unfinished {args.unfinished} is not a folder: give the folder of carried runs")
    if not 0 <= args.margin < args.budget:
        raise UserError(f"--margin must be at least 0 and below --budget, got {args.margin}")
    grid = _grid_args(args)
    result = job(protocol=protocol, methods=methods, params=params, budget=args.budget,
                 runs_per_device=args.runs_per_device, done=args.done, device=args.device,
                 archive=args.archive or args.out / "job.tar.gz", archive_limit=int(args.archive_limit_mb * 2 ** 20),
                 margin=args.margin, threads=args.threads, eval_batch_size=args.eval_batch_size,
                 unfinished=args.unfinished, unfinished_files=args.unfinished_files,
                 unfinished_bytes=None if args.unfinished_mb is None else int(args.unfinished_mb * 2 ** 20),
                 carry_training=args.carry_training, **grid)
    for line in result.lines():
        print(line)
    if result.failed:
        raise UserError(f"{len(result.failed)} run(s) failed (listed above); the others are recorded")


def _cmd_select(args) -> None:
    from benchmark.data import default_cache_dir
    from benchmark.protocol import ProtocolError
    from benchmark.records import write_json
    from benchmark.run import load_protocol_data, resolve_device, select_coreset
    from benchmark.selection import create_selector

    try:
        protocol = _protocol(args).with_overrides(fractions=(args.fraction,), seeds=(args.seed,))
    except ProtocolError as error:
        raise UserError(f"--{error.field[:-1]}: {str(error).split(': ', 1)[1]}") from None
    selector = create_selector(args.method, protocol.method_params(args.method, dict(args.param)))
    cache_dir = args.cache_dir or default_cache_dir()
    device = resolve_device(args.device)
    log.info("selecting on %s", device)
    data, pool_indices = load_protocol_data(protocol, device=device, data_root=args.data_root, cache_dir=cache_dir)
    selection, seconds, _ = select_coreset(selector=selector, data=data, protocol=protocol, fraction=args.fraction,
                                           seed=args.seed, cache_dir=cache_dir, balance=protocol.balance)
    write_json({"method": args.method, "method_params": selector.params(), "dataset": data.dataset,
                "model": protocol.model, "fraction": args.fraction, "seed": args.seed,
                "budget": len(selection.indices), "seconds": seconds,
                "pool_indices": selection.indices.tolist(),
                "train_indices": pool_indices[selection.indices].tolist(),
                "weights": None if selection.weights is None else selection.weights.tolist()}, args.out)
    log.info("%d indices written to %s", len(selection.indices), args.out)


def _cmd_attack(args) -> None:
    from benchmark.attacks import create_attack
    from benchmark.data import default_cache_dir
    from benchmark.reattack import reattack
    from benchmark.record import parse_eps

    threat = create_attack(args.attack, dict(args.param)).threat
    try:
        eps = [parse_eps(text, threat) for text in args.eps]
    except ValueError as error:
        raise UserError(f"--eps: {error}") from None
    result = reattack(args.records, attack=args.attack, eps=eps, params=dict(args.param),
                      dataset=args.dataset, data_root=args.data_root, cache_dir=args.cache_dir or default_cache_dir(),
                      device=args.device, eval_batch_size=args.eval_batch_size,
                      cross_check_images=args.cross_check_images, force=args.force,
                      max_prediction_changes=args.max_prediction_changes)
    for line in result.lines():
        print(line)


def _cmd_leaderboard(args) -> None:
    from benchmark.leaderboard import build_site
    from benchmark.schema import SchemaError

    paths = list(args.paths) + list(args.records or []) or [Path("submissions")]
    missing = [path for path in paths if not path.exists()]
    if missing:
        default = " (the default: a clone's submissions/ folder)" if not args.paths and not args.records else ""
        raise UserError(f"no records at {missing[0]}{default}: name the record files or folders, e.g. "
                        f"`python -m benchmark leaderboard results/ --out site`")
    try:
        groups = build_site(paths, args.out, include_unpublished=args.include_unpublished)
    except SchemaError as error:
        print("\n".join(error.problems), file=sys.stderr)
        raise UserError(f"{error.summary}; nothing written (run `python -m benchmark validate` for the same "
                        f"list)") from None
    log.info("leaderboard of %d section(s) written to %s (index.html, leaderboard.md, records/)",
             len(groups), args.out)


def _cmd_validate(args) -> None:
    from benchmark.schema import SchemaError, load_records

    try:
        records = load_records(args.paths, allow_empty=True, registry=True)
    except SchemaError as error:
        print("\n".join(error.problems), file=sys.stderr)
        raise UserError(error.summary) from None
    if not records:
        print(f"no record files (*.json) under {', '.join(str(path) for path in args.paths)}: nothing to check")
        return
    runs = {(r.record.method, r.record.dataset, r.record.model, r.record.preset) for r in records}
    versions = sorted({r.record.schema for r in records})
    print(f"{len(records)} record(s) valid ({len(runs)} method/dataset/model/preset combination(s)) in "
          f"{', '.join(str(path) for path in args.paths)}; schema {', '.join(versions)}")


def _cmd_export(args) -> None:
    from benchmark.export import export

    rows = export(args.records, args.out)
    log.info("%d row(s) written to %s", rows, args.out)


def _set_threads(threads: int | None) -> None:
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads must be at least 1, got {threads}")
    import torch

    torch.set_num_threads(threads)


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        logging.basicConfig(level=logging.WARNING if args.quiet else logging.INFO, format="%(message)s")
        _set_threads(getattr(args, "threads", None))
        if getattr(args, "compile", None):  # read by the training loop, here and in worker processes
            os.environ["CORESET_BENCH_COMPILE"] = "" if args.compile == "none" else args.compile
        verbs = {"run": _cmd_run, "sweep": _cmd_sweep, "job": _cmd_job, "check": _cmd_check, "select": _cmd_select,
                 "attack": _cmd_attack, "methods": _cmd_list, "attacks": _cmd_list, "training": _cmd_list,
                 "datasets": _cmd_list, "presets": _cmd_list,
                 "leaderboard": _cmd_leaderboard, "validate": _cmd_validate, "export": _cmd_export}
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
