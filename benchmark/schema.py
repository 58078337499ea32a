"""The record schema check (`coreset-bench/run/1`): what `python -m benchmark validate` and the leaderboard
run on every record before trusting it. Every problem names the file and the field, e.g.
`submissions/x.json: attacks[2].eps: not sorted ascending (0.0157 after 0.0314)`.

A record is what `benchmark.run.run_one` writes. Keys beyond the required ones are allowed (later versions
of schema 1 may add some); required keys must be present with the right type and range. Across files, two
records of the same run (method, parameters, dataset, model, preset and protocol settings, fraction, seed)
are a duplicate: a leaderboard would count that seed twice."""

from __future__ import annotations

import datetime
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.records import SCHEMA

# |torchattacks accuracy - in-house accuracy| allowed in a record: 0.1 percentage points, as in the harness
CROSS_CHECK_TOLERANCE = 0.001
_SCHEMA_PATTERN = re.compile(r"^coreset-bench/run/(\d+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class SchemaError(UserError):
    """Records that fail the check; `problems` holds one message per problem."""

    def __init__(self, problems: list[str], bad_files: int, checked: int):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in {bad_files} of {checked} record file(s)")


@dataclass(frozen=True)
class RecordFile:
    path: Path
    record: dict


# --- field checks: each returns None when fine, else the problem (without file and field) ---------------
def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)) and math.isfinite(value)


def _describe(value) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _string(value, *, empty: bool = False):
    if not isinstance(value, str):
        return f"expected a string, got {_describe(value)}"
    if not empty and not value.strip():
        return "must not be empty"
    return None


def _number(value, low=None, high=None, *, low_open=False):
    if not _is_number(value):
        return f"expected a finite number, got {_describe(value)}"
    if low is not None and (value < low or (low_open and value == low)):
        return f"{value!r} is out of range {'(' if low_open else '['}{low}, {high if high is not None else 'inf'}]"
    if high is not None and value > high:
        return f"{value!r} is out of range {'(' if low_open else '['}{low}, {high}]"
    return None


def _integer(value, low=None):
    if not _is_int(value):
        return f"expected an integer, got {_describe(value)}"
    if low is not None and value < low:
        return f"{value} is less than {low}"
    return None


def _accuracy(value):
    return _number(value, 0, 1)


class _Checker:
    def __init__(self, where: str):
        self.where = where
        self.problems: list[str] = []

    def problem(self, field: str, message: str) -> None:
        self.problems.append(f"{self.where}: {field}: {message}" if field else f"{self.where}: {message}")

    def field(self, mapping: dict, key: str, check, prefix: str = "") -> object:
        """Checks `mapping[key]` with `check`; returns the value when present (valid or not)."""
        name = f"{prefix}{key}"
        if key not in mapping:
            self.problem(name, "missing")
            return None
        message = check(mapping[key])
        if message:
            self.problem(name, message)
        return mapping[key]

    def mapping(self, mapping: dict, key: str, prefix: str = "") -> dict | None:
        value = self.field(mapping, key, lambda v: None if isinstance(v, dict) else
                           f"expected an object, got {_describe(v)}", prefix)
        return value if isinstance(value, dict) else None


