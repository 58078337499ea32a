"""The run record: its one typed definition. A run writes one record (JSON, `Record.to_json`); `validate`, the
leaderboard, `export` and `attack` read it back (`Record.from_json`). This is the only module that knows the
record's key names: everything else reads typed attributes. Torch-free (numpy and jsonschema only), so the pages
render without torch.

- Versions: `coreset-bench/run/6` is written (version 5 and, in the environment, how many runs shared the device:
  a run's seconds are wall-clock while it shared it); 5 (each test image's L-infinity radius, cross-checks at
  chosen eps, clean accuracy on the whole test split), 4 (the training method: adversarial training, its
  per-epoch guard), 3 (provenance, failed attacks, closed objects), 2 and 1 (FGSM only, no masks, no weights) are
  still read, into the same classes, their missing parts `None` or empty. The published JSON Schemas are
  `benchmark/schemas/run-N.schema.json`; `to_json` output is checked against them before it is written.
- Parts are frozen dataclasses whose fields are the JSON keys, in the order they are written; a field that is
  `None` is absent from the JSON (older records lack some), so a record read and written again is the same JSON.
  Keys a part does not define are refused: a record is what this module says it is, nothing more.
- Units: accuracies are fractions of the test set; eps is in [0, 1] pixel units everywhere in a record (8/255 is
  0.0313...), printed and parsed as `k/255` for L-infinity by `eps_text` and `parse_eps`; seconds are seconds.
- Per-image results are bit masks (`pack_mask`/`unpack_mask`): one bit per test image, first image in the
  highest bit of the first byte, base64. Radii (`pack_radii`/`unpack_radii`) are one little-endian uint16 per
  test image, base64.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import functools
import json
import math
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_V1 = "coreset-bench/run/1"
SCHEMA_V2 = "coreset-bench/run/2"
SCHEMA_V3 = "coreset-bench/run/3"
SCHEMA_V4 = "coreset-bench/run/4"
SCHEMA_V5 = "coreset-bench/run/5"
SCHEMA = "coreset-bench/run/6"
SCHEMAS_READ = (SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA)
SCHEMAS = Path(__file__).resolve().parent / "schemas"
_SCHEMA_PATTERN = re.compile(r"^coreset-bench/run/(\d+)$")
FGSM_V1_TOLERANCE = 0.001  # version 1: |torchattacks - in-house| FGSM accuracy, 0.1 percentage points
THREATS = ("Linf", "L2")


class RecordError(ValueError):
    """A record that cannot be read as one: `problems` holds (field, message) pairs."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{where}: {message}" if where else message for where, message in problems))


# --- the helpers every reader needs ------------------------------------------------------------------------
def budget_for(pool_size: int, fraction: float) -> int:
    """Images a coreset of `fraction` of a pool of `pool_size` holds: rounded, at least 1, at most the pool."""
    return max(1, min(pool_size, round(fraction * pool_size)))


def eps_text(eps: float, threat: str = "Linf") -> str:
    """An eps as people write it: `8/255` for L-infinity (four significant digits), the norm's value for L2."""
    return f"{eps * 255:.4g}/255" if threat == "Linf" else f"{eps:.4g} (L2)"


def parse_eps(text: str, threat: str = "Linf") -> float:
    """An eps from the command line, in [0, 1] pixel units. L-infinity: `8/255`, or a plain number of 1/255 units
    (`8`; `0` is 0); a plain number between 0 and 1 is refused, since `0.031` may mean 0.031/255 or 8/255. L2: the
    norm of the perturbation of [0, 1] pixels (`0.5`), or `k/255`."""
    text = text.strip()
    numerator, slash, denominator = text.partition("/")
    try:
        value = float(numerator)
        scale = float(denominator) if slash else None
    except ValueError:
        raise ValueError(f"eps {text!r} is not a number: write it as 8/255 or 8 (1/255 units)") from None
    if not math.isfinite(value) or value < 0 or (scale is not None and not (math.isfinite(scale) and scale > 0)):
        raise ValueError(f"eps {text!r} must be a finite, non-negative number such as 8/255")
    if scale is not None:
        return value / scale
    if threat == "L2":
        return value
    if 0 < value < 1:
        raise ValueError(f"eps {text!r} is ambiguous: plain L-infinity eps are in 1/255 units; write "
                         f"{value * 255:.4g}/255 for {value:g} in [0, 1] pixels, or {value:g}/255")
    return value / 255


