"""Hostile files, by principle: a command writes and deletes only inside its own output; what is read is a
regular file of bounded size; arrays from files are checked before memory is allocated for them; images are
read faithfully or refused; no traceback reaches a user."""

import io
import json
import os
import shutil
import socket
import zipfile

import numpy as np
import pytest
import torch
from benchmark.leaderboard.figures import load_gallery
from PIL import Image

from benchmark.cli import main
from benchmark.data import decode_images
from benchmark.errors import UserError
from benchmark.storage import UnsafeFile, read_npz, read_regular
from tests.records import make_record_v3, write_records


def test_the_leaderboard_deletes_nothing_beside_its_output(tmp_path):
    """A file in the parent of --out that looks like a killed writer's temporary (this host, a dead pid) is
    not the site's: it stays."""
    host = socket.gethostname().replace(".", "-")
    stranger = tmp_path / f".notes.{host}-999999.abc.tmp"
    stranger.write_text("someone else's")
    write_records(tmp_path / "records", [make_record_v3(seed=s) for s in range(2)])
    assert main(["-q", "leaderboard", "--records", str(tmp_path / "records"), "--out", str(tmp_path / "site")]) == 0
    assert stranger.read_text() == "someone else's"


def test_what_is_read_is_a_regular_file_of_bounded_size(tmp_path):
    fifo = tmp_path / "weights.fifo"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_regular(fifo)  # opened without blocking, refused before any read
    link = tmp_path / "zero"
    link.symlink_to("/dev/zero")
    with pytest.raises(UnsafeFile, match="symbolic link"):
        read_regular(link)
    with pytest.raises(UnsafeFile, match="not a regular file"):
        read_regular(link, follow_links=True)
    big = tmp_path / "big"
    big.write_bytes(b"x" * 100)
    with pytest.raises(UnsafeFile, match="more than the 10"):
        read_regular(big, 10)


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One tiny run with its weights, made once."""
    root = tmp_path_factory.mktemp("stored")
    assert main(["-q", "run", "--method", "random", "--preset", "smoke", "--train-per-class", "20",
                 "--test-per-class", "5", "--epochs", "1", "--proxy-epochs", "1", "--fractions", "0.5", "--attacks",
                 "fgsm", "--eps", "2,8", "--out", str(root / "records"), "--cache-dir", str(root / "cache")]) == 0
    return root / "records"


@pytest.mark.parametrize("kind", ["fifo", "link to /dev/zero"])
def test_attack_refuses_weights_that_are_not_a_regular_file_in_one_line(stored, tmp_path, capsys, kind):
    records = tmp_path / "records"
    shutil.copytree(stored, records)
    (weights,) = records.glob("*.model.safetensors")
    weights.unlink()
    if kind == "fifo":
        os.mkfifo(weights)
    else:
        weights.symlink_to("/dev/zero")
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2/255"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: ") and "regular file" in error


def _npz(**arrays) -> bytes:
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    return buffer.getvalue()


def _huge_header() -> bytes:
    """An .npz whose one member declares 2^40 float64s (8 TiB) in a header of a few bytes."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        header = "{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,), }"
        header += " " * (127 - 10 - len(header)) + "\n"
        archive.writestr("clean.npy", b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode())
    return buffer.getvalue()


def test_arrays_are_checked_before_memory_is_allocated_for_them():
    with pytest.raises(ValueError, match="declare more than"):
        read_npz(_huge_header(), 1 << 20)
    with pytest.raises(ValueError, match="Python objects"):
        read_npz(_npz(x=np.array([{"a": 1}], dtype=object)), 1 << 20)
    assert read_npz(_npz(x=np.arange(3)), 1 << 20)["x"].tolist() == [0, 1, 2]


def _gallery(**changes) -> dict:
    pictures = np.zeros((2, 3, 8, 8), dtype=np.uint8)
    arrays = dict(class_names=np.asarray(["cat", "dog"]), attack=np.asarray("pgd"), eps=np.asarray([2 / 255]),
                  labels=np.asarray([0, 1]), clean=pictures, clean_predictions=np.asarray([0, 1]),
                  adversarial_0=pictures, predictions_0=np.asarray([1, 1]))
    arrays.update(changes)
    return arrays


@pytest.mark.parametrize("changes", [
    {"eps": np.asarray(2 / 255)},  # a scalar eps
    {"labels": np.asarray(["cat", "dog"])},  # string labels
    {"clean": np.zeros((2, 1, 8, 8), dtype=np.uint8)},  # one channel
    {"predictions_0": np.asarray([1.5, 0.5])},  # float predictions
])
def test_a_malformed_gallery_is_left_out_not_a_traceback(tmp_path, changes):
    path = tmp_path / "g.npz"
    path.write_bytes(_npz(**_gallery()))
    assert load_gallery(path) is not None
    path.write_bytes(_npz(**_gallery(**changes)))
    assert load_gallery(path) is None
    path.write_bytes(_huge_header())
    assert load_gallery(path) is None


def test_sixteen_bit_images_are_scaled_and_unknown_modes_refused(tmp_path):
    gray = (np.arange(64, dtype=np.uint32).reshape(8, 8) * 1000).astype(np.uint16)
    Image.fromarray(gray).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode == "I;16"
    decoded = decode_images([tmp_path / "deep.png"], 8)
    expected = torch.from_numpy(np.round(gray * (255 / 65535)).astype(np.uint8))
    assert torch.equal(decoded[0, 0], expected) and torch.equal(decoded[0, 2], expected)
    Image.fromarray(np.zeros((8, 8), dtype=np.float32)).save(tmp_path / "float.tiff")
    with pytest.raises(UserError, match="pixel mode 'F'"):
        decode_images([tmp_path / "float.tiff"], 8)


def test_attack_on_a_folder_with_an_invalid_record_says_what_is_wrong(tmp_path, capsys):
    record = make_record_v3()
    record["clean_accuracy"] = 2
    (path,) = write_records(tmp_path / "records", [record])
    assert main(["attack", str(tmp_path / "records"), "--attack", "fgsm", "--eps", "2/255"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and str(path) in error and "clean_accuracy: 2 is out of range" in error
    assert json.loads(path.read_text())["clean_accuracy"] == 2


def test_an_image_folder_entry_that_is_not_a_regular_file_is_refused_not_waited_on(tmp_path):
    from benchmark.datasets import load_dataset

    for name in ("cat", "dog"):
        (tmp_path / "pets" / name).mkdir(parents=True)
        for i in range(3):
            Image.fromarray(np.zeros((8, 8, 3), dtype=np.uint8)).save(tmp_path / "pets" / name / f"{i}.png")
    os.mkfifo(tmp_path / "pets" / "dog" / "9.png")
    with pytest.raises(UserError, match="9.png is not a regular file"):
        load_dataset(f"imagefolder:{tmp_path / 'pets'}", cache_dir=tmp_path / "cache")


def test_a_fifo_among_the_records_is_a_problem_not_a_wait(tmp_path, capsys):
    write_records(tmp_path / "records", [make_record_v3()])
    os.mkfifo(tmp_path / "records" / "waiting.json")
    assert main(["validate", str(tmp_path / "records")]) == 2
    err = capsys.readouterr().err
    assert "waiting.json: not a regular file" in err
