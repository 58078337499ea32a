"""Hostile input beyond bad arguments (tests/test_bad_inputs.py): files planted or damaged in a shared cache,
partial state tampered with, writes cut off by the operating system, image bombs, selectors that break or
scribble on what they are handed, and records with hostile strings and numbers, which `validate` and the
leaderboard must judge alike (a property-based test)."""

import json
import os
import pickle
import resource
import subprocess
import sys
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import benchmark.selection as sel
from benchmark.cli import main
from benchmark.datasets import load_dataset
from benchmark.errors import UserError
from benchmark.protocol import preset
from benchmark.proxy import build_proxy
from benchmark.run import prepare_data
from benchmark.schema import SchemaError, check_record, load_records
from benchmark.selection import Selection, Selector
from tests.conftest import REPO
from tests.records import make_record_v2, write_records

PROTOCOL = preset("smoke").with_overrides(train_per_class=20, test_per_class=5, epochs=1, proxy_epochs=1)


class _Payload:
    """Unpickling this runs a command: what a hostile file in a shared cache would hold."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _data():
    return prepare_data(load_dataset("digits").limited(20, 5), torch.device("cpu"))[0]


def test_a_pickle_planted_in_the_proxy_cache_never_runs(tmp_path, caplog):
    data = _data()
    proxy = build_proxy(PROTOCOL, data, seed=0, cache_dir=tmp_path / "cache")
    path = proxy._cache_file(0, PROTOCOL.proxy_epochs)
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    embeddings = proxy.embeddings()  # the planted file is refused and the proxy trained again
    assert not (tmp_path / "pwned").exists() and proxy.trained == 1 and torch.isfinite(embeddings).all()
    assert "was not written by coreset-bench" in caplog.text


def test_a_pickle_planted_as_a_training_checkpoint_never_runs(tmp_path):
    from benchmark.train import TrainConfig, train_model
    from tests.conftest import tiny_model

    checkpoint = tmp_path / "lr0.checkpoint"
    checkpoint.write_bytes(pickle.dumps(_Payload(tmp_path / "pwned")))
    images = torch.randint(0, 256, (8, 3, 4, 4), dtype=torch.uint8)
    config = TrainConfig(epochs=1, lr=0.01, batch_size=4, momentum=0.9, nesterov=True, weight_decay=0.0)
    train_model(tiny_model(2, seed=0), images, torch.arange(8) % 2, config, seed=0, purpose="t", checkpoint=checkpoint)
    assert not (tmp_path / "pwned").exists()


def test_a_proxy_cache_with_flipped_bytes_is_recomputed_not_used(tmp_path):
    data = _data()
    first = build_proxy(PROTOCOL, data, seed=0, cache_dir=tmp_path / "cache")
    clean = first.embeddings()
    path = first._cache_file(0, PROTOCOL.proxy_epochs)
    damaged = bytearray(path.read_bytes())
    damaged[-200:-136] = bytes(b ^ 0x5A for b in damaged[-200:-136])  # 64 bytes inside the tensors
    path.write_bytes(bytes(damaged))
    again = build_proxy(PROTOCOL, data, seed=0, cache_dir=tmp_path / "cache")
    assert torch.equal(again.embeddings(), clean) and again.trained == 1  # trained again, to the same result


def test_a_truncated_or_damaged_imagefolder_cache_is_decoded_again(tmp_path):
    for split in ("train", "test"):
        for name in ("a", "b"):
            (tmp_path / "folder" / split / name).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(np.full((8, 8, 3), 40 * i + (name == "b") * 100, np.uint8)).save(
                    tmp_path / "folder" / split / name / f"{i}.png")
    spec = f"imagefolder:{tmp_path / 'folder'}"
    first = load_dataset(spec, cache_dir=tmp_path / "cache")
    (cached,) = (tmp_path / "cache" / "imagefolder").iterdir()
    for damage in (lambda data: data[: len(data) // 2], lambda data: data[:-10] + bytes(10)):
        cached.write_bytes(damage(cached.read_bytes()))
        again = load_dataset(spec, cache_dir=tmp_path / "cache")
        assert torch.equal(again.train_images, first.train_images)


def test_a_tampered_saved_selection_is_made_again(tmp_path):
    argv = ["-q", "run", "--method", "random", "--preset", "smoke", "--train-per-class", "20", "--test-per-class",
            "5", "--epochs", "1", "--fractions", "0.5", "--attacks", "fgsm", "--eps", "8",
            "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--out", str(tmp_path / "clean")]) == 0
    (reference,) = [json.loads(p.read_text()) for p in (tmp_path / "clean").glob("*.json")]
    # a run killed after selecting, whose saved selection was then rewritten by hand
    from benchmark.run import run_spec
    from benchmark.storage import write_arrays_sealed

    protocol = preset("smoke").with_overrides(train_per_class=20, test_per_class=5, epochs=1, fractions=(0.5,))
    spec = run_spec(method="random", params={}, protocol=protocol, fraction=0.5, seed=0, out=tmp_path / "out")
    spec.partial.mkdir(parents=True)
    (spec.partial / "selection.sealed").write_bytes(b"coreset-bench sealed sha256=0\n" + b"x" * 100)
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert record["selection"]["indices_sha256"] == reference["selection"]["indices_sha256"]
    # a well-formed but out-of-range saved selection is refused as well
    write_arrays_sealed(spec.partial / "selection.sealed", indices=np.arange(5000, 5090), seconds=np.float64(0))
    for path in (tmp_path / "out").glob("*"):
        path.unlink() if path.is_file() else None
    assert main([*argv, "--out", str(tmp_path / "out")]) == 0
    (record,) = [json.loads(p.read_text()) for p in (tmp_path / "out").glob("*.json")]
    assert record["selection"]["indices_sha256"] == reference["selection"]["indices_sha256"]


@pytest.mark.parametrize("where", ["out", "cache"])
def test_a_write_cut_off_by_the_operating_system_is_one_line_and_leaves_nothing(tmp_path, where):
    """A file-size limit (RLIMIT_FSIZE) makes the kernel refuse the write mid-file, as a full disk does, in
    every writer (checkpoints through torch, records, weights, caches)."""
    limit = 60_000 if where == "out" else 2_000  # records are small; weights and caches are not
    script = (f"import resource, signal, sys; signal.signal(signal.SIGXFSZ, signal.SIG_IGN); "
              f"resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit})); "
              f"from benchmark.cli import main; sys.exit(main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "-q", "run", "--method", "cal", "--preset", "smoke",
                           "--train-per-class", "20", "--test-per-class", "5", "--epochs", "1", "--proxy-epochs", "1",
                           "--fractions", "0.5", "--attacks", "fgsm", "--eps", "8", "--out", str(tmp_path / "out"),
                           "--cache-dir", str(tmp_path / "cache")], capture_output=True, text=True, cwd=REPO,
                          timeout=600)
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()
    assert len(error) == 1 and error[0].startswith("error: cannot read or write") and "File too large" in error[0]
    assert "Traceback" not in done.stderr
    leftovers = [p for p in tmp_path.rglob("*") if p.is_file() and (p.name.endswith(".tmp") or p.suffix == ".json")]
    assert leftovers == []
    assert resource.getrlimit(resource.RLIMIT_FSIZE)[0] != limit  # the limit stayed in the child


def test_a_decompression_bomb_is_refused_before_decoding(tmp_path, capsys):
    for name in ("a", "b"):
        (tmp_path / "bomb" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "bomb" / name / "ok.png")
    Image.new("1", (5000, 5000)).save(tmp_path / "bomb" / "a" / "huge.png")  # 25 M pixels, a few kB on disk
    assert main(["run", "--method", "random", "--preset", "smoke", "--dataset", f"imagefolder:{tmp_path / 'bomb'}",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "huge.png is 5000 x 5000 pixels, more than this benchmark decodes" in error


@dataclass(frozen=True)
class Scribbler(Selector):
    """Writes into every copy it is handed (images, validation labels, embeddings), then selects at random:
    nothing it does may reach what is trained on or what another selector sees."""

    name: ClassVar[str] = "scribbler-test"
    paper: ClassVar[str] = "a test double"

    def select(self, context):
        context.pool_images()[:] = 0
        context.validation().labels[:] = 0
        context.embeddings()[:] = 0
        with pytest.raises(ValueError):
            context.labels[0] = 1
        with pytest.raises(AttributeError):
            context.budget = 1
        chosen = [context.rng.choice(indices, size=budget, replace=False) for indices, budget in context.groups()]
        return Selection(indices=np.sort(np.concatenate(chosen)))


@dataclass(frozen=True)
class Raises(Selector):
    name: ClassVar[str] = "raises-test"
    paper: ClassVar[str] = "a test double"
    uses_proxy: ClassVar[bool] = False

    def select(self, context):
        raise KeyError("a bug in a plug-in")


@pytest.fixture
def doubles():
    sel.available_selectors()
    sel.register(Scribbler)
    sel.register(Raises)
    yield
    for cls in (Scribbler, Raises):
        del sel.SELECTORS._entries[cls.name]


def test_a_selector_cannot_change_what_others_see_and_one_that_raises_does_not_stop_the_sweep(tmp_path, doubles,
                                                                                              capsys):
    argv = ["sweep", "--preset", "smoke", "--train-per-class", "20", "--test-per-class", "5", "--epochs", "1",
            "--proxy-epochs", "1", "--fractions", "0.5", "--attacks", "fgsm", "--eps", "8",
            "--cache-dir", str(tmp_path / "cache")]
    assert main([*argv, "--methods", "random,cal", "--out", str(tmp_path / "clean")]) == 0
    assert main([*argv, "--methods", "scribbler-test,raises-test,random,cal", "--out", str(tmp_path / "out")]) == 2
    error = capsys.readouterr().err
    assert "failed: raises-test f0.5 s0: KeyError: 'a bug in a plug-in'" in error and "Traceback" not in error

    def outcome(folder, method):
        (path,) = folder.glob(f"{method}__*.json")
        record = json.loads(path.read_text())
        return record["selection"]["indices_sha256"], record["clean_accuracy"], record["attacks"]

    for method in ("random", "cal"):  # the same records as without the scribbler before them
        assert outcome(tmp_path / "out", method) == outcome(tmp_path / "clean", method)
    assert len(list((tmp_path / "out").glob("scribbler-test__*.json"))) == 1


# --- records with hostile content: validate and the leaderboard agree ---------------------------------------
HOSTILE_TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=()), max_size=12) | st.sampled_from(
    ["<script>alert(1)</script>", "a\rb", "x\u2028y", "\x1b[31m", "\x00", "[x](javascript:y)", "~~s~~", "cal (k=5)",
     "\ud800", "|", "\\", "$x$", "-", "_hidden"])
NUMBERS = st.one_of(st.integers(min_value=-(2 ** 70), max_value=2 ** 70), st.floats(allow_nan=False),
                    st.just(0.5), st.just(10 ** 400 // 10 ** 399))


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["method", "paper", "dataset", "preset", "model", "method_params", "seed", "fraction",
                              "clean_accuracy", "paper_url", "flags"]),
       text=HOSTILE_TEXT, number=NUMBERS, use_number=st.booleans())
def test_validate_and_the_leaderboard_agree_on_hostile_records(tmp_path_factory, field, text, number, use_number):
    folder = tmp_path_factory.mktemp("hostile")
    records = [make_record_v2("random", seed=s) for s in range(2)] + [make_record_v2("other", seed=0)]
    value = number if use_number else text
    if field == "method_params":
        value = {"k": value}
    elif field == "flags":
        value = [{"code": "few-steps", "detail": value}]
    records[2][field] = value
    if field in ("dataset", "preset", "model"):
        records[2]["protocol"][field] = value
    (path,) = write_records(folder / "in", records[2:])
    write_records(folder / "in", records[:2])
    problems = check_record(json.loads(path.read_text()), "x")
    try:
        from benchmark.leaderboard import build_site

        build_site([folder / "in"], folder / "site", include_unpublished=True)
        built = True
    except SchemaError as error:
        built = False
        assert all("\n" not in p and p.startswith(str(folder / "in")) for p in error.problems)
    except UserError as error:  # e.g. a preset the board does not take: one line, a reason
        built = False
        assert "\n" not in str(error)
    assert built == (not problems) or (not problems and not built)
    if built:
        html = (folder / "site" / "index.html").read_text()
        assert "<script>alert(1)</script>" not in html
        load_records([folder / "in"])