def pack_mask(mask) -> str:
    """A boolean mask as base64 of its packed bits (first image in the highest bit of the first byte)."""
    return base64.b64encode(np.packbits(np.asarray(mask, dtype=bool)).tobytes()).decode("ascii")


def unpack_mask(text: str, size: int) -> np.ndarray:
    """The boolean mask of `size` images that `pack_mask` wrote; ValueError when `text` does not hold exactly
    that many (wrong length, or bits set past the end)."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("is not base64 text") from None
    if len(data) != (size + 7) // 8:
        raise ValueError(f"does not hold one bit per test image ({size})")
    bits = np.unpackbits(np.frombuffer(data, dtype=np.uint8))
    if bits[size:].any():
        raise ValueError(f"does not hold one bit per test image ({size})")
    return bits[:size].astype(bool)


# A radius is stored in units of 1/65535 (255 * 257, so every k/255 is a whole number of units), rounded up:
# 0 is an image wrong when clean, RADIUS_NONE one the suite never fooled.
RADIUS_UNITS = 65535
RADIUS_NONE = 65535


def pack_radii(radii) -> str:
    """Each test image's radius in [0, 1] pixel units (inf: never fooled) as base64 of uint16 units."""
    return base64.b64encode(radius_units(radii).astype("<u2").tobytes()).decode("ascii")


def unpack_radii(text: str, size: int) -> np.ndarray:
    """The radii (float64 pixel units, inf where none was found) that `pack_radii` wrote for `size` images."""
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, ValueError, UnicodeEncodeError):
        raise ValueError("is not base64 text") from None
    if len(data) != 2 * size:
        raise ValueError(f"does not hold one radius per test image ({size})")
    units = np.frombuffer(data, dtype="<u2").astype(np.float64)
    return np.where(units == RADIUS_NONE, np.inf, units / RADIUS_UNITS)


def radius_units(radii) -> np.ndarray:
    """Radii in stored units, rounded up as `pack_radii` stores them (inf: RADIUS_NONE)."""
    radii = np.asarray(radii, dtype=np.float64)
    return np.where(np.isinf(radii), RADIUS_NONE,
                    np.minimum(np.ceil(np.round(radii * RADIUS_UNITS, 6)), RADIUS_NONE - 1)).astype(np.int64)


def robust_beyond(radii: np.ndarray, eps: float) -> np.ndarray:
    """The images whose radius is larger than `eps`, compared in the stored units (an image fooled at eps is
    stored as eps rounded up, so it is never counted beyond it)."""
    return radius_units(radii) > radius_units([eps])[0]


# --- the generic part: fields are keys ---------------------------------------------------------------------
@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(kind, value, where: str):
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)][0]
        return None if value is None else _decode(inner, value, where)
    if isinstance(kind, type) and issubclass(kind, Part):
        if not isinstance(value, dict):
            raise RecordError([(where, f"expected an object, got {type(value).__name__}")])
        return kind.from_json(value, where)
    if origin is tuple:
        if not isinstance(value, list):
            raise RecordError([(where, f"expected a list, got {type(value).__name__}")])
        return tuple(_decode(args[0], item, f"{where}[{i}]") for i, item in enumerate(value))
    if origin is dict or kind is dict:
        if not isinstance(value, dict):
            raise RecordError([(where, f"expected an object, got {type(value).__name__}")])
        return json.loads(json.dumps(value))  # a copy: a record never shares state with what it was read from
    return value


def _encode(value):
    if isinstance(value, Part):
        return value.to_json()
    if isinstance(value, tuple):
        return [_encode(item) for item in value]
    if isinstance(value, dict):
        return json.loads(json.dumps(value))
    return value


