"""`sweep --executor ray` on a local Ray instance (CPU): records equal a local one-thread sweep's, the
shared proxy is one task, and a failed task is retried once and then reported, never dropped. Faulty
selectors come in as an installed plug-in would: a distribution with an entry point on PYTHONPATH, which
the Ray workers inherit."""

import json
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import REPO

pytest.importorskip("ray", reason="NOT RUN: Ray is not installed (pip install -e '.[test]' brings it)")

FAULTS = '''
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmark.selection import Selection, Selector


def attempt(folder: str, name: str) -> int:
    """Counts this selector's attempts in files, across the worker processes Ray retries it in."""
    number = len(list(Path(folder).glob(name + "-*"))) + 1
    (Path(folder) / f"{name}-{number}").touch()
    return number


def first_half(context):
    return Selection(indices=np.arange(context.budget))


@dataclass(frozen=True)
class AlwaysFails(Selector):
    name = "always_fails"
    uses_proxy = False
    paper = "a test double"
    attempts: str = ""

    def select(self, context):
        attempt(self.attempts, self.name)
        raise RuntimeError("this selector always fails")


@dataclass(frozen=True)
class FailsOnce(Selector):
    name = "fails_once"
    uses_proxy = False
    paper = "a test double"
    attempts: str = ""

    def select(self, context):
        if attempt(self.attempts, self.name) == 1:
            raise RuntimeError("a transient failure")
        return first_half(context)


@dataclass(frozen=True)
class DiesOnce(Selector):
    name = "dies_once"
    uses_proxy = False
    paper = "a test double"
    attempts: str = ""

    def select(self, context):
        if attempt(self.attempts, self.name) == 1:
            os._exit(1)  # the worker process dies, as on a preempted node
        return first_half(context)
'''

TINY = ["--preset", "smoke", "--train-per-class", "30", "--test-per-class", "10", "--epochs", "2",
        "--proxy-epochs", "1", "--fractions", "0.5"]


def _comparable(path):
    record = json.loads(path.read_text())
    return {key: record[key] for key in ("method", "fraction", "seed", "budget", "clean_accuracy", "attacks")} | {
        "indices": record["selection"]["indices_sha256"], "lr_grid": record["training"]["lr_grid"]}


@pytest.fixture(scope="module")
def ray_sweep(tmp_path_factory):
    root = tmp_path_factory.mktemp("ray")
    plugin = root / "plugin"
    (plugin / "faulty_selectors-0.1.dist-info").mkdir(parents=True)
    (plugin / "faulty_selectors.py").write_text(textwrap.dedent(FAULTS))
    (plugin / "faulty_selectors-0.1.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: faulty-selectors\nVersion: 0.1\n")
    (plugin / "faulty_selectors-0.1.dist-info" / "entry_points.txt").write_text(
        "[coreset_bench.selectors]\n" + "".join(f"{name} = faulty_selectors:{cls}\n" for name, cls in
                                                (("always_fails", "AlwaysFails"), ("fails_once", "FailsOnce"),
                                                 ("dies_once", "DiesOnce"))))
    attempts = root / "attempts"
    attempts.mkdir()
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(plugin), "RAY_AUTH_MODE": "disabled"}
    command = [sys.executable, "-m", "benchmark", "sweep", "--methods", "random,cal,fails_once,dies_once,always_fails",
               *TINY, "--executor", "ray", "--out", str(root / "out"), "--cache-dir", str(root / "cache"),
               *[arg for name in ("fails_once", "dies_once", "always_fails")
                 for arg in ("--param", f"{name}.attempts={attempts}")]]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    # the reference: the same runs of random and cal, here, with the one torch thread a Ray task gets
    local = subprocess.run([sys.executable, "-m", "benchmark", "-q", "sweep", "--methods", "random,cal", *TINY,
                            "--out", str(root / "local"), "--cache-dir", str(root / "local-cache")],
                           capture_output=True, text=True, cwd=REPO, env=env | {"OMP_NUM_THREADS": "1"}, timeout=600)
    assert local.returncode == 0, local.stderr
    return root, done


def test_a_task_that_always_fails_is_retried_once_then_reported(ray_sweep):
    root, done = ray_sweep
    assert done.returncode == 2
    assert "failed: always_fails f0.5 s0: RuntimeError: this selector always fails" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: 1 of 5 run(s) failed")
    assert sorted(path.name for path in (root / "attempts").glob("always_fails-*")) == ["always_fails-1",
                                                                                      "always_fails-2"]
    assert not list((root / "out").glob("always_fails*"))
    assert not (root / "out" / ".partial").exists()  # a failed run leaves nothing half-written


def test_a_failed_or_killed_task_succeeds_on_its_retry(ray_sweep):
    root, _ = ray_sweep
    for name in ("fails_once", "dies_once"):
        assert len(list((root / "attempts").glob(f"{name}-*"))) == 2
        (record,) = (root / "out").glob(f"{name}__*.json")
        assert json.loads(record.read_text())["budget"] == 135


def test_ray_records_equal_a_local_sweep_with_one_thread(ray_sweep):
    root, _ = ray_sweep
    local = sorted((root / "local").glob("*.json"))
    assert len(local) == 2
    for path in local:
        assert _comparable(root / "out" / path.name) == _comparable(path)


def test_the_shared_proxy_was_trained_once(ray_sweep):
    root, _ = ray_sweep
    assert len(list((root / "cache" / "proxy").glob("*.pt"))) == 1
