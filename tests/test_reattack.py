"""`python -m benchmark attack`: stored models re-measured with another attack, the result added to their
records atomically (worst case and checks recomputed), resumable; damaged or swapped weights refused before
anything is written."""

import json
import shutil

import pytest

from benchmark.cli import main
from benchmark.record import unpack_mask
from benchmark.schema import load_records

TINY = ["--preset", "smoke", "--train-per-class", "20", "--test-per-class", "5", "--epochs", "1",
        "--proxy-epochs", "1", "--fractions", "0.5", "--attacks", "fgsm", "--eps", "2,8"]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """One run with its model weights, made once; each test works on a copy."""
    root = tmp_path_factory.mktemp("stored")
    assert main(["-q", "run", "--method", "random", *TINY, "--out", str(root / "records"),
                 "--cache-dir", str(root / "cache")]) == 0
    return root / "records"


def _copy(stored, tmp_path):
    target = tmp_path / "records"
    shutil.copytree(stored, target)
    return target


def _snapshot(folder):
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def test_an_attack_is_added_with_its_cross_check_worst_case_and_checks(stored, tmp_path, capsys):
    records = _copy(stored, tmp_path)
    (path,) = records.glob("*.json")
    before = json.loads(path.read_text())
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2,8", "--param", "steps=5"]) == 0
    after = json.loads(path.read_text())
    pgd = [a for a in after["attacks"] if a["name"] == "pgd"]
    assert [round(a["eps"] * 255) for a in pgd] == [2, 8] and pgd[0]["params"]["steps"] == 5
    assert all("cross_check" in a for a in pgd)
    assert [a for a in after["attacks"] if a["name"] == "fgsm"] == before["attacks"]  # kept as they were
    for worst in after["worst_case"]:
        assert worst["attacks"] == ["fgsm", "pgd"]
        size = after["evaluation"]["test_size"]
        fgsm = next(a for a in before["worst_case"] if a["eps"] == worst["eps"])
        assert not (unpack_mask(worst["robust"], size) & ~unpack_mask(fgsm["robust"], size)).any()  # can only fall
    assert {(c["check"], c["attack"]) for c in after["checks"]} >= {("eps0", "pgd"), ("below-fgsm", "pgd"),
                                                                   ("monotone", "pgd"), ("worst-case", "")}
    assert after["reevaluations"][0]["attack"] == "pgd"
    load_records([records])  # still a valid record
    assert "1 record(s) updated" in capsys.readouterr().out
    # run again: resumes (nothing to do), changes nothing
    snapshot = _snapshot(records)
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2,8", "--param", "steps=5"]) == 0
    assert "0 record(s) updated, 1 already had these results" in capsys.readouterr().out
    assert _snapshot(records) == snapshot


@pytest.mark.parametrize("damage, words", [
    ("flip", "do not match the record's model.sha256"),
    ("remove", "the record's model weights are missing"),
    ("swap", "do not match the record's model.sha256"),
])
def test_damaged_missing_or_swapped_weights_are_refused_and_nothing_is_written(stored, tmp_path, capsys, damage,
                                                                               words):
    records = _copy(stored, tmp_path)
    (weights,) = records.glob("*.model.safetensors")
    if damage == "flip":
        data = bytearray(weights.read_bytes())
        data[-64:] = bytes(b ^ 0xFF for b in data[-64:])
        weights.write_bytes(bytes(data))
    elif damage == "remove":
        weights.unlink()
    else:  # another model's weights under this record's name
        import torch
        from safetensors.torch import load_file, save_file

        tensors = load_file(weights)
        save_file({k: v + 1 if v.is_floating_point() else v for k, v in tensors.items()}, weights)
        assert torch.is_tensor(next(iter(tensors.values())))
    before = _snapshot(records)
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and error.startswith("error: ") and words in error
    assert _snapshot(records) == before


def test_a_different_test_set_is_refused(stored, tmp_path, capsys):
    records = _copy(stored, tmp_path)
    (path,) = records.glob("*.json")
    record = json.loads(path.read_text())
    record["protocol"]["test_per_class"] = 6  # the run's test set was 5 images per class
    path.write_text(json.dumps(record, indent=2))
    before = _snapshot(records)
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2"]) == 2
    assert "the test set loaded now differs from the one the run used" in capsys.readouterr().err
    assert _snapshot(records) == before


