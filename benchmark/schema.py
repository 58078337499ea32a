"""Reading record files as untrusted input, for `validate`, the leaderboard, `export` and `attack`: find them,
parse them, check them against the published JSON Schema of their version (`benchmark/schemas/run-N.schema.json`,
with the jsonschema library, its errors put in this project's words), then read them into `benchmark.record.Record`
and check that each agrees with itself (`Record.problems`). Every problem names the file and the field, e.g.
`submissions/x.json: attacks[2].eps: 1.5 is out of range [0, 1]`.

Records are parsed with duplicate keys refused and NaN/Infinity refused, every string is checked for control
characters, line and paragraph separators, bidirectional overrides and lone surrogates, and every integer must
survive a float (|n| < 2^53). Across files, two records of the same run are a duplicate. Symbolic links are not
followed. Nothing here imports torch."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.record import Record, RecordError, parse_json, schema_errors, schema_file, schema_version
from benchmark.storage import read_regular

__all__ = ["RecordFile", "SchemaError", "check_record", "find_record_files", "load_records", "parse_record",
           "schema_file"]
# characters no record string may hold: C0/C1 controls, line/paragraph separators, bidi embeddings/overrides
_FORBIDDEN = re.compile("[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MAX_SAFE_INTEGER = 2 ** 53 - 1
MAX_RECORD_BYTES = 64 << 20  # a record with masks of a million test images is about 10 MB
parse_record = parse_json


class SchemaError(UserError):
    """Records that fail the check; `problems` holds one message per problem."""

    def __init__(self, problems: list[str], bad_files: int, checked: int):
        self.problems = problems
        self.summary = f"{len(problems)} problem(s) in {bad_files} of {checked} record file(s)"
        first = f" (the first: {problems[0]})" if problems else ""
        super().__init__(self.summary + first)


@dataclass(frozen=True)
class RecordFile:
    path: Path
    record: Record


def _path(parts) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(value) -> str:
    text = json.dumps(value, ensure_ascii=True) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _interval(schema: dict) -> str:
    low = schema.get("exclusiveMinimum", schema.get("minimum"))
    high = schema.get("exclusiveMaximum", schema.get("maximum"))
    left = "(" if "exclusiveMinimum" in schema else "["
    right = ")" if "exclusiveMaximum" in schema else "]"
    return f"{left}{low if low is not None else '-inf'}, {high if high is not None else 'inf'}{right}"


_TYPE_WORDS = {"number": "a finite number", "integer": "an integer", "string": "a string", "object": "an object",
               "array": "a list", "boolean": "true or false"}
_PATTERN_WORDS = {"^[0-9a-f]{64}$": "expected 64 lowercase hex digits",
                  "^[A-Za-z0-9_.+-]{1,255}$": "expected a file name next to the record",
                  "^[a-z][a-z0-9_-]{0,63}$": "expected a lowercase name (letters, digits, _ and -)",
                  "^[A-Za-z0-9_.+-]{1,100}$": "expected a name of letters, digits and _.+-",
                  "^[A-Za-z0-9+/]*={0,2}$": "expected base64 text"}


def _message(error) -> tuple[str, str]:
    """(field path, message) for one jsonschema error, in the words of this project."""
    where = list(error.absolute_path)
    value, schema, kind = error.instance, error.schema, error.validator
    if kind == "required":
        missing = error.message.split("'")[1] if "'" in error.message else "?"
        return _path(where + [missing]), "missing"
    if kind == "type":
        expected = schema["type"] if isinstance(schema["type"], str) else schema["type"][0]
        return _path(where), f"expected {_TYPE_WORDS.get(expected, expected)}, got {_describe(value)}"
    if kind in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        if isinstance(value, int) and kind == "minimum":
            return _path(where), f"{value} is less than {schema['minimum']}"
        return _path(where), f"{value!r} is out of range {_interval(schema)}"
    if kind == "minItems":
        return _path(where), f"expected a non-empty list, got {_describe(value)}"
    if kind == "minLength":
        return _path(where), "must not be empty"
    if kind == "maxLength":
        return _path(where), f"longer than {schema['maxLength']} characters"
    if kind == "pattern":
        if value == "":
            return _path(where), "must not be empty"
        if schema["pattern"].startswith("^[0-9]{4}-"):
            return _path(where), f"expected an ISO 8601 timestamp, got {_describe(value)}"
        if schema["pattern"].startswith("^[^"):
            return _path(where), "contains control or line-separator characters"
        return _path(where), f"{_PATTERN_WORDS.get(schema['pattern'], 'does not match ' + schema['pattern'])}, " \
                             f"got {_describe(value)}"
    if kind == "const":
        return _path(where), f"expected {_describe(schema['const'])}, got {_describe(value)}"
    if kind == "enum":
        return _path(where), f"expected one of {', '.join(map(_describe, schema['enum']))}, got {_describe(value)}"
    if kind == "not":
        return _path(where), f"expected a file name next to the record, got {_describe(value)}"
    if kind == "anyOf":
        return _path(where), f"expected a number, true/false or plain text, got {_describe(value)}"
    if kind == "propertyNames":
        return _path(where), f"has a key that is not a plain name: {_describe(value)}"
    return _path(where), error.message.splitlines()[0][:200]


def check_record(data, where: str) -> list[str]:
    """Every problem of one parsed record, each as `where: field: message`."""
    return read_record(data, where)[1]


def read_record(data, where: str) -> tuple[Record | None, list[str]]:
    """The record `data` holds and its problems (the record is None unless there are none)."""
    def problem(field: str, message: str) -> str:
        return f"{where}: {field}: {message}" if field else f"{where}: {message}"

    version, why = schema_version(data)
    if version is None:
        return None, [f"{where}: {why}"]
    problems = [problem(field, message) for field, message in _unsafe_values(data, [])]
    seen = set()
    for error in schema_errors(data):
        field, message = _message(error)
        if (field, message) not in seen:
            seen.add((field, message))
            problems.append(problem(field, message))
    try:
        record = Record.from_json(data, schema_checked=True)
    except RecordError as error:
        return None, problems + [problem(field, message) for field, message in error.problems]
    try:
        problems += [problem(field, message) for field, message in record.problems()]
    except (TypeError, ValueError, AttributeError, IndexError, OverflowError):
        if not problems:
            raise
        # fields the consistency rules read are malformed, and the schema said so already
    return (None if problems else record), problems


def _unsafe_values(value, path: list) -> list[tuple[str, str]]:
    """Strings with characters that could rewrite a page or a table; integers a float cannot hold."""
    found = []
    if isinstance(value, str):
        if _FORBIDDEN.search(value):
            found.append((_path(path), "contains control, line-separator, bidi-override or unpaired surrogate "
                          "characters"))
    elif isinstance(value, bool):
        pass
    elif isinstance(value, int):
        if abs(value) > MAX_SAFE_INTEGER:
            found.append((_path(path), f"integer of {len(str(abs(value)))} digits: beyond 2^53, which JSON readers "
                          f"cannot all hold"))
    elif isinstance(value, dict):
        for key, item in value.items():
            if _FORBIDDEN.search(key):
                found.append((_path(path), "has a key with control, line-separator or surrogate characters"))
            found += _unsafe_values(item, path + [key])
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _unsafe_values(item, path + [i])
    return found


# --- files ------------------------------------------------------------------------------------------------
def find_record_files(paths: Iterable[Path]) -> tuple[list[Path], list[str]]:
    """Every *.json under the given files and directories (recursively), in a stable order, and a problem for
    each symbolic link met (never followed: a link could publish any file). Hidden files and folders (e.g. a
    temporary file of an interrupted write, a run's partial state) are skipped."""
    found, problems = [], []
    for path in paths:
        path = Path(path)
        if path.is_symlink():
            problems.append(f"{path}: a symbolic link; records must be regular files (not followed)")
        elif path.is_file():
            found.append(path)
        elif path.is_dir():
            for candidate in sorted(path.rglob("*.json")):
                relative = candidate.relative_to(path)
                if any(part.startswith(".") for part in relative.parts):
                    continue
                linked = [path.joinpath(*relative.parts[:i + 1]) for i in range(len(relative.parts))]
                if any(p.is_symlink() for p in linked):
                    problems.append(f"{candidate}: a symbolic link; records must be regular files (not followed)")
                elif candidate.is_file():
                    found.append(candidate)
                elif not candidate.is_dir():
                    problems.append(f"{candidate}: not a regular file (a FIFO or a device); records are files")
        else:
            raise UserError(f"{path}: no such file or directory")
    return found, problems


def load_records(paths: Iterable[Path], *, allow_empty: bool = False, registry: bool = False) -> list[RecordFile]:
    """Reads and checks every record under `paths`; raises `SchemaError` listing every problem of every
    file (unparseable files, schema violations, duplicate runs, links) when there is any. No record at all is
    a `UserError` unless `allow_empty`. `registry`: also read what the records state against this checkout's
    attack registry (`validate`; it imports torch, which the pages never do)."""
    paths = list(paths)
    files, problems = find_record_files(paths)
    if not files and not problems and not allow_empty:
        raise UserError(f"no record files (*.json) under {', '.join(str(p) for p in paths)}")
    records: list[RecordFile] = []
    seen: dict[str, Path] = {}
    links = bad_files = len(problems)
    for path in files:
        before = len(problems)
        _read_one(path, problems, records, seen, registry)
        bad_files += len(problems) > before
    if problems:
        raise SchemaError(problems, bad_files, len(files) + links)
    return records


def _tolerance_problems(record: Record) -> list[tuple[str, str]]:
    """Cross-check tolerances read against the attack registry, where torch is installed (validate in the pages'
    environment, which has none, checks the records' own consistency only)."""
    try:
        from benchmark.attacks import tolerance_problems
    except ImportError:
        return []
    return tolerance_problems(record)


def _read_one(path: Path, problems: list[str], records: list[RecordFile], seen: dict[str, Path],
              registry: bool = False) -> None:
    try:
        text = read_regular(path, MAX_RECORD_BYTES).decode("utf-8")
    except UnicodeDecodeError as error:
        problems.append(f"{path}: not UTF-8 text: {error.reason} at byte {error.start}")
        return
    except OSError as error:
        problems.append(f"{path}: unreadable: {error.strerror or error}")
        return
    if not text.strip():
        problems.append(f"{path}: empty file (an interrupted copy?)")
        return
    try:
        data = parse_json(text)
    except json.JSONDecodeError as error:
        problems.append(f"{path}: not valid JSON (truncated?): {error.msg} (line {error.lineno}, "
                        f"column {error.colno})")
        return
    except (ValueError, RecursionError) as error:
        problems.append(f"{path}: not valid JSON: {str(error)[:200]}")
        return
    record, found = read_record(data, str(path))
    problems.extend(found)
    if record is None:
        return
    if registry:
        problems.extend(f"{path}: {field}: {message}" for field, message in _tolerance_problems(record))
    key = record.run_key()
    if key in seen:
        problems.append(f"{path}: duplicate run: same method, method_params, dataset, model, preset, protocol, "
                        f"fraction and seed as {seen[key]}")
        return
    seen[key] = path
    records.append(RecordFile(path, record))
