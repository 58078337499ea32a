"""The CLI end to end: the smoke preset, resume, coreset export, and every bad input as one line + exit 2."""

import json
import subprocess
import sys

import pytest

from benchmark.cli import main
from benchmark.records import SCHEMA
from tests.conftest import REPO

REQUIRED = {"schema", "method", "dataset", "model", "fraction", "seed", "budget", "selection", "training",
            "model_weights", "clean_accuracy", "evaluation", "attacks", "worst_case", "checks", "flags", "gallery",
            "environment", "created"}


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
        # the first minute shows a benchmark that works: both fractions well above chance, more data better
        assert 0.3 <= record["clean_accuracy"] <= 1 and not record["flags"]
        assert [(a["name"], round(a["eps"] * 255)) for a in record["attacks"]] == [
            ("fgsm", 2), ("fgsm", 8), ("pgd", 2), ("pgd", 8), ("apgd", 2), ("apgd", 8)]
        for attack in record["attacks"]:
            check = attack["cross_check"]
            assert check["images"] == 4
            # FGSM and PGD agree with torchattacks exactly; APGD with Croce's code within its stated tolerance
            allowed = 0 if attack["name"] != "apgd" else max(check["tolerance_images"],
                                                             check["tolerance_points"] / 100 * check["images"])
            assert abs(check["accuracy"] - check["reference_accuracy"]) * check["images"] <= allowed + 1e-9
            assert attack["accuracy"] < record["clean_accuracy"]
        assert all(check["passed"] for check in record["checks"])
        assert {"torch", "timm", "torchattacks", "package", "device", "peak_memory_mb"} <= record["environment"].keys()
        assert set(record["environment"]["peak_memory_mb"]) >= {"selection", "training", "evaluation"}
        assert record["budget"] == round(record["fraction"] * record["pool_size"])
        for artifact in (record["selection"]["artifact"], record["model_weights"]["artifact"],
                         record["gallery"]["artifact"]):
            assert (out / artifact).is_file()
    half, tenth = sorted(records, key=lambda r: -r["fraction"])
    assert half["clean_accuracy"] > tenth["clean_accuracy"]
    assert main(["validate", str(out)]) == 0
    assert "python -m benchmark leaderboard " in first.stderr and "--out site" in first.stderr  # how to see them
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
    "empty seeds": (["--method", "random", "--preset", "smoke", "--seeds", ","], "--seeds: none given"),
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
    for verb in ("run", "select", "methods", "attack", "export", "attacks", "datasets", "presets"):
        with pytest.raises(SystemExit) as stop:
            main([verb, "--help"])
        assert stop.value.code == 0
    assert "--fractions" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("coreset-bench 0.")


def test_same_seed_same_selection_and_accuracy_on_cpu(tmp_path):
    arguments = ["-q", "run", "--method", "random", "--preset", "smoke", "--fractions", "0.1", "--epochs", "1",
                 "--eps", "8"]
    for name in ("a", "b"):
        assert main([*arguments, "--out", str(tmp_path / name)]) == 0
    a, b = (json.loads(next((tmp_path / name).glob("*.json")).read_text()) for name in ("a", "b"))
    assert a["selection"]["indices_sha256"] == b["selection"]["indices_sha256"]
    assert a["clean_accuracy"] == b["clean_accuracy"] and a["attacks"] == b["attacks"]
    assert a["preset"] == "smoke+custom"


def test_methods_are_found_from_a_directory_with_its_own_methods_package(tmp_path):
    """Only `benchmark` is claimed at the top level: a user's own `methods/` package does not hide ours."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "__init__.py").write_text("raise ImportError('the wrong methods package')\n")
    (tmp_path / "leaderboard").mkdir()
    (tmp_path / "leaderboard" / "__init__.py").write_text("raise ImportError('the wrong leaderboard')\n")
    result = subprocess.run([sys.executable, "-m", "benchmark", "methods"], capture_output=True, text=True,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    listed = {line.split()[0] for line in result.stdout.splitlines() if line and not line.startswith(" ")}
    assert {"random", "cal", "glister", "grand", "graphcut", "moderate_ds", "full"} <= listed


def test_the_wheel_installs_no_top_level_name_but_benchmark(tmp_path):
    import zipfile

    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(REPO)], check=True, capture_output=True, timeout=600)
    (wheel,) = tmp_path.glob("coreset_bench-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert top == {"benchmark"}
    assert "benchmark/methods/cal.py" in names and "benchmark/leaderboard/templates/index.html.j2" in names
    assert "benchmark/schemas/run-3.schema.json" in names and "benchmark/schemas/run-4.schema.json" in names
    assert "benchmark/training/trades.py" in names
    assert "benchmark/leaderboard/templates/leaderboard.md.j2" in names


def test_check_tells_a_contributor_whether_a_selector_keeps_the_contract(capsys):
    """The contract runs from the installed package (no tests folder): a registered selector passes it; a
    plug-in that ignores the class budgets and the seed's determinism fails, each check named."""
    import itertools
    from dataclasses import dataclass

    import numpy as np

    from benchmark.selection import SELECTORS, Selection, Selector

    assert main(["check", "random"]) == 0
    assert "random passes the selector contract (5 checks)" in capsys.readouterr().out
    calls = itertools.count()

    @dataclass(frozen=True)
    class Sloppy(Selector):
        name = "sloppy"
        paper = "Nobody, 2026. A sloppy selector"
        uses_proxy = False

        def select(self, context):
            shift = next(calls) % 2  # two calls with one seed differ: not determined by the seed
            return Selection(np.arange(context.budget) + shift)  # the first points: ignores the class budgets

    SELECTORS.register(Sloppy)
    try:
        assert main(["check", "sloppy"]) == 2
        out, err = capsys.readouterr()
        assert "FAIL exactly the budget, per class" in out and "FAIL the same seed, the same indices" in out
        assert err.strip().startswith("error: sloppy:") and "contract check(s) failed" in err
    finally:
        SELECTORS._entries.pop("sloppy", None)