def check_record(record, where: str) -> list[str]:
    """Every problem of one parsed record, each as `where: field: message`."""
    check = _Checker(where)
    if not isinstance(record, dict):
        check.problem("", f"expected a JSON object (one run record), got {type(record).__name__}")
        return check.problems
    schema = record.get("schema")
    if "schema" not in record:
        check.problem("schema", f"missing (expected {SCHEMA!r}); is this a run record?")
        return check.problems
    if schema != SCHEMA:
        match = _SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
        current = int(_SCHEMA_PATTERN.match(SCHEMA).group(1))
        if match and int(match.group(1)) > current:
            check.problem("schema", f"{schema!r} was written by a newer version of coreset-bench; upgrade "
                          f"(this version reads {SCHEMA!r})")
        else:
            check.problem("schema", f"unknown schema {_describe(schema)}; expected {SCHEMA!r}")
        return check.problems  # the rest of the format is unknown: checking it would only add noise

    for key in ("method", "dataset", "model", "preset"):
        check.field(record, key, _string)
    check.field(record, "paper", lambda v: _string(v, empty=True))
    check.mapping(record, "method_params")
    fraction = check.field(record, "fraction", lambda v: _number(v, 0, 1, low_open=True))
    check.field(record, "seed", _integer)
    pool_size = check.field(record, "pool_size", lambda v: _integer(v, 1))
    budget = check.field(record, "budget", lambda v: _integer(v, 1))
    if _is_int(budget) and _is_int(pool_size) and budget > pool_size:
        check.problem("budget", f"{budget} is larger than pool_size {pool_size}")
    if _is_int(budget) and _is_int(pool_size) and _is_number(fraction) and budget >= 1 and pool_size >= 1:
        expected = max(1, min(pool_size, round(fraction * pool_size)))
        if budget > expected:
            check.problem("budget", f"{budget} is more than fraction {fraction} of pool_size {pool_size} "
                          f"({expected})")
    check.field(record, "clean_accuracy", _accuracy)
    check.field(record, "created", _timestamp)

    protocol = check.mapping(record, "protocol")
    protocol_eps = None
    if protocol is not None:
        for key in ("preset", "dataset", "model"):
            value = check.field(protocol, key, _string, "protocol.")
            if isinstance(value, str) and key in record and value != record[key]:
                check.problem(f"protocol.{key}", f"{value!r} differs from the record's {key} {record[key]!r}")
        check.field(protocol, "epochs", lambda v: _integer(v, 1), "protocol.")
        check.field(protocol, "proxy_epochs", lambda v: _integer(v, 1), "protocol.")
        check.field(protocol, "batch_size", lambda v: _integer(v, 1), "protocol.")
        check.field(protocol, "lrs", _number_list(positive=True), "protocol.")
        protocol_eps = check.field(protocol, "eps", _number_list(positive=False), "protocol.")

    selection = check.mapping(record, "selection")
    if selection is not None:
        check.field(selection, "indices_sha256", lambda v: None if isinstance(v, str) and _SHA256.match(v) else
                    f"expected 64 lowercase hex digits, got {_describe(v)}", "selection.")
        check.field(selection, "seconds", lambda v: _number(v, 0), "selection.")
        check.field(selection, "weighted", lambda v: None if isinstance(v, bool) else
                    f"expected true or false, got {_describe(v)}", "selection.")
        check.field(selection, "artifact", _file_name, "selection.")

    training = check.mapping(record, "training")
    if training is not None:
        check.field(training, "epochs", lambda v: _integer(v, 1), "training.")
        check.field(training, "lr", lambda v: _number(v, 0, low_open=True), "training.")
        check.field(training, "batch_size", lambda v: _integer(v, 1), "training.")
        check.field(training, "seconds", lambda v: _number(v, 0), "training.")
        check.field(training, "validation_accuracy", _accuracy, "training.")
        check.field(training, "optimizer", _string, "training.")
        grid = check.field(training, "lr_grid", lambda v: None if isinstance(v, list) and v else
                           f"expected a non-empty list, got {_describe(v)}", "training.")
        if isinstance(grid, list):
            for i, entry in enumerate(grid):
                prefix = f"training.lr_grid[{i}]."
                if not isinstance(entry, dict):
                    check.problem(prefix[:-1], f"expected an object, got {_describe(entry)}")
                    continue
                check.field(entry, "lr", lambda v: _number(v, 0, low_open=True), prefix)
                check.field(entry, "validation_accuracy", _accuracy, prefix)

    environment = check.mapping(record, "environment")
    if environment is not None:
        check.field(environment, "package", _string, "environment.")

    _check_attacks(check, record, protocol_eps)
    return check.problems


def _number_list(*, positive: bool):
    def check(value):
        if not isinstance(value, list) or not value:
            return f"expected a non-empty list of numbers, got {_describe(value)}"
        for i, item in enumerate(value):
            message = _number(item, 0, None, low_open=positive)
            if message:
                return f"item {i}: {message}"
        return None
    return check


def _timestamp(value):
    if not isinstance(value, str):
        return f"expected an ISO 8601 timestamp, got {_describe(value)}"
    try:
        datetime.datetime.fromisoformat(value)
    except ValueError:
        return f"expected an ISO 8601 timestamp, got {_describe(value)}"
    return None


def _file_name(value):
    message = _string(value)
    if message:
        return message
    if "/" in value or "\\" in value or value in (".", ".."):
        return f"expected a file name next to the record, got {_describe(value)}"
    return None


