"""The record check behind `python -m benchmark validate` and the leaderboard: the published JSON Schema of the
record's version (`benchmark/schemas/run-N.schema.json`, checked with the jsonschema library), then the rules a
schema cannot state, in `_rules_*`. Every problem names the file and the field, e.g.
`submissions/x.json: attacks[2].eps: 1.5 is out of range [0, 1]`.

Records are untrusted input: they are parsed with duplicate keys refused and NaN/Infinity refused, every
string is checked for control characters, line and paragraph separators, bidirectional overrides and lone
surrogates, and every integer must survive a float (|n| < 2^53). Across files, two records of the same run
are a duplicate. Symbolic links are not followed. Nothing here imports torch."""

from __future__ import annotations

import base64
import binascii
import functools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from benchmark.errors import UserError
from benchmark.records import SCHEMA, SCHEMAS_READ

SCHEMAS = Path(__file__).resolve().parent / "schemas"
_SCHEMA_PATTERN = re.compile(r"^coreset-bench/run/(\d+)$")
# characters no record string may hold: C0/C1 controls, line/paragraph separators, bidi embeddings/overrides
_FORBIDDEN = re.compile("[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069\ud800-\udfff]")
MAX_SAFE_INTEGER = 2 ** 53 - 1
FGSM_V1_TOLERANCE = 0.001  # version 1: |torchattacks - in-house| FGSM accuracy, 0.1 percentage points


class SchemaError(UserError):
    """Records that fail the check; `problems` holds one message per problem."""

    def __init__(self, problems: list[str], bad_files: int, checked: int):
        self.problems = problems
        super().__init__(f"{len(problems)} problem(s) in {bad_files} of {checked} record file(s)")


@dataclass(frozen=True)
class RecordFile:
    path: Path
    record: dict


def schema_file(version: int) -> Path:
    return SCHEMAS / f"run-{version}.schema.json"


@functools.cache
def _validator(version: int):
    import jsonschema

    schema = json.loads(schema_file(version).read_text())
    return jsonschema.Draft202012Validator(schema)


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


def check_record(record, where: str) -> list[str]:
    """Every problem of one parsed record, each as `where: field: message`."""
    def problem(field: str, message: str) -> str:
        return f"{where}: {field}: {message}" if field else f"{where}: {message}"

    if not isinstance(record, dict):
        return [problem("", f"expected a JSON object (one run record), got {type(record).__name__}")]
    if "schema" not in record:
        return [problem("schema", f"missing (expected {SCHEMA!r}); is this a run record?")]
    schema = record["schema"]
    if schema not in SCHEMAS_READ:
        match = _SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
        current = int(_SCHEMA_PATTERN.match(SCHEMA).group(1))
        if match and int(match.group(1)) > current:
            return [problem("schema", f"{schema!r} was written by a newer version of coreset-bench; upgrade "
                            f"(this version reads {SCHEMA!r})")]
        return [problem("schema", f"unknown schema {_describe(schema)}; expected {SCHEMA!r}")]
    version = int(_SCHEMA_PATTERN.match(schema).group(1))
    problems = [problem(field, message) for field, message in _unsafe_values(record, [])]
    seen = set()
    for error in sorted(_validator(version).iter_errors(record), key=lambda e: [str(p) for p in e.absolute_path]):
        field, message = _message(error)
        if (field, message) not in seen:
            seen.add((field, message))
            problems.append(problem(field, message))
    rules = _rules_v1 if version == 1 else _rules_v2
    try:
        found = _rules_common(record) + rules(record)
    except (TypeError, KeyError, ValueError, AttributeError, IndexError, OverflowError):
        if not problems:
            raise
        found = []  # fields the rules read are malformed, and the schema said so already
    return problems + [problem(field, message) for field, message in found]


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


