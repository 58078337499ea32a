"""Reliability of sweeps, end to end in subprocesses: a sweep SIGKILLed at 5 random moments and restarted
each time ends with the records of an uninterrupted sweep (same runs, selections and accuracies, no
partial or duplicate files). Both start from empty caches, so the same comparison also shows that two sweeps
from scratch agree exactly (CPU); a third, uninterrupted one would check nothing more for 50 s of CI."""

import json
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests.conftest import REPO

# 4 methods x 2 fractions x 1 seed = 8 runs; 3 of the methods share one proxy
METHODS = "random,cal,moderate_ds,contextual_diversity"
# FGSM alone: these tests are about orchestration, and the smoke suite's PGD would double their time
TINY = ["--preset", "smoke", "--attacks", "fgsm", "--train-per-class", "30", "--test-per-class", "10",
        "--epochs", "3",
        "--proxy-epochs", "2"]
KILLS = 5
KILL_SEED = 2026  # the kill moments are random, from an explicit seed


def _command(out, cache, *extra):
    return [sys.executable, "-m", "benchmark", "sweep", "--methods", METHODS, *TINY, "--out", str(out),
            "--cache-dir", str(cache), *extra]


def _env():
    return {"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "2"}  # the same thread count in every process


def _sweep(out, cache):
    started = time.monotonic()
    done = subprocess.run(_command(out, cache), capture_output=True, text=True, cwd=REPO, env=_env(), timeout=900)
    assert done.returncode == 0, done.stderr
    return time.monotonic() - started


def _files(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


def _outcome(out):
    """Everything a record says about its run except timings and when it was made, plus its selection."""
    result = {}
    for path in sorted(out.glob("*.json")):
        record = json.loads(path.read_text())
        del record["created"], record["environment"], record["selection"]["seconds"]
        del record["training"]["seconds"], record["evaluation"]["seconds"]
        del record["selection"]["proxy_training_seconds"]
        with np.load(out / record["selection"]["artifact"]) as arrays:
            record["arrays"] = {name: arrays[name].tolist() for name in arrays.files}
        result[path.name] = record
    return result


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    root = tmp_path_factory.mktemp("uninterrupted")
    seconds = _sweep(root / "out", root / "cache")
    started = time.monotonic()
    dry = subprocess.run(_command(root / "out", root / "cache", "--dry-run"), capture_output=True, text=True,
                         cwd=REPO, env=_env(), timeout=300)
    startup = time.monotonic() - started  # imports and data: a killed process does no run before this
    return root / "out", seconds, startup, dry


def test_the_grid_has_8_runs_and_the_dry_run_of_a_finished_sweep_says_all_done(uninterrupted):
    out, _, _, dry = uninterrupted
    assert dry.returncode == 0, dry.stderr
    assert len(list(out.glob("*.json"))) == 8
    assert "sweep of 8 run(s): 4 method(s) x 2 fraction(s) x 1 seed(s)" in dry.stdout
    assert "8 done, 0 partly done" in dry.stdout and "proxies: none to train" in dry.stdout
    assert sum(line.startswith("done ") for line in dry.stdout.splitlines()) == 8


def test_a_sweep_killed_at_5_random_moments_ends_with_the_uninterrupted_records(uninterrupted, tmp_path):
    reference, seconds, startup, _ = uninterrupted
    out, cache = tmp_path / "out", tmp_path / "cache"
    rng = np.random.default_rng(KILL_SEED)
    # each attempt is killed after its start-up and at most 18 % of the sweep's work later, so 5 kills
    # cannot finish the sweep before the last of them
    work = max(seconds - startup, 1.0)
    delays = startup + rng.uniform(0.02, 0.18, KILLS) * work
    killed, resumed = 0, 0
    for delay in delays:
        log = tmp_path / f"attempt-{killed}.log"
        with open(log, "w") as stream:
            process = subprocess.Popen(_command(out, cache), stdout=stream, stderr=stream, cwd=REPO, env=_env())
            try:
                process.wait(timeout=delay)
            except subprocess.TimeoutExpired:
                process.send_signal(signal.SIGKILL)
                process.wait()
                killed += 1
        resumed += log.read_text().count("resumed from")
    final = subprocess.run(_command(out, cache), capture_output=True, text=True, cwd=REPO, env=_env(), timeout=900)
    assert final.returncode == 0, final.stderr
    resumed += final.stderr.count("resumed from")
    print(f"\nkill test: {killed} kills at {', '.join(f'{d:.1f}' for d in delays)} s after start "
          f"(uninterrupted sweep {seconds:.0f} s, start-up {startup:.0f} s); {resumed} training(s) resumed "
          f"mid-way from a checkpoint")
    assert killed == KILLS
    assert resumed >= 1  # at least one kill landed inside a training, which then resumed from its epoch
    assert _files(out) == _files(reference)  # no partial, temporary or duplicate files
    assert _outcome(out) == _outcome(reference)
    assert not [path for path in cache.rglob("*") if "checkpoint" in path.name or ".tmp" in path.name]
