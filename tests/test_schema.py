"""The record schema check (`python -m benchmark validate`): one case per class of violation, each message
naming the file and the field, plus the CLI's exit status and output. `make_record` (records shaped like
`benchmark.run.run_one` writes them) is shared with the leaderboard tests."""

import copy
import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.records import SCHEMA, slug
from benchmark.schema import SchemaError, check_record, load_records

EPS = [1 / 255, 2 / 255, 4 / 255, 8 / 255, 16 / 255]
PROTOCOL = {"preset": "smoke", "dataset": "digits", "model": "mobilenetv2_035", "epochs": 4, "lrs": [0.05],
            "eps": EPS, "proxy_epochs": 2, "proxy_lr": 0.05, "batch_size": 64, "momentum": 0.9, "nesterov": True,
            "weight_decay": 0.0005, "method_defaults": {}}


def make_record(method="random", *, fraction=0.1, seed=0, clean=0.5, fgsm=None, params=None, paper=None,
                pool_size=1000, seconds=0.25, protocol=None) -> dict:
    """A valid record as `run_one` writes it; FGSM accuracies default to clean - 0.05 * (i + 1)."""
    protocol = copy.deepcopy(protocol or PROTOCOL)
    fgsm = fgsm if fgsm is not None else [round(clean - 0.05 * (i + 1), 6) for i in range(len(protocol["eps"]))]
    budget = max(1, min(pool_size, round(fraction * pool_size)))
    return {
        "schema": SCHEMA, "method": method, "method_params": params or {},
        "paper": paper if paper is not None else f"{method} et al. 2020",
        "dataset": protocol["dataset"], "model": protocol["model"], "preset": protocol["preset"],
        "protocol": protocol, "fraction": fraction, "seed": seed, "budget": budget, "pool_size": pool_size,
        "selection": {"indices_sha256": "ab" * 32, "seconds": seconds, "weighted": False,
                      "artifact": f"{slug(str(method))}__f{fraction:g}__s{seed}.selection.npz"},
        "training": {"epochs": protocol["epochs"], "lr": 0.05, "lr_grid": [{"lr": 0.05, "validation_accuracy": 0.4}],
                     "optimizer": "SGD momentum 0.9, nesterov True, weight decay 0.0005, cosine schedule",
                     "batch_size": 64, "seconds": 3.0, "validation_accuracy": 0.4},
        "clean_accuracy": clean,
        "attacks": [{"name": "fgsm", "eps": eps, "accuracy": accuracy, "inhouse_accuracy": accuracy,
                     "max_abs_diff": 0.0} for eps, accuracy in zip(protocol["eps"], fgsm)],
        "environment": {"package": "0.1.0", "python": "3.11.2", "torch": "2.5.0", "device": "cpu: x86_64"},
        "created": "2026-01-02T03:04:05+00:00",
    }


def write_records(directory: Path, records: list[dict]) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for record in records:
        name = f"{slug(str(record['method']))}__f{record['fraction']}__s{record['seed']}"
        if record["method_params"] and isinstance(record["method_params"], dict):
            name += "__" + slug(json.dumps(record["method_params"], sort_keys=True))
        path = directory / f"{name}.json"
        path.write_text(json.dumps(record, indent=2))
        paths.append(path)
    return paths


def _set(record: dict, dotted: str, value) -> dict:
    """record with `a.b[2].c` set to value (or deleted when value is DELETE)."""
    *parents, last = dotted.replace("]", "").replace("[", ".").split(".")
    target = record
    for part in parents:
        target = target[int(part)] if part.isdigit() else target[part]
    key = int(last) if last.isdigit() else last
    if value is DELETE:
        del target[key]
    else:
        target[key] = value
    return record


DELETE = object()

