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
    """Counts this selector's attempts in files, across the worker processes Ray runs and retries it in
    (O_EXCL: two attempts at once never take the same number)."""
    number = 1
    while True:
        try:
            os.close(os.open(Path(folder) / f"{name}-{number}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
            return number
        except FileExistsError:
            number += 1


@dataclass(frozen=True)
class Faulty(Selector):
    """Selects the first `budget` points, after `fault` had its say on this attempt."""

    paper = "a test double"
    uses_proxy = False
    attempts: str = ""

    def select(self, context):
        self.fault(attempt(self.attempts, self.name))
        return Selection(indices=np.arange(context.budget))


@dataclass(frozen=True)
class AlwaysFails(Faulty):
    name = "always_fails"

    def fault(self, number):
        raise RuntimeError("this selector always fails")


@dataclass(frozen=True)
class FailsOnce(Faulty):
    name = "fails_once"

    def fault(self, number):
        if number == 1:
            raise RuntimeError("a transient failure")


@dataclass(frozen=True)
class DiesOnce(Faulty):
    name = "dies_once"

    def fault(self, number):
        if number == 1:
            os._exit(1)  # the worker process dies, as on a preempted node
'''

# FGSM alone: these tests are about orchestration, and the smoke suite's PGD would double their time
TINY = ["--preset", "smoke", "--attacks", "fgsm", "--train-per-class", "30", "--test-per-class", "10",
        "--epochs", "2",
        "--proxy-epochs", "1", "--fractions", "0.1,0.5"]


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
    # RAY_DEDUP_LOGS=0: Ray would fold the same line from several workers into one
    # no RAY_AUTH_* here: the sweep's local instance must work with the token it sets up itself
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(plugin), "RAY_DEDUP_LOGS": "0"}
    command = [sys.executable, "-m", "benchmark", "sweep", "--methods",
               "random,cal,grand,fails_once,dies_once,always_fails", "--param", "grand.epochs=1",
               *TINY, "--executor", "ray", "--out", str(root / "out"), "--cache-dir", str(root / "cache"),
               *[arg for name in ("fails_once", "dies_once", "always_fails")
                 for arg in ("--param", f"{name}.attempts={attempts}")]]
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    # the reference: the same runs of random and cal, here, with the one torch thread a Ray task gets
    local = subprocess.run([sys.executable, "-m", "benchmark", "-q", "sweep", "--methods", "random,cal,grand",
                            "--param", "grand.epochs=1", *TINY,
                            "--out", str(root / "local"), "--cache-dir", str(root / "local-cache")],
                           capture_output=True, text=True, cwd=REPO, env=env | {"OMP_NUM_THREADS": "1"}, timeout=600)
    assert local.returncode == 0, local.stderr
    return root, done


def test_a_task_that_always_fails_is_retried_once_then_reported(ray_sweep):
    root, done = ray_sweep
    assert done.returncode == 2
    for fraction in ("0.1", "0.5"):
        assert f"failed: always_fails f{fraction} s0: RuntimeError: this selector always fails" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("error: 2 of 12 run(s) failed")
    assert len(list((root / "attempts").glob("always_fails-*"))) == 4  # 2 runs, each tried twice
    assert not list((root / "out").glob("always_fails*"))
    assert not (root / "out" / ".partial").exists()  # a failed run leaves nothing half-written


def test_a_failed_or_killed_task_succeeds_on_its_retry(ray_sweep):
    root, _ = ray_sweep
    for name in ("fails_once", "dies_once"):
        # the first attempt of the sweep fails; its retry, and the other fraction's run, succeed
        assert len(list((root / "attempts").glob(f"{name}-*"))) == 3
        records = sorted((root / "out").glob(f"{name}__*.json"))
        assert sorted(json.loads(path.read_text())["budget"] for path in records) == [27, 135]


def test_ray_records_equal_a_local_sweep_with_one_thread(ray_sweep):
    root, _ = ray_sweep
    local = sorted((root / "local").glob("*.json"))
    assert len(local) == 6
    for path in local:
        assert _comparable(root / "out" / path.name) == _comparable(path)


def test_each_proxy_was_trained_once_by_its_own_task(ray_sweep):
    root, done = ray_sweep
    output = done.stdout + done.stderr
    # the shared proxy of seed 0 (cal), and GraNd's 2 own proxies (the smoke preset's repeats), each once
    # although two runs (fractions 0.1 and 0.5) of each method need them
    assert output.count("proxy: training") == 1
    assert output.count("proxy 1/2: training") == 1 and output.count("proxy 2/2: training") == 1
    assert len(list((root / "cache" / "proxy").glob("*.safetensors"))) == 3


def test_a_local_instance_is_started_with_a_fresh_token_and_the_environment_restored(monkeypatch):
    import os

    import ray

    import benchmark.ray_executor as executor
    from benchmark.progress import Progress

    seen = {}

    def fake_init(**kwargs):
        seen.update({name: os.environ.get(name) for name in executor.AUTH_VARIABLES}, **kwargs)
        raise ConnectionError("stop here")

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setattr(ray, "init", fake_init)
    # Ray is imported already (above), so it read RAY_AUTH_MODE=disabled: it must be told to read them again
    reloads = []
    monkeypatch.setattr(executor, "_reload_auth_settings", lambda: reloads.append(os.environ["RAY_AUTH_MODE"]))
    with pytest.raises(Exception, match="cannot reach a Ray cluster"):
        executor.run_on_ray([], Progress(total=0, done_before=0, pending=[]), protocol=None, cache_dir=None,
                            data_root=None, address=None, cpus_per_run=1)
    assert seen["RAY_AUTH_MODE"] == "token" and len(seen["RAY_AUTH_TOKEN"]) == 64 and reloads == ["token"]
    assert seen["_node_ip_address"] == "127.0.0.1" and seen["include_dashboard"] is False
    assert os.environ["RAY_AUTH_MODE"] == "disabled" and "RAY_AUTH_TOKEN" not in os.environ
    assert executor.local_auth()["RAY_AUTH_TOKEN"] != executor.local_auth()["RAY_AUTH_TOKEN"]


def test_an_instance_with_the_token_refuses_clients_without_it(tmp_path):
    """Ray's gRPC servers listen on every interface (Ray offers no loopback setting): the token is what
    keeps another user of the network out. A client without it cannot join; one with it can."""
    script = textwrap.dedent('''
        import os, subprocess, sys
        from benchmark.ray_executor import local_auth
        os.environ.update(local_auth())
        import ray
        context = ray.init(include_dashboard=False, logging_level="ERROR", num_cpus=1)
        gcs = context.address_info["gcs_address"]
        probe = f"import ray; ray.init(address={gcs!r}, logging_level='ERROR'); print('JOINED')"
        outsider = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
        print("outsider", subprocess.run([sys.executable, "-c", probe], env=outsider, capture_output=True,
                                         text=True, timeout=120).stdout.strip() or "REFUSED")
        print("insider", subprocess.run([sys.executable, "-c", probe], env=dict(os.environ), capture_output=True,
                                        text=True, timeout=120).stdout.strip() or "REFUSED")
        ray.shutdown()
    ''')
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=600,
                          env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)})
    assert "outsider REFUSED" in done.stdout and "insider JOINED" in done.stdout, done.stdout + done.stderr[-2000:]