def _check_attacks(check: _Checker, record: dict, protocol_eps) -> None:
    attacks = check.field(record, "attacks", lambda v: None if isinstance(v, list) and v else
                          f"expected a non-empty list of attack results, got {_describe(v)}")
    if not isinstance(attacks, list):
        return
    previous = None
    eps_values = []
    unsorted = False
    for i, attack in enumerate(attacks):
        prefix = f"attacks[{i}]."
        if not isinstance(attack, dict):
            check.problem(f"attacks[{i}]", f"expected an object, got {_describe(attack)}")
            continue
        check.field(attack, "name", lambda v: None if v == "fgsm" else
                    f"expected \"fgsm\" (the only attack of schema 1), got {_describe(v)}", prefix)
        eps = check.field(attack, "eps", lambda v: _number(v, 0, 1), prefix)
        accuracy = check.field(attack, "accuracy", _accuracy, prefix)
        inhouse = check.field(attack, "inhouse_accuracy", _accuracy, prefix)
        check.field(attack, "max_abs_diff", lambda v: _number(v, 0), prefix)
        if _is_number(eps):
            if previous is not None and eps <= previous:
                word = "repeats" if eps == previous else "not sorted ascending"
                unsorted = True
                check.problem(f"{prefix}eps", f"{word} ({eps:.4g} after {previous:.4g})")
            previous = eps
            eps_values.append(eps)
        if _is_number(accuracy) and _is_number(inhouse) and abs(accuracy - inhouse) > CROSS_CHECK_TOLERANCE + 1e-12:
            check.problem(f"{prefix}inhouse_accuracy",
                          f"FGSM cross-check failed: torchattacks {accuracy:.4f} vs in-house {inhouse:.4f} "
                          f"differ by more than {CROSS_CHECK_TOLERANCE} (0.1 percentage points)")
    if (isinstance(protocol_eps, list) and all(_is_number(e) for e in protocol_eps)
            and len(eps_values) == len(attacks) and not unsorted
            and (len(eps_values) != len(protocol_eps)
                 or any(not math.isclose(a, b, rel_tol=1e-9) for a, b in zip(eps_values, protocol_eps)))):
        check.problem("attacks", "the eps values differ from protocol.eps")


# --- files ------------------------------------------------------------------------------------------------
def find_record_files(paths: Iterable[Path]) -> list[Path]:
    """Every *.json under the given files and directories (recursively), in a stable order. Selection
    artifacts (*.selection.npz) and hidden files (e.g. a temporary file of an interrupted write) are skipped."""
    found = []
    for path in paths:
        path = Path(path)
        if path.is_file():
            found.append(path)
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*.json") if p.is_file()
                                and not any(part.startswith(".") for part in p.relative_to(path).parts)
                                and not p.name.endswith(".selection.npz")))
        else:
            raise UserError(f"{path}: no such file or directory")
    return found


def _duplicate_key(record: dict) -> str:
    return json.dumps([record.get(key) for key in ("method", "method_params", "dataset", "model", "preset",
                                                   "protocol", "fraction", "seed")], sort_keys=True)


def load_records(paths: Iterable[Path], *, allow_empty: bool = False) -> list[RecordFile]:
    """Reads and checks every record under `paths`; raises `SchemaError` listing every problem of every
    file (unparseable files, schema violations, duplicate runs) when there is any. No record at all is a
    `UserError` unless `allow_empty`."""
    paths = list(paths)
    files = find_record_files(paths)
    if not files and not allow_empty:
        raise UserError(f"no record files (*.json) under {', '.join(str(p) for p in paths)}")
    problems: list[str] = []
    records: list[RecordFile] = []
    seen: dict[str, Path] = {}
    bad_files = 0
    for path in files:
        before = len(problems)
        _read_one(path, problems, records, seen)
        bad_files += len(problems) > before
    if problems:
        raise SchemaError(problems, bad_files, len(files))
    return records


def _read_one(path: Path, problems: list[str], records: list[RecordFile], seen: dict[str, Path]) -> None:
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"{path}: not UTF-8 text: {error.reason} at byte {error.start}")
        return
    if not text.strip():
        problems.append(f"{path}: empty file (an interrupted copy?)")
        return
    try:
        record = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as error:
        problems.append(f"{path}: not valid JSON (truncated?): {error.msg} (line {error.lineno}, "
                        f"column {error.colno})")
        return
    except (ValueError, RecursionError) as error:
        problems.append(f"{path}: not valid JSON: {error}")
        return
    found = check_record(record, str(path))
    problems.extend(found)
    if found:
        return
    key = _duplicate_key(record)
    if key in seen:
        problems.append(f"{path}: duplicate run: same method, method_params, dataset, model, preset, protocol, "
                        f"fraction and seed as {seen[key]}")
        return
    seen[key] = path
    records.append(RecordFile(path, record))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")
