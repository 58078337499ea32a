"""The CLI end to end: the smoke preset, resume, coreset export, and every bad input as one line + exit 2."""

import json
import subprocess
import sys

import pytest

from benchmark.cli import main
from benchmark.records import SCHEMA
from tests.conftest import REPO

REQUIRED = {"schema", "method", "dataset", "model", "fraction", "seed", "budget", "selection", "training",
            "clean_accuracy", "attacks", "environment", "created"}


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke")
    command = [sys.executable, "-m", "benchmark", "run", "--method", "random", "--preset", "smoke", "--out", str(out)]
    env = {"CORESET_BENCH_CACHE": str(out / "cache"), "PATH": "/usr/bin:/bin"}
    first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    second = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    return out, first, second


def test_smoke_run_writes_complete_records_and_a_table(smoke):
    out, first, _ = smoke
    assert first.returncode == 0, first.stderr
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert len(records) == 2 and sorted(r["fraction"] for r in records) == [0.1, 0.5]
    for record in records:
        assert REQUIRED <= record.keys() and record["schema"] == SCHEMA
        assert record["dataset"] == "digits" and record["preset"] == "smoke" and record["seed"] == 0
        assert 0 <= record["clean_accuracy"] <= 1
        eps = [a["eps"] for a in record["attacks"]]
        assert eps == sorted(eps) and len(eps) == 5
        for attack in record["attacks"]:
            assert abs(attack["accuracy"] - attack["inhouse_accuracy"]) <= 0.001
        assert {"torch", "timm", "torchattacks", "package", "device"} <= record["environment"].keys()
        assert record["budget"] == round(record["fraction"] * record["pool_size"])
    assert (out / records[0]["selection"]["artifact"]).exists()
    table = [line for line in first.stdout.splitlines() if line.startswith("| random")]
    assert len(table) == 2
    assert not list(out.glob(".*tmp"))  # no temporary files left behind


def test_second_run_resumes_without_recomputing(smoke):
    out, first, second = smoke
    assert second.returncode == 0 and second.stdout == first.stdout  # same records, same table
    assert "2 of 2 run(s) already recorded" in second.stderr


def test_select_exports_the_same_coreset_the_run_trained_on(smoke, tmp_path):
    out, _, _ = smoke
    record = json.loads(next(out.glob("*f0.1*.json")).read_text())
    target = tmp_path / "coreset.json"
    assert main(["select", "--method", "random", "--preset", "smoke", "--fraction", "0.1", "--seed", "0",
                 "--out", str(target)]) == 0
    exported = json.loads(target.read_text())
    import hashlib

    import numpy as np
    digest = hashlib.sha256(np.sort(np.array(exported["pool_indices"], dtype=np.int64)).tobytes()).hexdigest()
    assert digest == record["selection"]["indices_sha256"] and exported["budget"] == record["budget"]


def test_methods_lists_selectors_with_papers(capsys):
    assert main(["methods"]) == 0
    listing = capsys.readouterr().out
    assert "random" in listing and "full" in listing and "parameters" in listing


def _one_class_folder(tmp_path):
    (tmp_path / "one" / "only").mkdir(parents=True)
    return f"imagefolder:{tmp_path / 'one'}"


BAD = {
    "unknown method": (["--method", "nope"], "unknown method 'nope'"),
    "unknown dataset": (["--method", "random", "--dataset", "mnist"], "unknown dataset 'mnist'"),
    "fraction above 1": (["--method", "random", "--preset", "smoke", "--fractions", "1.5"], "outside (0, 1]"),
    "fraction zero": (["--method", "random", "--preset", "smoke", "--fractions", "0"], "outside (0, 1]"),
    "empty seeds": (["--method", "random", "--preset", "smoke", "--seeds", ","], "no seeds given"),
    "repeated seeds": (["--method", "random", "--preset", "smoke", "--seeds", "1,1"], "repeat"),
    "not a number": (["--method", "random", "--fractions", "a"], "expected comma-separated floats"),
    "missing directory": (["--method", "random", "--dataset", "imagefolder:/no/such/dir"], "does not exist"),
    "unknown preset": (["--method", "random", "--preset", "huge"], "unknown preset 'huge'"),
    "unknown parameter": (["--method", "random", "--param", "k=3"], "has no parameter 'k'"),
    "unknown model": (["--method", "random", "--preset", "smoke", "--model", "nonet"], "unknown model 'nonet'"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_exit_2_and_no_record(case, tmp_path, capsys):
    arguments, message = BAD[case]
    assert main(["run", *arguments, "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: ") and message in error
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").iterdir())


def test_imagefolder_with_one_class_is_refused(tmp_path, capsys):
    assert main(["run", "--method", "random", "--dataset", _one_class_folder(tmp_path), "--out",
                 str(tmp_path / "out")]) == 2
    assert "at least two" in capsys.readouterr().err


def test_cifar10_without_network_says_how_to_point_at_a_copy(tmp_path, monkeypatch, capsys):
    # a proxy that refuses connections makes the download fail here even where a network exists
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    assert main(["run", "--method", "random", "--data-root", str(tmp_path / "cifar"), "--out",
                 str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "CIFAR-10 is not under" in error and "--preset smoke" in error and "imagefolder:PATH" in error
    assert not (tmp_path / "cifar").exists() and not (tmp_path / "out").exists()


def test_help_for_every_verb(capsys):
    for verb in ("run", "select", "methods"):
        with pytest.raises(SystemExit) as stop:
            main([verb, "--help"])
        assert stop.value.code == 0
    assert "--fractions" in capsys.readouterr().out


def test_same_seed_same_selection_and_accuracy_on_cpu(tmp_path):
    arguments = ["-q", "run", "--method", "random", "--preset", "smoke", "--fractions", "0.1", "--epochs", "1",
                 "--eps", "8"]
    for name in ("a", "b"):
        assert main([*arguments, "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads(next((tmp_path / name).glob("*.json")).read_text()) for name in ("a", "b"))
    assert a["selection"]["indices_sha256"] == b["selection"]["indices_sha256"]
    assert a["clean_accuracy"] == b["clean_accuracy"] and a["attacks"] == b["attacks"]
    assert a["preset"] == "smoke+custom"
