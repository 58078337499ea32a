"""The benchmark scripts in scripts/ run (on a few random images, one epoch) and print the numbers they promise.
They are not timed here: their numbers are only meaningful on an idle machine."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parent.parent / "scripts"


def _run(script: str, *args: str) -> str:
    done = subprocess.run([sys.executable, str(SCRIPTS / script), *args], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.parametrize("preset", ["standard", "cifar10-cpu"])
def test_the_train_loop_benchmark_prints_both_loops_and_their_ratio(preset):
    out = _run("bench_train_loop.py", "--device", "cpu", "--images", "64", "--epochs", "1", "--model",
               "mobilenetv2_035", "--workers", "0", "--preset", preset)
    rates = [float(x) for x in re.findall(r"loop\s+([\d.]+) images/s", out)]
    assert len(rates) == 2 and all(rate > 0 for rate in rates)
    assert re.search(r"ratio\s+[\d.]+x", out)


def test_the_checkpoint_benchmark_prints_the_overhead():
    out = _run("bench_checkpoint.py", "--images", "32", "--epochs", "1", "--batch-size", "16", "--model",
               "mobilenetv2_035")
    assert re.search(r"s/epoch without checkpoints, [\d.]+ s/epoch with them \([\d.]+ MiB each\); overhead x[\d.]+",
                     out)


def test_the_model_pass_benchmark_prints_a_row_per_layout_against_the_harness_choice():
    out = _run("bench_model_pass.py", "--device", "cpu", "--model", "mobilenetv2_035", "--attack-batch", "24",
               "--train-batch", "4", "--repeats", "1")
    rows = re.findall(r"^\| (channels_last|NCHW) \| float32 \| off \| \d+ \| ([\d.]+)x \| \d+ \| ([\d.]+)x \|$", out,
                      re.MULTILINE)
    assert [row[0] for row in rows] == ["channels_last", "NCHW"]
    assert rows[0][1:] == ("1.00", "1.00")  # the harness's own choice is the baseline
    rounds = re.findall(r"^\| (\d) \| (exact sizes|padded to buckets[^|]*) \| (\d+) \| [\d.]+ \| \d+ \|$", out,
                        re.MULTILINE)
    assert [(int(r[0]), r[1].split()[0]) for r in rounds] == [(1, "exact"), (2, "padded"), (3, "exact"),
                                                               (4, "padded"), (5, "exact"), (6, "padded")]
    assert int(rounds[0][2]) == 12 and all(int(r[2]) < 12 for r in rounds[1::2])  # the buckets' point


def test_the_train_step_benchmark_prints_a_rate_per_setting():
    out = _run("bench_train_step.py", "--images", "32", "--epochs", "1", "--model", "mobilenetv2_035", "--preset",
               "smoke", "--processes", "1,2")
    rates = re.findall(r"^compile none +processes (\d): ([\d,]+) images/s in all", out, re.MULTILINE)
    assert [processes for processes, _ in rates] == ["1", "2"]
    assert all(float(rate.replace(",", "")) > 0 for _, rate in rates)


def _planted(folder: Path, method: str, seed: int, indices) -> None:
    import json

    import numpy as np

    folder.mkdir(exist_ok=True)
    name = f"{method}__f0.1__s{seed}"
    np.savez(folder / f"{name}.selection.npz", pool_indices=np.array(indices))
    (folder / f"{name}.json").write_text(json.dumps({"method": method, "method_params": {}, "fraction": 0.1,
                                                     "seed": seed, "selection": {"artifact": f"{name}.selection.npz"}}))


def test_the_selection_overlap_script_prints_the_planted_shares(tmp_path):
    # seeds 0 and 1 share 5 of 10 images, seeds 0 and 2 none, seeds 1 and 2 one; the other folder's seed 0 shares 2
    _planted(tmp_path / "a", "cal", 0, range(0, 10))
    _planted(tmp_path / "a", "cal", 1, range(5, 15))
    _planted(tmp_path / "a", "cal", 2, range(14, 24))
    _planted(tmp_path / "b", "cal", 0, [0, 1, 90, 91, 92, 93, 94, 95, 96, 97])
    out = _run("selection_overlap.py", str(tmp_path / "a"), str(tmp_path / "b"))
    row = re.search(r"^\| cal +\| 0\.1 +\| 0\.10 +\| 3 +\| (.+?) +\| (.+?) +\|$", out, re.MULTILINE)
    assert row is not None, out
    assert row.groups() == ("0.20 [0.00, 0.50] (3 pairs)", "0.20")
    done = subprocess.run([sys.executable, str(SCRIPTS / "selection_overlap.py"), str(tmp_path / "none")],
                          capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a folder" in done.stderr


def test_the_paired_folders_script_prints_the_planted_per_seed_difference(tmp_path):
    from tests.records import EPS, make_record_v2, write_records

    def runs(machine, headlines):
        records = []
        for seed, headline in enumerate(headlines):
            fgsm = [0.5] * len(EPS)
            fgsm[1] = headline  # the worst case at 2/255, the headline: PGD stays at the clean accuracy
            record = make_record_v2("random", seed=seed, clean=0.5, fgsm=fgsm, pgd=[0.5] * len(EPS), test_size=100)
            record["environment"]["device_name"] = machine
            records.append(record)
        return records

    # per seed +10, +12, +8 points: mean +10, sd 2, t(0.975, 2) 4.303 x 2 / sqrt(3) = 4.97; clean unchanged
    write_records(tmp_path / "a", runs("AMD EPYC", [0.30, 0.32, 0.28]))
    write_records(tmp_path / "b", runs("Intel(R) Xeon(R) CPU", [0.20, 0.20, 0.20]))
    out = _run("paired_folders.py", str(tmp_path / "a"), str(tmp_path / "b"))
    row = re.search(r"^\| random +\| +0\.1 \| +3 \| AMD EPYC / Intel Xeon +\| 30\.00 / 20\.00 +\| (.+?) +\| "
                    r"50\.00 / 50\.00 +\| (.+?) +\|$", out, re.MULTILINE)
    assert row is not None, out
    assert row.groups() == ("+10.00 [+5.03, +14.97] sd 2.00", "+0.00 [+0.00, +0.00] sd 0.00")
    done = subprocess.run([sys.executable, str(SCRIPTS / "paired_folders.py"), str(tmp_path / "a"),
                           str(tmp_path / "none")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "not a folder" in done.stderr