def test_a_failing_attack_is_recorded_the_rest_runs_and_attack_finishes_it_later(tmp_path, capsys, monkeypatch):
    """An attack that raises mid-suite (pgd-l2 once died this way after a whole training): the run still writes
    its weights and a record with the other attacks, the failure listed and flagged; `attack` runs it again
    once it works and the failure is gone."""
    from benchmark.attacks.pgd import PGD

    original = PGD.perturb_grid

    def broken(self, *args, **kwargs):
        raise RuntimeError("view size is not compatible with input tensor's size and stride")

    monkeypatch.setattr(PGD, "perturb_grid", broken)
    out = tmp_path / "records"
    args = [arg if arg != "fgsm" else "fgsm,pgd" for arg in TINY]
    assert main(["-q", "run", "--method", "random", *args, "--attack-param", "pgd.steps=3", "--out", str(out),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    assert {a["name"] for a in record["attacks"]} == {"fgsm"}
    (failure,) = record["attack_failures"]
    assert failure["name"] == "pgd" and "view size is not compatible" in failure["reason"]
    assert "attack-failed" in [f["code"] for f in record["flags"]]
    assert (out / record["model_weights"]["artifact"]).is_file()
    load_records([out])
    monkeypatch.setattr(PGD, "perturb_grid", original)
    assert main(["attack", str(out), "--attack", "pgd", "--eps", "2,8", "--param", "steps=3"]) == 0
    record = json.loads(path.read_text())
    assert record["attack_failures"] == [] and "attack-failed" not in [f["code"] for f in record["flags"]]
    assert {w["eps"]: w["attacks"] for w in record["worst_case"]} == {2 / 255: ["fgsm", "pgd"],
                                                                       8 / 255: ["fgsm", "pgd"]}


def _forge_weights(records, change):
    """Replace the stored weights by `change(tensors)` and the record's hash by theirs: a forged pair that the
    hash check alone cannot catch."""
    import hashlib

    from safetensors.torch import load_file, save_file

    (weights,) = records.glob("*.model.safetensors")
    save_file(change(load_file(weights)), weights)
    (path,) = records.glob("*.json")
    record = json.loads(path.read_text())
    record["model_weights"]["sha256"] = hashlib.sha256(weights.read_bytes()).hexdigest()
    path.write_text(json.dumps(record, indent=2))


@pytest.mark.parametrize("change", ["other model", "nan"])
def test_weights_that_are_not_the_model_measured_are_refused_by_their_clean_predictions(stored, tmp_path, capsys,
                                                                                       change):
    import torch

    records = _copy(stored, tmp_path)

    def forged(tensors):
        if change == "nan":
            return {k: torch.full_like(v, float("nan")) if v.is_floating_point() and k not in ("mean", "std")
                    else v for k, v in tensors.items()}
        generator = torch.Generator().manual_seed(7)  # another initialisation: another model of the same shape
        return {k: torch.randn(v.shape, generator=generator) * v.std() if v.is_floating_point() and v.ndim > 1
                else v for k, v in tensors.items()}

    _forge_weights(records, forged)
    before = _snapshot(records)
    assert main(["attack", str(records), "--attack", "pgd", "--eps", "2"]) == 2
    error = capsys.readouterr().err.strip()
    assert "\n" not in error and "classify" in error and "differently from the run this record measured" in error
    assert _snapshot(records) == before


def test_two_attack_calls_on_one_folder_both_land(stored, tmp_path):
    """Each reads the record, attacks for a while, then writes: without the lock and the re-read under it, the
    later writer would drop the other's results."""
    import os
    import subprocess
    import sys

    records = _copy(stored, tmp_path)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    calls = [["--attack", "pgd", "--eps", "2,8", "--param", "steps=30"], ["--attack", "bim", "--eps", "2,8"]]
    processes = [subprocess.Popen([sys.executable, "-m", "benchmark", "-q", "attack", str(records), *call],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for call in calls]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()[-2000:]
    (path,) = records.glob("*.json")
    record = json.loads(path.read_text())
    assert {a["name"] for a in record["attacks"]} == {"fgsm", "pgd", "bim"}
    assert {r["attack"] for r in record["reevaluations"]} == {"pgd", "bim"}
    for worst in record["worst_case"]:
        assert sorted(worst["attacks"]) == ["bim", "fgsm", "pgd"]
    load_records([records])