# (case id, field to change, new value, expected field in the message, expected words in the message)
VIOLATIONS = [
    ("missing key", "clean_accuracy", DELETE, "clean_accuracy", "missing"),
    ("missing nested key", "selection.seconds", DELETE, "selection.seconds", "missing"),
    ("accuracy as string", "clean_accuracy", "0.5", "clean_accuracy", "expected a finite number"),
    ("accuracy above 1", "clean_accuracy", 1.5, "clean_accuracy", "out of range"),
    ("accuracy below 0", "attacks.1.accuracy", -0.1, "attacks[1].accuracy", "out of range"),
    ("fraction zero", "fraction", 0, "fraction", "out of range (0"),
    ("fraction above 1", "fraction", 1.2, "fraction", "out of range"),
    ("seed not int", "seed", 1.5, "seed", "expected an integer"),
    ("seed bool", "seed", True, "seed", "expected an integer"),
    ("budget zero", "budget", 0, "budget", "less than 1"),
    ("budget above pool", "budget", 5000, "budget", "larger than pool_size"),
    ("method empty", "method", "", "method", "must not be empty"),
    ("method not string", "method", 3, "method", "expected a string"),
    ("params not object", "method_params", [1], "method_params", "expected an object"),
    ("eps not sorted", "attacks.2.eps", 0.5 / 255, "attacks[2].eps", "not sorted ascending"),
    ("eps repeated", "attacks.2.eps", 2 / 255, "attacks[2].eps", "repeats"),
    ("cross-check", "attacks.3.inhouse_accuracy", 0.30 - 0.0021, "attacks[3].inhouse_accuracy", "cross-check"),
    ("attacks empty", "attacks", [], "attacks", "non-empty list"),
    ("attack not fgsm", "attacks.0.name", "pgd", "attacks[0].name", "fgsm"),
    ("eps differ from protocol", "protocol.eps", EPS[:4], "attacks", "differ from protocol.eps"),
    ("protocol mismatch", "protocol.dataset", "cifar10", "protocol.dataset", "differs"),
    ("bad sha", "selection.indices_sha256", "xyz", "selection.indices_sha256", "hex digits"),
    ("bad timestamp", "created", "yesterday", "created", "ISO 8601"),
    ("nested list entry", "training.lr_grid.0.validation_accuracy", 1.01, "training.lr_grid[0].validation_accuracy",
     "out of range"),
    ("artifact path", "selection.artifact", "../../etc/passwd", "selection.artifact", "file name"),
    ("old schema", "schema", "coreset-bench/run/0", "schema", "unknown schema"),
    ("newer schema", "schema", "coreset-bench/run/2", "schema", "written by a newer version of coreset-bench; upgrade"),
]


def test_the_helper_makes_valid_records():
    assert check_record(make_record(), "x.json") == []
    assert check_record(make_record("full", fraction=1.0, seed=3), "x.json") == []


@pytest.mark.parametrize("field, value, where, words", [case[1:] for case in VIOLATIONS],
                         ids=[case[0] for case in VIOLATIONS])
def test_each_violation_is_reported_with_file_and_field(tmp_path, field, value, where, words):
    record = _set(make_record(clean=0.5), field, value)
    (path,) = write_records(tmp_path / "submissions", [record])
    with pytest.raises(SchemaError) as caught:
        load_records([tmp_path / "submissions"])
    messages = [p for p in caught.value.problems if p.startswith(f"{path}: {where}: ")]
    assert messages, caught.value.problems
    assert any(words in message for message in messages), messages


def test_a_future_schema_is_reported_alone(tmp_path):
    record = make_record()
    record["schema"] = "coreset-bench/run/2"
    del record["attacks"]  # a newer format may differ anywhere: only the version is reported
    assert check_record(record, "f.json") == ["f.json: schema: 'coreset-bench/run/2' was written by a newer version "
                                              f"of coreset-bench; upgrade (this version reads {SCHEMA!r})"]


def test_cross_check_tolerance_is_inclusive():
    record = make_record(clean=0.5)
    record["attacks"][0]["inhouse_accuracy"] = record["attacks"][0]["accuracy"] + 0.001
    assert check_record(record, "x.json") == []
    record["attacks"][0]["inhouse_accuracy"] += 0.0002
    assert check_record(record, "x.json")[0].startswith("x.json: attacks[0].inhouse_accuracy: FGSM cross-check")


