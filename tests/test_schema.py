"""The record check (`python -m benchmark validate`): the published JSON Schemas (versions 1 and 2) plus the
rules a schema cannot state, one case per class of violation, each message naming the file and the field;
hostile content (duplicate keys, control characters, surrogates, huge integers, links); the CLI's exit status
and output."""

import json
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.records import SCHEMA
from benchmark.schema import SchemaError, check_record, load_records, schema_file
from tests.records import (
    EPS,
    make_record,
    make_record_v2,
    make_record_v3,
    make_record_v5,
    make_record_v6,
    mask,
    write_records,
)


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
    ("newer schema", "schema", "coreset-bench/run/99", "schema",
     "written by a newer version of coreset-bench; upgrade"),
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
    record["schema"] = "coreset-bench/run/9"
    del record["attacks"]  # a newer format may differ anywhere: only the version is reported
    assert check_record(record, "f.json") == ["f.json: schema: 'coreset-bench/run/9' was written by a newer version "
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
    """make_record_v2 mirrors benchmark.run.run_one: the fields its Record(...) call sets (and the selection and
    training parts it builds) are the helper's keys, so the schema and these tests follow the real format."""
    import ast
    import inspect

    import benchmark.run
    from benchmark.record import Record

    def keywords(function, called: str) -> set:
        tree = ast.parse(inspect.getsource(function))
        return {keyword.arg for node in ast.walk(tree) if isinstance(node, ast.Call)
                and getattr(node.func, "id", None) == called for keyword in node.keywords}

    record = make_record_v3()
    assert keywords(benchmark.run.run_one, "Record") == set(record)
    assert keywords(benchmark.run.run_one, "SelectionPart") == set(record["selection"])
    assert keywords(benchmark.run.train_on_selection, "Training") == set(record["training"])
    assert Record.from_json(record).to_json() == record


# --- version 2 ---------------------------------------------------------------------------------------------
def test_the_v2_helper_makes_valid_records():
    assert check_record(make_record_v2(), "x.json") == []
    assert check_record(make_record_v2("full", fraction=1.0, clean=0.8), "x.json") == []


def _v2(change) -> dict:
    record = make_record_v2(clean=0.5)
    change(record)
    return record


V2_VIOLATIONS = [
    ("mask too short", lambda r: r["attacks"][0].update(robust=mask(10, 100)), "attacks[0].robust",
     "does not hold one bit per test image (200)"),
    ("mask disagrees with accuracy", lambda r: r["attacks"][3].update(accuracy=0.25), "attacks[3].robust",
     "the accuracy says 0.2500"),
    ("robust above clean", lambda r: r["attacks"][0].update(accuracy=0.6, robust=mask(120, 200)), "attacks[0].accuracy",
     "above the clean accuracy"),
    ("cross-check beyond tolerance", lambda r: r["attacks"][1]["cross_check"].update(reference_accuracy=0.5625),
     "attacks[1].cross_check", "more than the tolerance"),
    ("worst case above an attack", lambda r: r["worst_case"][0].update(accuracy=0.45, robust=mask(90, 200)),
     "worst_case[0].accuracy", "the worst case is over every attack"),
    ("worst case missing", lambda r: r["worst_case"].pop(), "worst_case", "has no entry for Linf eps 0.06275"),
    ("protocol attack without result", lambda r: r.update(attacks=[a for a in r["attacks"] if a["name"] != "pgd"]),
     "protocol.attacks[1]", "pgd at eps 0.003922 is in the protocol"),
    ("repeated attack", lambda r: r["attacks"].append(dict(r["attacks"][0])), "attacks[10]", "repeats attacks[0]"),
    ("unknown threat", lambda r: r["attacks"][0].update(threat="L1"), "attacks[0].threat", "expected one of"),
    ("weights hash", lambda r: r["model_weights"].update(sha256="nope"), "model_weights.sha256", "hex digits"),
    ("bad flag", lambda r: r["flags"].append({"code": "lucky", "detail": "x"}), "flags[0].code", "expected one of"),
    ("method name with markup", lambda r: r.update(method="cal (k=5)"), "method", "expected a lowercase name"),
    ("paper url script", lambda r: r.update(paper_url="javascript:alert(1)"), "paper_url", "does not match"),
    ("typed parameters", lambda r: r.update(method_params={"k": [10]}), "method_params.k", "expected a number"),
    ("huge integer", lambda r: r.update(seed=10 ** 30), "seed", "beyond 2^53"),
    ("control character", lambda r: r.update(paper="a\x1b[31mred"), "paper", "control"),
    ("line separator", lambda r: r.update(paper="one\u2028two"), "paper", "line-separator"),
    ("lone surrogate", lambda r: r.update(paper="x\ud800y"), "paper", "surrogate"),
]


@pytest.mark.parametrize("change, where, words", [case[1:] for case in V2_VIOLATIONS],
                         ids=[case[0] for case in V2_VIOLATIONS])
def test_each_v2_violation_is_reported_with_its_field(change, where, words):
    problems = check_record(_v2(change), "x.json")
    messages = [p for p in problems if p.startswith(f"x.json: {where}: ")]
    assert messages, problems
    assert any(words in message for message in messages), messages


def test_duplicate_keys_are_refused(tmp_path):
    path = tmp_path / "twice.json"
    text = json.dumps(make_record_v2())
    path.write_text(text[:-1] + ', "seed": 7}')  # a second "seed": readers would disagree on which counts
    with pytest.raises(SchemaError) as caught:
        load_records([tmp_path])
    assert caught.value.problems == [f"{path}: not valid JSON: duplicate key(s) 'seed' in one object"]


def test_symbolic_links_are_refused_not_followed(tmp_path):
    write_records(tmp_path / "records", [make_record_v2()])
    (tmp_path / "secret.json").write_text(json.dumps(make_record_v2(seed=5)))
    (tmp_path / "records" / "link.json").symlink_to(tmp_path / "secret.json")
    (tmp_path / "records" / "folder").symlink_to(tmp_path)
    with pytest.raises(SchemaError) as caught:
        load_records([tmp_path / "records"])
    assert all("a symbolic link; records must be regular files" in p for p in caught.value.problems)
    assert any(p.startswith(str(tmp_path / "records" / "link.json")) for p in caught.value.problems)


def test_published_schema_files_are_valid_json_schemas():
    import jsonschema

    for version in (1, 2, 3):
        schema = json.loads(schema_file(version).read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["schema"]["const"] == f"coreset-bench/run/{version}"


def test_validate_reads_a_cross_check_tolerance_against_the_attack_registry(tmp_path, capsys):
    # a record states the tolerance its cross-checks used; one that widens it to pass a gap is refused, even though
    # the gap is within what it states. validate is the gate (the page's rendering never imports torch, so it cannot
    # read the registry)
    genuine = next(path for path in sorted(Path(__file__).parents[1].glob("*/cifar10-cpu/random__*f0.1__s0*.json"))
                   if json.loads(path.read_text())["schema"] == "coreset-bench/run/5")
    record = json.loads(genuine.read_text())
    index, entry = next((i, a) for i, a in enumerate(record["attacks"]) if a["cross_check"] and a["name"] == "fgsm")
    assert record["environment"]["device"] == "cpu" and entry["cross_check"]["tolerance_points"] == 0.1
    folder = tmp_path / "records"
    folder.mkdir()
    (folder / genuine.name).write_text(json.dumps(record))
    assert main(["validate", str(folder)]) == 0
    check = entry["cross_check"]
    check["tolerance_points"], check["tolerance_images"] = 50.0, 4
    check["reference_accuracy"] = max(0.0, check["accuracy"] - 3 / check["images"])
    (folder / genuine.name).write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["validate", str(folder)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0] == (f"{folder / genuine.name}: attacks[{index}].cross_check: states a tolerance of 50 points or 4 "
                      f"images, more than fgsm allows on cpu (0.1 points or 0 images)")
    assert err[-1] == "error: 1 problem(s) in 1 of 1 record file(s)"


def test_the_runs_sharing_a_device_are_a_version_6_field_of_one_or_more():
    assert check_record(make_record_v6(runs_per_device=4), "r") == []
    assert check_record(make_record_v6(), "r") == []  # not stated: a run outside a job
    (problem,) = check_record(make_record_v6(runs_per_device=0), "r")
    assert problem == "r: environment.runs_per_device: 0 is less than 1"
    older = make_record_v5()
    older["environment"]["runs_per_device"] = 4  # version 5 has no such field
    (problem,) = check_record(older, "r")
    assert "runs_per_device" in problem and "not allowed" in problem