# --- rules a schema cannot state -----------------------------------------------------------------------------
def _rules_common(record: dict) -> list[tuple[str, str]]:
    problems = []
    for key in ("preset", "dataset", "model"):
        if record["protocol"][key] != record[key]:
            problems.append((f"protocol.{key}", f"{record['protocol'][key]!r} differs from the record's {key} "
                             f"{record[key]!r}"))
    budget, pool_size, fraction = record["budget"], record["pool_size"], record["fraction"]
    if budget > pool_size:
        problems.append(("budget", f"{budget} is larger than pool_size {pool_size}"))
    elif budget > max(1, min(pool_size, round(fraction * pool_size))):
        problems.append(("budget", f"{budget} is more than fraction {fraction} of pool_size {pool_size} "
                         f"({max(1, min(pool_size, round(fraction * pool_size)))})"))
    return problems


def _rules_v1(record: dict) -> list[tuple[str, str]]:
    problems, previous = [], None
    for i, attack in enumerate(record["attacks"]):
        eps = attack["eps"]
        if previous is not None and eps <= previous:
            word = "repeats" if eps == previous else "not sorted ascending"
            problems.append((f"attacks[{i}].eps", f"{word} ({eps:.4g} after {previous:.4g})"))
        previous = eps
        if abs(attack["accuracy"] - attack["inhouse_accuracy"]) > FGSM_V1_TOLERANCE + 1e-12:
            problems.append((f"attacks[{i}].inhouse_accuracy",
                             f"FGSM cross-check failed: torchattacks {attack['accuracy']:.4f} vs in-house "
                             f"{attack['inhouse_accuracy']:.4f} differ by more than {FGSM_V1_TOLERANCE} (0.1 "
                             f"percentage points)"))
    eps_values, grid = [a["eps"] for a in record["attacks"]], record["protocol"]["eps"]
    if not problems and (len(eps_values) != len(grid)
                         or any(not math.isclose(a, b, rel_tol=1e-9) for a, b in zip(eps_values, grid))):
        problems.append(("attacks", "the eps values differ from protocol.eps"))
    return problems