@dataclass(frozen=True)
class Part:
    """Base of every part of a record. Its fields are the JSON keys in the order they are written; a field
    whose value is None is left out of the JSON (it is absent from the records that lack it)."""

    @classmethod
    def from_json(cls, data: dict, where: str = ""):
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = [key for key in data if key not in names]
        if unknown:
            raise RecordError([(f"{where}.{key}" if where else key, "is not a field of this record version")
                               for key in unknown])
        missing = [f.name for f in dataclasses.fields(cls) if f.name not in data
                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if missing:
            raise RecordError([(f"{where}.{key}" if where else key, "missing") for key in missing])
        hints = _hints(cls)
        return cls(**{key: _decode(hints[key], value, f"{where}.{key}" if where else key)
                      for key, value in data.items()})

    def to_json(self) -> dict:
        return {f.name: _encode(getattr(self, f.name)) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


# --- the parts ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AttackSpec(Part):
    """One attack of a protocol's suite: its registered name, its parameters, the eps values it runs at (empty:
    the protocol's eps grid)."""

    name: str
    params: dict = field(default_factory=dict)
    eps: tuple[float, ...] = ()


@dataclass(frozen=True)
class TrainingSpec(Part):
    """A protocol's training method: its registered name (`benchmark.training`) and its parameters."""

    name: str
    params: dict = field(default_factory=dict)

    @property
    def adversarial(self) -> bool:
        return self.name != "standard"


@dataclass(frozen=True)
class ProtocolSettings(Part):
    """Every setting that makes two runs comparable (`benchmark.protocol.Protocol` without the grid of fractions
    and seeds). Settings added after version 0.1 are None in the records written before them."""

    dataset: str
    preset: str
    model: str
    epochs: int
    lrs: tuple[float, ...]
    eps: tuple[float, ...]
    attacks: tuple[AttackSpec, ...] | None = None
    proxy_epochs: int | None = None
    proxy_lr: float | None = None
    batch_size: int | None = None
    momentum: float | None = None
    nesterov: bool | None = None
    weight_decay: float | None = None
    precise_bn: bool | None = None
    min_steps: int | None = None
    train_per_class: int | None = None
    test_per_class: int | None = None
    balance: bool | None = None
    cross_check_images: int | None = None
    headline_eps: float | None = None
    method_defaults: dict | None = None
    cascade: bool | None = None  # attacks after the first run on the survivors (absent: every attack on all)
    # version 5
    cross_check_eps: tuple[float, ...] | None = None  # the eps cross-checks run at (absent: every eps)
    full_test_clean: bool | None = None  # clean accuracy on the whole test split too (absent: the test set only)
    # version 4; absent for standard training, so the keys (file names) of standard runs stay as they were
    training: TrainingSpec | None = None
    adversarial_proxy: bool | None = None  # the selection proxy trained with `training` too
    monitor_images: int | None = None  # held-out validation images the per-epoch guard attacks

    def suite(self) -> tuple[AttackSpec, ...]:
        """The attacks, each with its eps values (the grid unless it has its own)."""
        return tuple(spec if spec.eps else dataclasses.replace(spec, eps=self.eps) for spec in self.attacks or ())

    def comparable(self) -> dict:
        """The settings without the dataset's name: what a run's file name hashes (`Protocol.key`)."""
        return {key: value for key, value in self.to_json().items() if key != "dataset"}


@dataclass(frozen=True)
class Selection(Part):
    indices_sha256: str
    seconds: float  # the selector's own time, given the proxy's outputs
    proxy_training_seconds: float | None = None
    weighted: bool = False
    artifact: str = ""  # the .selection.npz beside the record


@dataclass(frozen=True)
class LrTrial(Part):
    lr: float
    validation_accuracy: float
    validation_robust_accuracy: float | None = None  # version 4, adversarial training: PGD-10 on the monitor images


@dataclass(frozen=True)
class EpochCheck(Part):
    """Adversarial training's guard after one epoch: accuracies on the held-out monitor images, clean and under
    FGSM and PGD-10 at the training eps (`benchmark.overfitting`)."""

    epoch: int  # 1-based
    clean: float
    fgsm: float
    pgd: float


@dataclass(frozen=True)
class Training(Part):
    epochs: int
    lr: float  # the lr of the grid with the best validation score (`selected_by`): the model evaluated
    lr_grid: tuple[LrTrial, ...]
    optimizer: str
    batch_size: int
    steps: int | None = None
    seconds: float = 0.0
    validation_accuracy: float = 0.0
    # version 4: the training method with every parameter, its attack's step size, what chose the lr, the guard
    method: TrainingSpec | None = None
    step_size: float | None = None
    selected_by: str | None = None
    monitor: tuple[EpochCheck, ...] | None = None


@dataclass(frozen=True)
class ModelWeights(Part):
    artifact: str
    sha256: str
    format: str
    image_size: int
    num_classes: int


@dataclass(frozen=True)
class EvaluationSeconds(Part):
    clean: float | None = None
    checks: float | None = None
    attacks: dict | None = None  # attack name -> seconds
    cross_checks: dict | None = None
    total: float | None = None


@dataclass(frozen=True)
class FullTest(Part):
    """Clean accuracy on the whole test split, of which the attacked test set is a seeded subset (version 5)."""

    size: int
    correct_images: int
    sha256: str
    seconds: float | None = None

    @property
    def accuracy(self) -> float:
        return self.correct_images / self.size


@dataclass(frozen=True)
class Evaluation(Part):
    test_size: int
    clean_correct: str  # mask: the test images classified correctly
    batch_size: int
    cross_check_images: int
    seconds: EvaluationSeconds | None = None
    test_sha256: str = ""
    # version 5: per test image, the smallest L-infinity eps at which an attack of the suite fooled the model
    # (`pack_radii`; 0 when wrong clean): the worst case at eps is exactly the images whose radius is above eps
    radii: str | None = None
    full_test: FullTest | None = None

    def clean_mask(self) -> np.ndarray:
        return unpack_mask(self.clean_correct, self.test_size)

    def radii_array(self) -> np.ndarray | None:
        return None if self.radii is None else unpack_radii(self.radii, self.test_size)


@dataclass(frozen=True)
class CrossCheck(Part):
    """The attack without its early stop and its independent reference, on the same images from one start."""

    reference: str
    images: int
    accuracy: float
    reference_accuracy: float
    disagreements: int
    tolerance_points: float
    tolerance_images: int

    @property
    def allowed_images(self) -> float:
        return max(self.tolerance_points / 100 * self.images, self.tolerance_images)

    @property
    def gap_images(self) -> float:
        return abs(self.accuracy - self.reference_accuracy) * self.images


@dataclass(frozen=True)
class AttackResult(Part):
    """One attack at one eps. Version 2: `robust` is the mask of test images right clean and under the attack.
    Version 1 (FGSM only): torchattacks' accuracy over all test images and the in-house one beside it."""

    name: str
    threat: str | None = None  # None in version 1: L-infinity
    eps: float = 0.0
    params: dict | None = None
    accuracy: float = 0.0
    robust: str | None = None
    cross_check: CrossCheck | None = None
    # True: run in a cascade, on the images every earlier attack of the suite at this eps left robust; its mask
    # and accuracy are then the running worst case, not this attack's own
    cascaded: bool | None = None
    inhouse_accuracy: float | None = None  # version 1
    max_abs_diff: float | None = None  # version 1

    @property
    def threat_model(self) -> str:
        return self.threat or "Linf"

    @property
    def identity(self) -> tuple[str, str, str, float]:
        """What makes two results the same measurement: the attack, all its parameters, threat and eps."""
        return self.name, json.dumps(self.params or {}, sort_keys=True), self.threat_model, self.eps


@dataclass(frozen=True)
class AttackFailure(Part):
    """An attack of the suite that did not produce results (it raised, returned what the harness refuses, or
    disagreed with its reference): the rest of the suite ran, and `attack` can run it again later."""

    name: str
    params: dict
    eps: tuple[float, ...]
    reason: str


@dataclass(frozen=True)
class WorstCase(Part):
    """Per threat and eps: an image is robust only if right clean and robust to every attack named."""

    threat: str
    eps: float
    accuracy: float
    attacks: tuple[str, ...]
    robust: str


@dataclass(frozen=True)
class Check(Part):
    check: str
    attack: str
    passed: bool
    detail: str


@dataclass(frozen=True)
class Flag(Part):
    code: str
    detail: str


@dataclass(frozen=True)
class Gallery(Part):
    artifact: str
    attack: str
    eps: tuple[float, ...]


@dataclass(frozen=True)
class Reevaluation(Part):
    """A line per `attack` call that added results to the record."""

    attack: str
    params: dict | None = None
    eps: tuple[float, ...] = ()
    package: str = ""
    created: str = ""


@dataclass(frozen=True)
class Environment(Part):
    package: str
    python: str | None = None
    torch: str | None = None
    torchvision: str | None = None
    timm: str | None = None
    torchattacks: str | None = None
    device: str | None = None
    device_name: str | None = None
    threads: int | None = None
    peak_memory_mb: dict | None = None
    cuda: str | None = None  # the CUDA torch was built with; None on a CPU
    cudnn: str | None = None
    cpu: str | None = None  # model name and family, e.g. "AMD EPYC 9654 (family 25)"
    cpu_capability: str | None = None  # torch.backends.cpu.get_cpu_capability(), e.g. "AVX512"
    git_commit: str | None = None  # of the checkout the run was made with ("unknown" outside one)
    git_dirty: bool | None = None
    compile: str | None = None  # the torch.compile mode of the training steps on a GPU (None: eager)
    # runs made at once on this device by the job that made this one (1: alone; None: not stated, before version
    # 6 or outside a job); the record's seconds are wall-clock, taken while sharing the device with the others
    runs_per_device: int | None = None


@dataclass(frozen=True, kw_only=True)
class Record(Part):
    schema: str
    method: str
    method_params: dict
    paper: str
    paper_url: str | None = None  # absent from some version-1 records
    dataset: str
    model: str
    preset: str
    protocol: ProtocolSettings
    fraction: float
    seed: int
    budget: int
    pool_size: int
    selection: Selection
    training: Training
    model_weights: ModelWeights | None = None
    clean_accuracy: float = 0.0
    evaluation: Evaluation | None = None
    attacks: tuple[AttackResult, ...] = ()
    worst_case: tuple[WorstCase, ...] | None = None
    checks: tuple[Check, ...] | None = None
    flags: tuple[Flag, ...] | None = None
    environment: Environment | None = None
    created: str = ""
    gallery: Gallery | None = None
    reevaluations: tuple[Reevaluation, ...] | None = None
    attack_failures: tuple[AttackFailure, ...] | None = None

    # --- reading ---
    @classmethod
    def from_json(cls, data: dict, where: str = "", *, schema_checked: bool = False) -> Record:
        """The record `data` holds, checked against its version's JSON Schema first (unless the caller has just
        done so: `schema_checked`); RecordError otherwise."""
        problems = [] if schema_checked else schema_problems(data)
        if problems:
            raise RecordError(problems)
        return super().from_json(data, where)

    @classmethod
    def parse(cls, text: str) -> Record:
        return cls.from_json(parse_json(text))

    def to_json(self) -> dict:
        data = super().to_json()
        problems = schema_problems(data)
        if problems:  # a bug of the writer, never of the user: refuse to write what `validate` would refuse
            raise RecordError(problems)
        return data

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False) + "\n"

    @property
    def version(self) -> int:
        return int(_SCHEMA_PATTERN.match(self.schema).group(1))

    # --- what readers ask ---
    @property
    def flag_codes(self) -> tuple[str, ...]:
        return tuple(flag.code for flag in self.flags or ())

    @property
    def test_size(self) -> int | None:
        return self.evaluation.test_size if self.evaluation else None

    def clean_mask(self) -> np.ndarray:
        return self.evaluation.clean_mask()

    @property
    def board_clean_accuracy(self) -> float:
        """The clean accuracy the board compares: on the whole test split where the run measured it (version 5),
        else on its test set."""
        full = self._full_test
        return full.accuracy if full is not None else self.clean_accuracy

    @property
    def board_clean_test_size(self) -> int | None:
        """The images `board_clean_accuracy` is over."""
        full = self._full_test
        return full.size if full is not None else self.test_size

    @property
    def _full_test(self) -> FullTest | None:
        return self.evaluation.full_test if self.evaluation else None

    def robust_mask(self, entry: AttackResult | WorstCase) -> np.ndarray:
        return unpack_mask(entry.robust, self.evaluation.test_size)

    def worst(self) -> tuple[WorstCase, ...]:
        """The worst case per threat and eps; for version 1, FGSM's results stand in for it."""
        if self.version == 1:
            return tuple(WorstCase("Linf", a.eps, a.accuracy, ("fgsm",), "") for a in self.attacks)
        return self.worst_case or ()

    def worst_linf(self) -> dict[float, float]:
        """eps -> worst-case accuracy over the L-infinity attacks."""
        return {w.eps: w.accuracy for w in self.worst() if w.threat == "Linf"}

    def headline_eps(self, default: float = 2 / 255) -> float:
        """The eps the board ranks by: the protocol's, or (version 1) the grid's eps nearest `default`."""
        if self.protocol.headline_eps is not None:
            return float(self.protocol.headline_eps)
        return min((float(e) for e in self.protocol.eps), key=lambda e: abs(e - default))

    def run_key(self) -> str:
        """Two records with the same key record the same run."""
        return json.dumps([self.method, self.method_params, self.dataset, self.model, self.preset,
                           self.protocol.to_json(), self.fraction, self.seed], sort_keys=True)

    def artifact(self, path: Path, kind: str) -> Path | None:
        """The file beside the record at `path` that holds its selection, model weights or gallery."""
        part = {"selection": self.selection, "model": self.model_weights, "gallery": self.gallery}[kind]
        return None if part is None else Path(path).parent / part.artifact

    def problems(self) -> list[tuple[str, str]]:
        """What the JSON Schema cannot say: the record agrees with itself (see `consistency_problems`)."""
        return consistency_problems(self)


# --- the JSON Schema and the rules beside it ---------------------------------------------------------------
def schema_file(version: int) -> Path:
    return SCHEMAS / f"run-{version}.schema.json"


@functools.cache
def validator(version: int):
    import jsonschema

    return jsonschema.Draft202012Validator(json.loads(schema_file(version).read_text()))


def schema_version(data) -> tuple[int | None, str]:
    """(version, "") for a record of a version this package reads, else (None, why not)."""
    if not isinstance(data, dict):
        return None, f"expected a JSON object (one run record), got {type(data).__name__}"
    if "schema" not in data:
        return None, f"schema: missing (expected {SCHEMA!r}); is this a run record?"
    schema = data["schema"]
    if schema in SCHEMAS_READ:
        return int(_SCHEMA_PATTERN.match(schema).group(1)), ""
    match = _SCHEMA_PATTERN.match(schema) if isinstance(schema, str) else None
    current = int(_SCHEMA_PATTERN.match(SCHEMA).group(1))
    if match and int(match.group(1)) > current:
        return None, (f"schema: {schema!r} was written by a newer version of coreset-bench; upgrade (this version "
                      f"reads {SCHEMA!r})")
    text = json.dumps(schema, ensure_ascii=True)
    return None, f"schema: unknown schema {text if len(text) <= 40 else text[:37] + '...'}; expected {SCHEMA!r}"


def schema_errors(data) -> list:
    """The jsonschema errors of `data` against its version's schema (empty when it reads as a record)."""
    version, _ = schema_version(data)
    return [] if version is None else sorted(validator(version).iter_errors(data),
                                             key=lambda e: [str(p) for p in e.absolute_path])


def schema_problems(data) -> list[tuple[str, str]]:
    version, why = schema_version(data)
    if version is None:
        where, _, message = why.partition(": ") if why.startswith("schema: ") else ("", "", why)
        return [(where, message)]
    return [(".".join(map(str, e.absolute_path)), e.message.splitlines()[0][:200]) for e in schema_errors(data)]


def consistency_problems(record: Record) -> list[tuple[str, str]]:
    """Every way a record disagrees with itself: the protocol against the record's own fields, the budget
    against the fraction, and (version 2) every mask against its accuracy and against the others: an image is
    robust to an attack only if right when clean, and the worst case is, image by image, the AND of the attacks
    it names, which must be every attack that ran at its threat and eps."""
    problems = []
    for name in ("preset", "dataset", "model"):
        if getattr(record.protocol, name) != getattr(record, name):
            problems.append((f"protocol.{name}", f"{getattr(record.protocol, name)!r} differs from the record's "
                             f"{name} {getattr(record, name)!r}"))
    budget, pool_size, fraction = record.budget, record.pool_size, record.fraction
    if budget > pool_size:
        problems.append(("budget", f"{budget} is larger than pool_size {pool_size}"))
    elif budget > budget_for(pool_size, fraction):
        problems.append(("budget", f"{budget} is more than fraction {fraction} of pool_size {pool_size} "
                         f"({budget_for(pool_size, fraction)})"))
    if record.training.method != record.protocol.training:  # both absent under standard training
        problems.append(("training.method", f"{_spec_text(record.training.method)} differs from the protocol's "
                         f"training {_spec_text(record.protocol.training)}"))
    codes = record.flag_codes
    if record.training.monitor and "catastrophic-overfitting" not in codes:
        from_monitor = overfit_epoch(record.training.monitor)
        if from_monitor is not None:
            problems.append(("flags", f"the guard's epoch {from_monitor[0]} shows catastrophic overfitting, but the "
                             f"record has no catastrophic-overfitting flag"))
    return problems + (_consistency_v1(record) if record.version == 1 else _consistency_v2(record))


def _spec_text(spec: TrainingSpec | None) -> str:
    return "standard" if spec is None else f"{spec.name} {json.dumps(spec.params, sort_keys=True)}"


# the catastrophic-overfitting rule (`benchmark.overfitting` says why): PGD accuracy falls more than
# OVERFIT_DROP below the best earlier epoch's while FGSM accuracy stays within OVERFIT_HOLD of that epoch's, or
# FGSM accuracy exceeds PGD accuracy by more than OVERFIT_GAP (the model defeats one-step attacks only)
OVERFIT_DROP = 0.2
OVERFIT_HOLD = 0.05
OVERFIT_GAP = 0.25


def overfit_epoch(monitor: tuple[EpochCheck, ...]) -> tuple[int, str] | None:
    """(the first epoch the rule fires at, what it saw) or None."""
    best = None
    for entry in monitor:
        if best is not None and entry.pgd < best.pgd - OVERFIT_DROP and entry.fgsm >= best.fgsm - OVERFIT_HOLD:
            return entry.epoch, (f"PGD accuracy on the held-out monitor images fell to {100 * entry.pgd:.1f} % from "
                                 f"{100 * best.pgd:.1f} % (epoch {best.epoch}) while FGSM accuracy stayed at "
                                 f"{100 * entry.fgsm:.1f} % ({100 * best.fgsm:.1f} % then)")
        if entry.fgsm - entry.pgd > OVERFIT_GAP:
            return entry.epoch, (f"FGSM accuracy on the held-out monitor images is {100 * entry.fgsm:.1f} %, PGD "
                                 f"accuracy {100 * entry.pgd:.1f} %: the model defeats one-step attacks only")
        if best is None or entry.pgd > best.pgd:
            best = entry
    return None


def _consistency_v1(record: Record) -> list[tuple[str, str]]:
    problems, previous = [], None
    for i, attack in enumerate(record.attacks):
        if previous is not None and attack.eps <= previous:
            word = "repeats" if attack.eps == previous else "not sorted ascending"
            problems.append((f"attacks[{i}].eps", f"{word} ({attack.eps:.4g} after {previous:.4g})"))
        previous = attack.eps
        if abs(attack.accuracy - attack.inhouse_accuracy) > FGSM_V1_TOLERANCE + 1e-12:
            problems.append((f"attacks[{i}].inhouse_accuracy",
                             f"FGSM cross-check failed: torchattacks {attack.accuracy:.4f} vs in-house "
                             f"{attack.inhouse_accuracy:.4f} differ by more than {FGSM_V1_TOLERANCE} (0.1 "
                             f"percentage points)"))
    eps_values, grid = [a.eps for a in record.attacks], record.protocol.eps
    if not problems and (len(eps_values) != len(grid)
                         or any(not math.isclose(a, b, rel_tol=1e-9) for a, b in zip(eps_values, grid))):
        problems.append(("attacks", "the eps values differ from protocol.eps"))
    return problems


def _consistency_v2(record: Record) -> list[tuple[str, str]]:
    problems = []
    size = record.evaluation.test_size

    def mask(where: str, text: str, accuracy: float) -> np.ndarray | None:
        try:
            bits = unpack_mask(text, size)
        except ValueError as error:
            problems.append((where, str(error)))
            return None
        if abs(bits.sum() / size - accuracy) > 1e-9:
            problems.append((where, f"has {int(bits.sum())} robust image(s) of {size}, but the accuracy says "
                             f"{accuracy:.4f}"))
        return bits

    clean = mask("evaluation.clean_correct", record.evaluation.clean_correct, record.clean_accuracy)
    radii = None
    if record.evaluation.radii is not None:
        try:
            radii = record.evaluation.radii_array()
        except ValueError as error:
            problems.append(("evaluation.radii", str(error)))
    if radii is not None and clean is not None and (radii[~clean] != 0).any():
        problems.append(("evaluation.radii", f"{int((radii[~clean] != 0).sum())} image(s) wrong when clean have a "
                         f"radius above 0"))
    full = record.evaluation.full_test
    if full is not None and not 0 <= full.correct_images <= full.size:
        problems.append(("evaluation.full_test.correct_images", f"{full.correct_images} is not between 0 and "
                         f"{full.size}"))
    seen, masks = {}, {}
    for i, attack in enumerate(record.attacks):
        if attack.identity in seen:
            problems.append((f"attacks[{i}]", f"repeats attacks[{seen[attack.identity]}] (same attack, parameters "
                             f"and eps)"))
        seen[attack.identity] = i
        bits = mask(f"attacks[{i}].robust", attack.robust, attack.accuracy)
        if attack.accuracy > record.clean_accuracy + 1e-12:
            problems.append((f"attacks[{i}].accuracy", f"{attack.accuracy:.4f} is above the clean accuracy "
                             f"{record.clean_accuracy:.4f} (robust images must be correct when clean)"))
        elif bits is not None and clean is not None and (bits & ~clean).any():
            problems.append((f"attacks[{i}].robust", f"{int((bits & ~clean).sum())} image(s) robust but wrong when "
                             f"clean (robust images must be correct when clean)"))
        if bits is not None:
            masks.setdefault((attack.threat_model, attack.eps), []).append((attack.name, bits))
        check = attack.cross_check
        if check and check.gap_images > check.allowed_images + 1e-9:
            problems.append((f"attacks[{i}].cross_check", f"in-house {check.accuracy:.4f} and {check.reference} "
                             f"{check.reference_accuracy:.4f} differ by {check.gap_images:g} image(s), more than the "
                             f"tolerance ({check.allowed_images:g})"))
    accuracies = {}
    for attack in record.attacks:
        accuracies.setdefault((attack.threat_model, attack.eps), []).append(attack.accuracy)
    covered = set()
    for i, worst in enumerate(record.worst_case or ()):
        key = (worst.threat, worst.eps)
        covered.add(key)
        bits = mask(f"worst_case[{i}].robust", worst.robust, worst.accuracy)
        if key not in accuracies:
            problems.append((f"worst_case[{i}]", f"no attack ran at {worst.threat} eps {worst.eps:.4g}"))
            continue
        if worst.accuracy > min(accuracies[key]) + 1e-12:
            problems.append((f"worst_case[{i}].accuracy", f"{worst.accuracy:.4f} is above an attack's accuracy "
                             f"at that eps ({min(accuracies[key]):.4f}): the worst case is over every attack"))
        members = masks.get(key, [])
        if sorted(worst.attacks) != sorted(name for name, _ in members) and len(members) == len(accuracies[key]):
            problems.append((f"worst_case[{i}].attacks", f"names {', '.join(worst.attacks) or 'none'}, but the "
                             f"attacks at that eps are {', '.join(name for name, _ in members)}"))
        elif bits is not None and clean is not None and len(members) == len(accuracies[key]):
            expected = clean.copy()
            for _, member in members:
                expected &= member
            beyond = robust_beyond(radii, worst.eps) if radii is not None and worst.threat == "Linf" else None
            if beyond is not None:  # an image fooled at a smaller eps is fooled at this one
                expected &= beyond
            if not np.array_equal(bits, expected):
                problems.append((f"worst_case[{i}].robust", f"differs from the images robust to every attack at "
                                 f"that eps in {int((bits != expected).sum())} image(s)"))
            elif beyond is not None and not np.array_equal(bits, beyond):
                problems.append(("evaluation.radii", f"{int((bits != beyond).sum())} image(s) fooled at eps "
                                 f"{worst.eps:.4g} have a radius above it (a fooled image's radius is at most the "
                                 f"eps that fooled it)"))
    for key in sorted(set(accuracies) - covered):
        problems.append(("worst_case", f"has no entry for {key[0]} eps {key[1]:.4g}, where attacks ran"))
    failed = {failure.name for failure in record.attack_failures or ()}
    for j, spec in enumerate(record.protocol.attacks or ()):
        for eps in spec.eps or record.protocol.eps:
            if spec.name not in failed and not any(a.name == spec.name and math.isclose(a.eps, eps, rel_tol=1e-9)
                                                   for a in record.attacks):
                problems.append((f"protocol.attacks[{j}]", f"{spec.name} at eps {eps:.4g} is in the protocol but "
                                 f"has no result in attacks (nor a failure in attack_failures)"))
    return problems


# --- JSON text ---------------------------------------------------------------------------------------------
def parse_json(text: str):
    """json.loads, refusing NaN/Infinity and duplicate keys (which would let two readers see two records)."""
    def no_duplicates(pairs):
        keys = [key for key, _ in pairs]
        repeated = sorted({key for key in keys if keys.count(key) > 1})
        if repeated:
            raise ValueError(f"duplicate key(s) {', '.join(map(repr, repeated))} in one object")
        return dict(pairs)

    def reject(name: str):
        raise ValueError(f"{name} is not a JSON number")

    return json.loads(text, parse_constant=reject, object_pairs_hook=no_duplicates)
