"""What reproduces: the same command in a fresh process, on the same machine and thread count, gives the same
record bit for bit — the selection (through a trained proxy), the weights, every per-image mask — whatever the
process's hash seed. (On another CPU model, instruction set or thread count agreement is statistical: the
page says so.)"""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# the numbers a record measures; timings, dates and paths are the run's own
MEASURED = ("selection", "model_weights", "clean_accuracy", "attacks", "worst_case", "checks", "flags")


def _run(out, hash_seed: str) -> dict:
    command = [sys.executable, "-m", "benchmark", "-q", "run", "--method", "cal", "--preset", "smoke",
               "--fractions", "0.1", "--epochs", "1", "--proxy-epochs", "1", "--train-per-class", "20",
               "--test-per-class", "5", "--threads", "1", "--out", str(out), "--cache-dir", str(out / "cache")]
    environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, env=environment, timeout=600)
    assert result.returncode == 0, result.stderr
    (path,) = out.glob("*.json")
    record = json.loads(path.read_text())
    for part in ("selection", "model_weights"):
        record[part] = {k: v for k, v in record[part].items() if k not in ("seconds", "proxy_training_seconds")}
    return {key: record.get(key) for key in MEASURED}


def test_a_run_repeated_in_a_fresh_process_gives_the_same_record_bit_for_bit(tmp_path):
    first, second = _run(tmp_path / "a", "1"), _run(tmp_path / "b", "2")
    assert first["model_weights"]["sha256"] == second["model_weights"]["sha256"]
    assert first == second
