"""Bad input across every verb: one line on stderr that says what was wrong and what to do, a non-zero
exit, and nothing already written lost or damaged. Each case starts from an --out (or record folder)
holding a genuine record, and checks its bytes, and that no file was added, after it."""

import errno
import json
import os
import shutil
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

import benchmark.records
import benchmark.selection as sel
import benchmark.storage
from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.proxy import ProxyFeatures
from benchmark.records import SCHEMA
from benchmark.selection import Selection, SelectionContext, Selector
from tests.conftest import REPO

TINY = ["--preset", "smoke", "--train-per-class", "20", "--test-per-class", "5", "--epochs", "1",
        "--proxy-epochs", "1", "--fractions", "0.5"]
GENUINE = sorted((REPO / "submissions" / "cifar10-cpu").glob("random__*s0*.json"))[0]


@dataclass(frozen=True)
class Misbehaves(Selector):
    """Returns what `returns` names instead of a valid selection."""

    name: ClassVar[str] = "misbehaves-test"
    paper: ClassVar[str] = "a test double"
    uses_proxy: ClassVar[bool] = False
    returns: str = "duplicates"

    def select(self, context):
        n = context.budget
        if self.returns == "raise":
            raise RuntimeError("this plug-in is broken")
        if self.returns == "budget":
            context.budget = 3  # a selector must not be able to change what the harness checks against
        if self.returns == "labels":
            context.labels[:] = 0  # nor what is trained on
        if self.returns == "zero-weights":
            return Selection(indices=np.arange(n), weights=np.zeros(n))
        indices = {"duplicates": np.zeros(n, dtype=np.int64), "out-of-range": np.arange(n) + context.pool_size,
                   "too-few": np.arange(n - 1)}.get(self.returns)
        return list(range(n)) if indices is None else Selection(indices=indices)


@pytest.fixture(autouse=True)
def misbehaving_selector():
    sel.available_selectors()  # discover the real ones first, so ours is not replaced
    sel.register(Misbehaves)
    yield
    del sel.SELECTORS._entries[Misbehaves.name]


def _truncate(path):
    path.write_text(GENUINE.read_text()[:300])


def _future(path):
    path.write_text(json.dumps({**json.loads(GENUINE.read_text()), "schema": "coreset-bench/run/99"}))


def _nan_embeddings(monkeypatch):
    monkeypatch.setattr(ProxyFeatures, "embeddings", lambda self: torch.full((len(self.data.pool_labels), 4),
                                                                               float("nan")))


