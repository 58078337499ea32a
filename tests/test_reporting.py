"""What a run tells its user: the table export, progress lines in logs that are not a terminal, runs at chance
level flagged loudly (in the record, on stderr and on the page), and a dry run that never downloads."""

import json
import os
import re
import subprocess
import sys

import pandas as pd

from benchmark.cli import main
from tests.conftest import REPO

SUBMISSIONS = REPO / "submissions"


def test_export_writes_one_row_per_run_and_attack_eps_as_csv_and_parquet(tmp_path):
    paths = sorted(SUBMISSIONS.rglob("*.json"))
    records = [json.loads(p.read_text()) for p in paths]
    expected = sum(1 + len(r["attacks"]) + len(r.get("worst_case", [])) for r in records)
    for suffix in ("csv", "parquet"):
        out = tmp_path / f"results.{suffix}"
        assert main(["-q", "export", str(SUBMISSIONS), "--out", str(out)]) == 0
        table = pd.read_csv(out) if suffix == "csv" else pd.read_parquet(out)
        assert len(table) == expected
        clean = table[table["measure"] == "clean"]
        assert len(clean) == len(records) and set(clean["method"]) == {r["method"] for r in records}
        one = records[0]
        rows = table[(table["record"] == paths[0].name) & (table["measure"] == "attack")]
        assert sorted(rows["accuracy"].round(6)) == sorted(round(a["accuracy"], 6) for a in one["attacks"])


def test_a_long_phase_logs_progress_lines_when_not_on_a_terminal(tmp_path):
    env = {**os.environ, "CORESET_BENCH_PROGRESS_SECONDS": "0", "CORESET_BENCH_CACHE": str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-m", "benchmark", "run", "--method", "random", "--preset", "smoke",
                           "--train-per-class", "20", "--test-per-class", "5", "--epochs", "3", "--fractions", "0.5",
                           "--attacks", "fgsm", "--eps", "8", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()  # a pipe, not a terminal: no progress bar, plain lines instead
    progress = [line for line in lines if re.fullmatch(r"train lr=0\.05: \d+/\d+ epoch \(\d+ %\) after \d+s, "
                                                       r"about \d+s left", line)]
    assert len(progress) >= 2, lines
    assert "\r" not in done.stderr


def test_a_run_at_chance_level_is_flagged_in_the_record_on_stderr_and_on_the_page(tmp_path, capsys):
    # a learning rate so small the model stays as it was initialised: it predicts at chance
    assert main(["run", "--method", "random", "--preset", "smoke", "--train-per-class", "10", "--test-per-class", "5",
                 "--fractions", "0.1", "--epochs", "1", "--lrs", "0.000001", "--attacks", "fgsm", "--eps", "8",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 0
    (path,) = (tmp_path / "out").glob("*.json")
    record = json.loads(path.read_text())
    codes = {flag["code"] for flag in record["flags"]}
    assert "chance-level" in codes, record["flags"]
    err = capsys.readouterr().err
    assert "WARNING: random f0.1 s0 is flagged" in err
    assert main(["-q", "leaderboard", "--records", str(tmp_path / "out"), "--out", str(tmp_path / "site"),
                 "--include-unpublished"]) == 0
    html = (tmp_path / "site" / "index.html").read_text()
    assert "runs are flagged" in html and next(iter(codes)) in html


def test_few_steps_and_one_class_models_are_flagged():
    from benchmark.evaluation.checks import chance_threshold, run_flags
    from benchmark.record import Check

    flags = run_flags(clean=0.9, num_classes=10, test_size=1000, top_share=0.95, steps=2, checks=[])
    assert [flag.code for flag in flags] == ["one-class", "few-steps"]
    assert run_flags(clean=0.9, num_classes=10, test_size=1000, top_share=0.2, steps=100, checks=[]) == ()
    # chance plus three binomial standard deviations: 0.1 + 3 sqrt(0.09 / 1000) = 0.1285
    assert abs(chance_threshold(10, 1000) - 0.12846) < 1e-4
    failed = Check(check="monotone", attack="pgd", passed=False, detail="rises")
    assert [f.code for f in run_flags(clean=0.12, num_classes=10, test_size=1000, top_share=0.2, steps=100,
                                      checks=(failed,))] == ["chance-level", "sanity-check"]


def test_a_dry_run_of_the_gpu_preset_downloads_nothing(tmp_path, monkeypatch, capsys):
    for variable in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    assert main(["sweep", "--methods", "random,cal", "--dry-run", "--data-root", str(tmp_path / "data"),
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr()
    assert "sweep of 12 run(s)" in out.out and "the cache was not checked (the data is not here)" in out.out
    assert not (tmp_path / "data").exists() and not (tmp_path / "out").exists()


def test_threads_sets_torchs_cpu_threads(tmp_path, monkeypatch):
    import torch

    from benchmark.cli import main

    monkeypatch.setattr(torch, "set_num_threads", lambda n: seen.append(n))
    seen = []
    assert main(["-q", "sweep", "--methods", "random", "--preset", "smoke", "--dry-run", "--threads", "3",
                 "--out", str(tmp_path / "out"), "--cache-dir", str(tmp_path / "cache")]) == 0
    assert seen == [3]