def _mask(text: str, size: int):
    """The count of set bits of a mask holding exactly `size` images, or None when it does not."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(data) != (size + 7) // 8 or (size % 8 and data[-1] & ((1 << (8 - size % 8)) - 1)):
        return None
    return sum(bin(byte).count("1") for byte in data)


def _rules_v2(record: dict) -> list[tuple[str, str]]:
    problems = []
    size = record["evaluation"]["test_size"]

    def mask_matches(field: str, text: str, accuracy: float) -> None:
        count = _mask(text, size)
        if count is None:
            problems.append((field, f"does not hold one bit per test image ({size})"))
        elif abs(count / size - accuracy) > 1e-9:
            problems.append((field, f"has {count} robust image(s) of {size}, but the accuracy says {accuracy:.4f}"))

    mask_matches("evaluation.clean_correct", record["evaluation"]["clean_correct"], record["clean_accuracy"])
    seen = {}
    for i, attack in enumerate(record["attacks"]):
        key = (attack["name"], json.dumps(attack["params"], sort_keys=True), attack["threat"], attack["eps"])
        if key in seen:
            problems.append((f"attacks[{i}]", f"repeats attacks[{seen[key]}] (same attack, parameters and eps)"))
        seen[key] = i
        mask_matches(f"attacks[{i}].robust", attack["robust"], attack["accuracy"])
        if attack["accuracy"] > record["clean_accuracy"] + 1e-12:
            problems.append((f"attacks[{i}].accuracy", f"{attack['accuracy']:.4f} is above the clean accuracy "
                             f"{record['clean_accuracy']:.4f} (robust images must be correct when clean)"))
        check = attack.get("cross_check")
        if check:
            gap = abs(check["accuracy"] - check["reference_accuracy"]) * check["images"]
            allowed = max(check["tolerance_points"] / 100 * check["images"], check["tolerance_images"])
            if gap > allowed + 1e-9:
                problems.append((f"attacks[{i}].cross_check", f"in-house {check['accuracy']:.4f} and "
                                 f"{check['reference']} {check['reference_accuracy']:.4f} differ by {gap:g} image(s), "
                                 f"more than the tolerance ({allowed:g})"))
    accuracies = {}
    for attack in record["attacks"]:
        accuracies.setdefault((attack["threat"], attack["eps"]), []).append(attack["accuracy"])
    covered = set()
    for i, worst in enumerate(record["worst_case"]):
        key = (worst["threat"], worst["eps"])
        covered.add(key)
        mask_matches(f"worst_case[{i}].robust", worst["robust"], worst["accuracy"])
        if key not in accuracies:
            problems.append((f"worst_case[{i}]", f"no attack ran at {worst['threat']} eps {worst['eps']:.4g}"))
        elif worst["accuracy"] > min(accuracies[key]) + 1e-12:
            problems.append((f"worst_case[{i}].accuracy", f"{worst['accuracy']:.4f} is above an attack's accuracy "
                             f"at that eps ({min(accuracies[key]):.4f}): the worst case is over every attack"))
    for key in sorted(set(accuracies) - covered):
        problems.append(("worst_case", f"has no entry for {key[0]} eps {key[1]:.4g}, where attacks ran"))
    for j, spec in enumerate(record["protocol"]["attacks"]):
        for eps in spec["eps"] or record["protocol"]["eps"]:
            if not any(a["name"] == spec["name"] and math.isclose(a["eps"], eps, rel_tol=1e-9)
                       for a in record["attacks"]):
                problems.append((f"protocol.attacks[{j}]", f"{spec['name']} at eps {eps:.4g} is in the protocol but "
                                 f"has no result in attacks"))
    return problems


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
        else:
            raise UserError(f"{path}: no such file or directory")
    return found, problems


def duplicate_key(record: dict) -> str:
    return json.dumps([record.get(key) for key in ("method", "method_params", "dataset", "model", "preset",
                                                   "protocol", "fraction", "seed")], sort_keys=True)


def load_records(paths: Iterable[Path], *, allow_empty: bool = False) -> list[RecordFile]:
    """Reads and checks every record under `paths`; raises `SchemaError` listing every problem of every
    file (unparseable files, schema violations, duplicate runs, links) when there is any. No record at all is
    a `UserError` unless `allow_empty`."""
    paths = list(paths)
    files, problems = find_record_files(paths)
    if not files and not problems and not allow_empty:
        raise UserError(f"no record files (*.json) under {', '.join(str(p) for p in paths)}")
    records: list[RecordFile] = []
    seen: dict[str, Path] = {}
    links = bad_files = len(problems)
    for path in files:
        before = len(problems)
        _read_one(path, problems, records, seen)
        bad_files += len(problems) > before
    if problems:
        raise SchemaError(problems, bad_files, len(files) + links)
    return records


def parse_record(text: str):
    """json.loads, refusing NaN/Infinity and duplicate keys (which would let two readers see two records)."""
    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"duplicate key(s) {', '.join(map(repr, repeated))} in one object")
        return dict(pairs)

    return json.loads(text, parse_constant=_reject_constant, object_pairs_hook=no_duplicates)


def _read_one(path: Path, problems: list[str], records: list[RecordFile], seen: dict[str, Path]) -> None:
    try:
        text = path.read_bytes().decode("utf-8")
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
        record = parse_record(text)
    except json.JSONDecodeError as error:
        problems.append(f"{path}: not valid JSON (truncated?): {error.msg} (line {error.lineno}, "
                        f"column {error.colno})")
        return
    except (ValueError, RecursionError) as error:
        problems.append(f"{path}: not valid JSON: {str(error)[:200]}")
        return
    found = check_record(record, str(path))
    problems.extend(found)
    if found:
        return
    key = duplicate_key(record)
    if key in seen:
        problems.append(f"{path}: duplicate run: same method, method_params, dataset, model, preset, protocol, "
                        f"fraction and seed as {seen[key]}")
        return
    seen[key] = path
    records.append(RecordFile(path, record))


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")