def _read_only(monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr(benchmark.storage.tempfile, "mkstemp", refuse)


def _disk_full(monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(benchmark.storage.os, "fsync", full)


def _no_ray_cluster(monkeypatch):
    pytest.importorskip("ray", reason="NOT RUN: needs Ray (pip install -e '.[test]')")


# name: (argv with {out} and {records}, words the error line must hold, what to set up (monkeypatch) or
# how to damage a file placed in {out} / {records} first)
CASES = {
    "run: unknown method": (["run", "--method", "nope", *TINY], "unknown method 'nope'; known methods:", None),
    "run: unknown dataset": (["run", "--method", "random", "--dataset", "mnist"], "unknown dataset 'mnist'", None),
    "run: fraction outside (0, 1]": (["run", "--method", "random", "--preset", "smoke", "--fractions", "1.5"],
                                     "--fractions: 1.5 is outside (0, 1]", None),
    "run: repeated seeds": (["run", "--method", "random", "--preset", "smoke", "--seeds", "1,1"],
                            "--seeds: [1, 1] repeats a value", None),
    "run: unknown model": (["run", "--method", "random", *TINY, "--model", "nonet"], "unknown model 'nonet'", None),
    "run: missing data folder": (["run", "--method", "random", "--dataset", "imagefolder:/no/such/dir"],
                                 "does not exist or is not readable", None),
    "run: selector returns duplicates": (["run", "--method", "misbehaves-test", *TINY],
                                         "returned 89 duplicate indices", None),
    "run: selector returns out-of-range indices": (
        ["run", "--method", "misbehaves-test", "--param", "returns=out-of-range", *TINY],
        "returned indices outside 0..179", None),
    "run: selector returns too few indices": (
        ["run", "--method", "misbehaves-test", "--param", "returns=too-few", *TINY],
        "returned 89 indices for a budget of 90", None),
    "run: selector returns no Selection": (
        ["run", "--method", "misbehaves-test", "--param", "returns=list", *TINY], "a list, not a Selection", None),
    "run: NaN proxy embeddings": (["run", "--method", "cal", *TINY], "embeddings contain NaN", _nan_embeddings),
    "run: read-only --out": (["run", "--method", "random", *TINY], "Read-only file system; pass a writable --out",
                             _read_only),
    "run: disk full while writing": (["run", "--method", "random", *TINY], "No space left on device", _disk_full),
    "run: selector raises": (["run", "--method", "misbehaves-test", "--param", "returns=raise", *TINY],
                             "misbehaves-test f0.5 s0: RuntimeError: this plug-in is broken", None),
    "run: selector changes the budget": (["run", "--method", "misbehaves-test", "--param", "returns=budget", *TINY],
                                         "AttributeError", None),
    "run: selector writes into the labels": (
        ["run", "--method", "misbehaves-test", "--param", "returns=labels", *TINY], "read-only", None),
    "run: all-zero weights": (["run", "--method", "misbehaves-test", "--param", "returns=zero-weights", *TINY],
                              "weights that are all zero", None),
    "run: nan learning rate": (["run", "--method", "random", *TINY, "--lrs", "nan"],
                               "learning rates must be positive finite numbers", None),
    "run: empty eps": (["run", "--method", "random", *TINY, "--eps", ""], "--eps: none: the eps grid must be distinct",
                       None),
    "run: repeated fractions": (["run", "--method", "random", *TINY, "--fractions", "0.5,0.5"],
                                "--fractions: [0.5, 0.5] repeats a value", None),
    "run: negative images per class": (["run", "--method", "random", *TINY, "--train-per-class", "-5"],
                                       "--train-per-class: -5 is negative", None),
    "run: graphcut lam nan": (["run", "--method", "graphcut", "--param", "lam=nan", *TINY],
                              "parameter lam must be a finite number", None),
    "run: device meta": (["run", "--method", "random", *TINY, "--device", "meta"], "unsupported device 'meta'",
                         None),
    "run: device mps": (["run", "--method", "random", *TINY, "--device", "mps"], "unsupported device 'mps'", None),
    "run: unknown training method": (["run", "--method", "random", *TINY, "--training", "nope"],
                                     "--training / --training-param: unknown training method 'nope'", None),
    "run: negative training eps": (["run", "--method", "random", *TINY, "--training", "fgsm-rs", "--training-param",
                                    "eps=-1"], "eps '-1' must be a finite, non-negative", None),
    "run: zero training steps": (["run", "--method", "random", *TINY, "--training", "pgd-at", "--training-param",
                                  "steps=0"], "training method 'pgd-at': steps must be at least 1", None),
    "run: negative TRADES beta": (["run", "--method", "random", *TINY, "--training", "trades", "--training-param",
                                   "beta=-1"], "training method 'trades': beta must be non-negative", None),
    "run: adversarial proxy for a selector without a proxy": (
        ["run", "--method", "random", *TINY, "--training", "fgsm-rs", "--adversarial-proxy"],
        "--adversarial-proxy: random read(s) no proxy", None),
    "run: adversarial proxy under standard training": (
        ["run", "--method", "el2n", *TINY, "--adversarial-proxy"],
        "--adversarial-proxy: the proxy can only be trained adversarially when the training method is adversarial",
        None),
    "run: unknown attack": (["run", "--method", "random", *TINY, "--attacks", "fgsm,nope"], "unknown attack 'nope'",
                            None),
    "run: attack steps 0": (["run", "--method", "random", *TINY, "--attack-param", "pgd.steps=0"],
                            "steps and restarts must be at least 1", None),
    "attack: folder without weights": (["attack", "{records}", "--attack", "pgd-l2", "--eps", "0.5"],
                                       "the record's model weights are missing", None),
    "attack: unknown attack": (["attack", "{records}", "--attack", "nope", "--eps", "2"], "unknown attack 'nope'",
                               None),
    "attack: negative eps": (["attack", "{records}", "--attack", "pgd", "--eps", "-1"],
                             "must be a finite, non-negative number", None),
    "attack: eps 0.031 (8/255 or 0.031/255?)": (["attack", "{records}", "--attack", "pgd", "--eps", "0.031"],
                                                "is ambiguous: plain L-infinity eps are in 1/255 units", None),
    "run: eps 0.031 (8/255 or 0.031/255?)": (["run", "--method", "random", *TINY, "--eps", "0.031"],
                                             "is ambiguous: plain L-infinity eps are in 1/255 units", None),
    "attack: steps 0": (["attack", "{records}", "--attack", "pgd", "--eps", "2", "--param", "steps=0"],
                        "steps and restarts must be at least 1", None),
    "attack: unsupported norm": (["attack", "{records}", "--attack", "apgd", "--eps", "2", "--param", "norm=L1"],
                                 "norm must be one of Linf, L2", None),
    "export: unknown format": (["export", "{records}", "--out", "{out}/table.xlsx"], "name a .csv or .parquet file",
                               None),
    "select: fraction 0": (["select", "--method", "random", "--preset", "smoke", "--fraction", "0", "--seed", "0",
                            "--out", "{out}/coreset.json"], "--fraction: 0.0 is outside (0, 1]", None),
    "select: disk full": (["select", "--method", "random", "--preset", "smoke", "--train-per-class", "20",
                           "--fraction", "0.5", "--seed", "0", "--out", "{out}/coreset.json"],
                          "No space left on device", _disk_full),
    "sweep: unknown method in the list": (["sweep", "--methods", "random,nope", *TINY], "unknown method 'nope'",
                                          None),
    "sweep: method listed twice": (["sweep", "--methods", "cal,random,cal", *TINY], "cal listed twice", None),
    "sweep: empty method list": (["sweep", "--methods", ",", *TINY], "no methods given", None),
    "sweep: parameter for no named method": (["sweep", "--methods", "random,cal", "--param", "k=2", *TINY],
                                             "name the method it is for, as METHOD.KEY=VALUE", None),
    "sweep: --address without Ray": (["sweep", "--methods", "random", "--address", "auto", *TINY],
                                     "--address is for --executor ray", None),
    "sweep: no Ray cluster at the address": (["sweep", "--methods", "random", "--executor", "ray", "--address",
                                              "127.0.0.1:9", *TINY], "no Ray cluster answers at 127.0.0.1:9",
                                             _no_ray_cluster),
    "sweep: --cpus-per-run 0": (["sweep", "--methods", "random", "--cpus-per-run", "0", *TINY],
                                "--cpus-per-run must be at least 1", None),
    "sweep: --threads 0": (["sweep", "--methods", "random", "--threads", "0", *TINY], "--threads must be at least 1",
                           None),
    "sweep: truncated record in --out": (["sweep", "--methods", "random", *TINY], "not valid JSON (truncated?)",
                                         _truncate),
    "sweep: record from a future schema in --out": (["sweep", "--methods", "random", *TINY],
                                                    "coreset-bench/run/99", _future),
    "validate: truncated record": (["validate", "{records}"], "not valid JSON (truncated?)", _truncate),
    "validate: future schema": (["validate", "{records}"], "coreset-bench/run/99", _future),
    "leaderboard: invalid record": (["leaderboard", "--records", "{records}", "--out", "{out}/site"],
                                    "not valid JSON (truncated?)", _truncate),
    "leaderboard: --out is a file": (["leaderboard", "--records", "{records}", "--out", "{out}/" + GENUINE.name],
                                     "not a leaderboard site", None),
}


def _snapshot(*folders):
    return {str(path): path.read_bytes() if path.is_file() else None
            for folder in folders for path in sorted(folder.rglob("*"))}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, tmp_path, monkeypatch, capsys):
    argv, words, prepare = CASES[case]
    out, records = tmp_path / "out", tmp_path / "records"
    for folder in (out, records):
        folder.mkdir()
        shutil.copy(GENUINE, folder)
    argv = [arg.format(out=out, records=records) for arg in argv]
    if argv[0] in ("run", "sweep"):
        argv += ["--out", str(out), "--cache-dir", str(tmp_path / "cache")]
    if prepare in (_truncate, _future):
        # a damaged record where the verb will look: in --out, under the name the run would write
        target = records / "damaged.json" if argv[0] in ("validate", "leaderboard") else _record_name(argv, out)
        prepare(target)
    elif prepare is not None:
        prepare(monkeypatch)
    before = _snapshot(out, records)
    assert main(argv) != 0
    error = capsys.readouterr().err.strip().splitlines()
    print(f"\n{case}: {' / '.join(error)}")
    assert error[-1].startswith("error: ")
    if argv[0] in ("validate", "leaderboard") and len(error) > 1:  # every problem listed, then the error
        assert words in error[0] and "problem(s)" in error[-1]
    else:
        assert len(error) == 1 and words in error[0]
    assert _snapshot(out, records) == before  # nothing lost, damaged, added or left half-written


def test_attack_on_records_that_never_kept_weights_says_so_in_one_line(tmp_path, capsys):
    # schema-1 records (written before weights were kept) name no weights at all: a different case from named
    # weights that are missing, and the message says what to do instead
    from tests.records import make_record, write_records

    write_records(tmp_path / "records", [make_record(seed=seed) for seed in range(2)])
    before = _snapshot(tmp_path / "records")
    assert main(["attack", str(tmp_path / "records"), "--attack", "pgd", "--eps", "2"]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "none of the 2 record(s) has stored model weights" in error[0]
    assert "re-run those runs" in error[0]
    assert _snapshot(tmp_path / "records") == before


def _record_name(argv, out):
    """The record path the sweep would write for its single random run."""
    from benchmark.protocol import preset
    from benchmark.run import run_spec

    protocol = preset("smoke").with_overrides(train_per_class=20, test_per_class=5, epochs=1, proxy_epochs=1,
                                              fractions=(0.5,))
    return run_spec(method="random", params={}, protocol=protocol, fraction=0.5, seed=0, out=out).record


def test_a_class_smaller_than_its_budget_is_refused():
    # what a selector author meets when asking for more of a class than the pool has
    with pytest.raises(UserError, match="class 1 has 2 points but a budget of 3"):
        SelectionContext.from_arrays(labels=[0, 0, 0, 1, 1], budget=4, seed=0, class_budgets=[1, 3])


def test_an_interrupted_write_leaves_the_previous_file_and_no_temporary(tmp_path, monkeypatch):
    path = tmp_path / "record.json"
    benchmark.records.write_json({"schema": SCHEMA, "version": 1}, path)
    _disk_full(monkeypatch)
    with pytest.raises(OSError):
        benchmark.records.write_json({"schema": SCHEMA, "version": 2}, path)
    assert json.loads(path.read_text())["version"] == 1 and os.listdir(tmp_path) == ["record.json"]


def test_only_the_temporaries_of_dead_writers_on_this_host_are_removed(tmp_path):
    host, pid = benchmark.storage.WRITER.rsplit("-", 1)
    dead = tmp_path / ".partial" / f".lr0.pt.{host}-999999999.abcd1234.tmp"  # killed mid-write
    live = tmp_path / f".record.json.{host}-{pid}.efgh5678.tmp"  # this process, still writing
    elsewhere = tmp_path / ".record.json.otherhost-1.ijkl9012.tmp"  # a Ray task on another node
    for path in (dead, live, elsewhere):
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    assert benchmark.storage.remove_stale_temporaries(tmp_path) == 1
    assert not dead.exists() and live.exists() and elsewhere.exists()


@pytest.mark.parametrize("overrides, words", [
    ({"full_test_clean": True, "test_per_class": 0}, "already the whole test split"),
    ({"cross_check_eps": (3 / 255,)}, "3/255 is not on the eps grid"),
])
def test_evaluation_settings_that_mean_nothing_are_refused(overrides, words):
    from benchmark.protocol import preset

    with pytest.raises(UserError, match=words):
        preset("smoke").with_overrides(**overrides)


def test_the_published_cpu_preset_measures_clean_accuracy_on_the_whole_test_split():
    from benchmark.protocol import preset

    settings = preset("cifar10-cpu").settings("cifar10")
    assert settings.full_test_clean is True and settings.cross_check_eps == (2 / 255,)
    assert preset("smoke").settings("digits").full_test_clean is None  # off: absent, the keys of old runs hold