@pytest.mark.parametrize("content, words", [
    ('{"schema": "coreset-bench/run/1", "method": "ran', "not valid JSON (truncated?)"),
    ("", "empty file"),
    ("[1, 2]", "expected a JSON object"),
    ('{"clean_accuracy": NaN}', "not valid JSON: NaN is not a JSON number"),
    (b"\xff\xfe{}", "not UTF-8"),
], ids=["truncated", "empty", "not an object", "NaN", "binary"])
def test_unreadable_files(tmp_path, content, words):
    path = tmp_path / "bad.json"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(SchemaError) as caught:
        load_records([tmp_path])
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(f"{path}: ") and words in caught.value.problems[0]


def test_duplicate_runs_across_files(tmp_path):
    write_records(tmp_path / "a", [make_record(seed=1, clean=0.5)])
    write_records(tmp_path / "b", [make_record(seed=1, clean=0.6)])  # same run, other numbers
    write_records(tmp_path / "c", [make_record(seed=1, clean=0.6, params={"k": 3})])  # other parameters: fine
    with pytest.raises(SchemaError) as caught:
        load_records([tmp_path])
    (problem,) = caught.value.problems
    assert problem.startswith(f"{tmp_path / 'b' / 'random__f0.1__s1.json'}: duplicate run")
    assert str(tmp_path / "a" / "random__f0.1__s1.json") in problem


def test_selection_artifacts_and_hidden_files_are_skipped(tmp_path):
    write_records(tmp_path, [make_record()])
    (tmp_path / "random__f0.1__s0.selection.npz").write_bytes(b"PK\x03\x04 not json")
    (tmp_path / ".random.json.tmp").write_text("{")
    (tmp_path / ".hidden.json").write_text("{")
    assert [r.path.name for r in load_records([tmp_path])] == ["random__f0.1__s0.json"]


def test_validate_cli_lists_every_problem_and_exits_2(tmp_path, capsys):
    bad = make_record(seed=1)
    bad["attacks"][2]["eps"] = 0.001
    bad["clean_accuracy"] = 2
    write_records(tmp_path / "submissions", [make_record(seed=0), bad])
    (tmp_path / "submissions" / "cut.json").write_text('{"schema": ')
    assert main(["validate", str(tmp_path / "submissions")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    folder = tmp_path / "submissions"
    assert f"{folder / 'random__f0.1__s1.json'}: attacks[2].eps: not sorted ascending (0.001 after 0.007843)" in err
    assert f"{folder / 'random__f0.1__s1.json'}: clean_accuracy: 2 is out of range [0, 1]" in err
    assert any(line.startswith(f"{folder / 'cut.json'}: not valid JSON") for line in err)
    assert err[-1] == "error: 3 problem(s) in 2 of 3 record file(s)"


def test_validate_cli_accepts_valid_records(tmp_path, capsys):
    write_records(tmp_path, [make_record(seed=s) for s in range(3)] + [make_record("full", fraction=1.0)])
    assert main(["validate", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("4 record(s) valid (2 method/dataset/model/preset combination(s))")


def test_no_records_and_missing_paths(tmp_path, capsys):
    (tmp_path / "README.md").write_text("# not a record")
    assert main(["validate", str(tmp_path)]) == 0  # an empty submissions/ is valid, and says so
    assert capsys.readouterr().out == f"no record files (*.json) under {tmp_path}: nothing to check\n"
    with pytest.raises(UserError, match="no record files"):
        load_records([tmp_path])  # what the leaderboard calls: nothing to show is an error
    assert main(["validate", str(tmp_path / "missing")]) == 2
    assert capsys.readouterr().err == f"error: {tmp_path / 'missing'}: no such file or directory\n"


def test_helper_records_have_the_keys_run_one_writes():
    """make_record mirrors benchmark.run.run_one: the record literal there must have the same keys (top
    level, selection, training), so the schema and these tests follow the real format."""
    import ast
    import inspect

    import benchmark.run

    tree = ast.parse(inspect.getsource(benchmark.run.run_one))
    literals = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Dict) and all(isinstance(key, ast.Constant) for key in node.keys):
            keys = {key.value for key in node.keys}
            for name, marker in (("record", "schema"), ("selection", "indices_sha256"), ("training", "lr_grid")):
                if marker in keys:
                    literals[name] = keys
    record = make_record()
    assert literals["record"] == set(record)
    assert literals["selection"] == set(record["selection"])
    assert literals["training"] == set(record["training"])
