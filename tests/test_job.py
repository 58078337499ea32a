"""`python -m benchmark job` on the CPU with a tiny protocol: the board's order, two runs at once writing the
records each writes alone, the budget that keeps a run from starting, the archive's limit, and the resume from
committed records."""

import json
import re
import tarfile
from pathlib import Path

import pytest

from benchmark.cli import _protocol, build_parser, main
from benchmark.job import board_order, pack
from benchmark.protocol import preset
from benchmark.record import Record

TINY = ["--preset", "smoke", "--train-per-class", "20", "--test-per-class", "5", "--epochs", "1",
        "--proxy-epochs", "1", "--fractions", "0.5", "--seeds", "0,1", "--attacks", "fgsm", "--eps", "2,8"]


def test_the_study_and_the_full_pool_come_first_then_fraction_seed_method():
    protocol = preset("smoke").with_overrides(fractions=(0.1, 0.5), seeds=(0, 1))
    order = [spec.label for spec in board_order(protocol, ["herding", "full", "cal", "random"], {}, Path("/x"))]
    assert order == ["random f0.1 s0", "cal f0.1 s0", "random f0.1 s1", "cal f0.1 s1", "random f0.5 s0",
                     "cal f0.5 s0", "random f0.5 s1", "cal f0.5 s1", "full f1 s0", "full f1 s1",
                     "herding f0.1 s0", "herding f0.1 s1", "herding f0.5 s0", "herding f0.5 s1"]


def _comparable(path: Path) -> dict:
    """A record without what differs between two executions of the same run: timings and provenance."""
    record = json.loads(path.read_text())
    for key in ("created", "environment"):
        record.pop(key)
    record["selection"]["seconds"] = record["selection"]["proxy_training_seconds"] = 0
    record["training"]["seconds"] = 0
    record["evaluation"].pop("seconds")
    return record


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """Four tiny runs made by one job, two at a time, one thread each."""
    root = tmp_path_factory.mktemp("job")
    assert main(["job", "--methods", "random,cal", *TINY, "--budget", "900", "--margin", "5",
                 "--runs-per-device", "2", "--threads", "1", "--out", str(root / "board"),
                 "--cache-dir", str(root / "cache")]) == 0
    return root


def test_two_runs_at_once_write_the_records_each_writes_alone(board, tmp_path):
    alone = tmp_path / "alone"
    assert main(["sweep", "--methods", "random,cal", *TINY, "--threads", "1", "--out", str(alone),
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    records = sorted((board / "board").glob("*.json"))
    assert len(records) == 4
    for path in records:
        assert _comparable(path) == _comparable(alone / path.name), path.name
        # the job's records say how many runs shared the device (their seconds are wall-clock while sharing it)
        assert json.loads(path.read_text())["environment"]["runs_per_device"] == 2
        assert "runs_per_device" not in json.loads((alone / path.name).read_text())["environment"]


def test_the_archive_holds_every_record_and_the_weights_that_fit(board, tmp_path):
    records = sorted((board / "board").glob("*.json"))
    with tarfile.open(board / "board" / "job.tar.gz") as tar:
        names = set(tar.getnames())
        manifest = json.loads(tar.extractfile("job.txt").read())
    assert {path.name for path in records} <= names
    assert len(manifest["records"]) == 4 and len(manifest["weights"]) == 4 and manifest["left out"] == []
    assert len(manifest["finished"]) == 4
    protocol = _protocol(build_parser().parse_args(["job", "--methods", "random,cal", *TINY, "--budget", "1"]))
    specs = [spec for spec in board_order(protocol, ["random", "cal"], {}, board / "board")]
    assert all(spec.record.exists() for spec in specs)
    weights = [Record.parse(spec.record.read_text()).artifact(spec.record, "model") for spec in specs]
    room = sum(p.stat().st_size for spec in specs for p in spec.record.parent.glob(spec.record.stem + ".*")
               if not p.name.endswith(".safetensors"))
    limit = 64 * 1024 + room + 4096 * 4 + weights[0].stat().st_size + 1024  # the records and one model, no more
    packed, kept, left, size = pack(specs, tmp_path / "small.tar.gz", limit, summary={})
    assert size <= limit and len(packed) == 4 and kept == [weights[0].name] and len(left) == 3
    packed, kept, left, size = pack(specs, tmp_path / "tiny.tar.gz", 64 * 1024 + 100, summary={})
    assert packed == [] and kept == [] and len(left) == 4 and size <= 64 * 1024 + 100


def test_a_second_window_skips_what_is_recorded(board, capsys):
    capsys.readouterr()
    assert main(["job", "--methods", "random,cal", *TINY, "--budget", "900", "--margin", "5",
                 "--out", str(board / "next"), "--done", str(board / "board"),
                 "--cache-dir", str(board / "cache")]) == 0
    assert "0 run(s) finished, 0 failed, 0 stopped at the deadline, 0 left for the next window; 4 of 4 were " \
           "recorded before" in capsys.readouterr().out


def test_a_run_that_cannot_finish_in_time_does_not_start(board, tmp_path, capsys):
    committed = tmp_path / "committed"
    committed.mkdir()
    (first, *_) = sorted((board / "board").glob("random*s0*.json"))
    record = json.loads(first.read_text())
    record["training"]["seconds"] = 3600.0  # the committed run took an hour: two minutes will not do
    (committed / first.name).write_text(Record.from_json(record).dumps())
    capsys.readouterr()
    assert main(["job", "--methods", "random", *TINY, "--budget", "120", "--margin", "5", "--done", str(committed),
                 "--out", str(tmp_path / "window"), "--cache-dir", str(board / "cache")]) == 0
    assert "0 run(s) finished, 0 failed, 0 stopped at the deadline, 1 left for the next window; 1 of 2 were " \
           "recorded before" in capsys.readouterr().out
    assert not list((tmp_path / "window").glob("*.json"))


def test_a_run_stopped_after_training_is_carried_and_the_next_window_only_attacks(board, tmp_path, monkeypatch,
                                                                                   capfd):
    """The window ends during a run's attacks: its trained state is packed (one file), and the next window, given
    that folder, resumes it after the training and writes the record an uninterrupted run writes."""
    import torch

    import benchmark.run as run_module
    from benchmark.run import load_protocol_data, run_one
    from benchmark.unfinished import pack_unfinished

    torch.set_num_threads(1)  # as the board's workers (--threads 1): the same numbers
    protocol = _protocol(build_parser().parse_args(["job", "--methods", "random", *TINY, "--budget", "1"]))
    first = board_order(protocol, ["random"], {}, tmp_path / "window1")[0]
    data, pool = load_protocol_data(protocol, device=torch.device("cpu"), data_root=None,
                                    cache_dir=board / "cache")

    def deadline(*args, **kwargs):
        raise KeyboardInterrupt  # what the end of a window does to a worker: the attacks never finish

    monkeypatch.setattr(run_module, "evaluate", deadline)
    with pytest.raises(KeyboardInterrupt):
        run_one(first, protocol=protocol, data=data, pool_indices=pool, cache_dir=board / "cache")
    monkeypatch.undo()
    assert not first.record.exists() and (first.partial / "lr0.checkpoint").exists()
    carried = tmp_path / "out1" / "unfinished"
    stale = carried / "random__elsewhere.tar.gz"  # no run of this board: passed over, and kept
    specs = board_order(protocol, ["random"], {}, tmp_path / "window1")
    assert pack_unfinished(specs, carried, lrs=1, limit=2 ** 24, count=4) == [first]
    assert [p.name for p in carried.iterdir()] == [first.record.stem + ".tar.gz"]
    # in parts of 1,000 bytes it would take more than the 4 files allowed; in one file, more than 1,000 bytes in all
    assert pack_unfinished(specs, tmp_path / "none", lrs=1, limit=1000, count=4) == []
    assert pack_unfinished(specs, tmp_path / "none", lrs=1, limit=2 ** 24, count=4, total=1000) == []
    stale.write_bytes(b"")

    capfd.readouterr()  # the workers are processes of their own: their log reaches only the file descriptors
    assert main(["job", "--methods", "random", *TINY, "--budget", "900", "--margin", "5", "--threads", "1",
                 "--out", str(tmp_path / "window2"), "--cache-dir", str(board / "cache"),
                 "--archive", str(tmp_path / "out2" / "job.tar.gz"), "--unfinished", str(carried)]) == 0
    output = capfd.readouterr()
    assert "resumed (carried from an earlier window): random f0.5 s0 (trained)" in output.out
    assert re.search(r"resumed from lr0\.checkpoint after epoch (\d+) of \1\n", output.err)  # no epoch trained
    name = first.record.name
    assert _comparable(tmp_path / "window2" / name) == _comparable(board / "board" / name)
    assert not (tmp_path / "out2" / "unfinished").exists() or not list((tmp_path / "out2" / "unfinished").iterdir())


def test_a_carried_state_that_is_not_one_stops_the_job_in_one_line(board, tmp_path, capsys):
    protocol = _protocol(build_parser().parse_args(["job", "--methods", "random", *TINY, "--budget", "1"]))
    spec = board_order(protocol, ["random"], {}, tmp_path / "window")[0]
    carried = tmp_path / "unfinished"
    carried.mkdir()
    with tarfile.open(carried / (spec.record.stem + ".tar.gz"), "w:gz") as tar:
        evil = tmp_path / "evil"
        evil.write_text("x")
        tar.add(evil, arcname="../../escape.txt")
    capsys.readouterr()
    assert main(["job", "--methods", "random", *TINY, "--budget", "60", "--out", str(tmp_path / "window"),
                 "--cache-dir", str(board / "cache"), "--unfinished", str(carried)]) == 2
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1 and "not a carried run state" in error and "'../../escape.txt'" in error
    assert not (tmp_path / "escape.txt").exists() and not list(tmp_path.glob("window/*.json"))


def test_a_carried_run_is_expected_to_take_its_attacks_not_its_training(board):
    """A run resumed after its training must not be held back by a training it will not do: at the end of a
    window it may still fit."""
    from benchmark.job import Estimate

    record = Record.parse(sorted((board / "board").glob("random*.json"))[0].read_text())
    estimate = Estimate()
    estimate.add(record)
    whole, carried = estimate.seconds(record.fraction), estimate.seconds(record.fraction, done=1.0)
    assert record.training.seconds > 0
    assert carried == pytest.approx(whole - record.training.seconds)


def test_a_run_stopped_mid_training_is_carried_in_parts_and_the_next_window_resumes_its_epochs(board, tmp_path,
                                                                                            monkeypatch, capfd):
    """A run longer than a window: stopped after its second epoch, its state (with the optimizer's momentum) is packed
    in parts within the per-file limit, and the next window trains only its last epoch and writes the record an
    uninterrupted run writes."""
    import torch

    import benchmark.train as train_module
    from benchmark.run import load_protocol_data, run_one
    from benchmark.unfinished import pack_unfinished, progress

    three = [*TINY, "--epochs", "3", "--seeds", "0"]
    assert main(["job", "--methods", "random", *three, "--budget", "900", "--margin", "5", "--threads", "1",
                 "--out", str(tmp_path / "whole"), "--cache-dir", str(board / "cache")]) == 0
    torch.set_num_threads(1)
    protocol = _protocol(build_parser().parse_args(["job", "--methods", "random", *three, "--budget", "1"]))
    specs = board_order(protocol, ["random"], {}, tmp_path / "window1")
    data, pool = load_protocol_data(protocol, device=torch.device("cpu"), data_root=None, cache_dir=board / "cache")
    write = train_module.write_checkpoint

    def deadline_after_epoch_two(path, state):
        write(path, state)
        if state["epoch"] == 2:
            raise KeyboardInterrupt  # the window ends during the third epoch

    monkeypatch.setattr(train_module, "write_checkpoint", deadline_after_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        run_one(specs[0], protocol=protocol, data=data, pool_indices=pool, cache_dir=board / "cache")
    monkeypatch.undo()
    saved = progress(specs[0], lrs=1)
    total = saved.total  # 3, or more: a small coreset trains more epochs to reach the preset's minimum steps
    assert saved.epochs == (2,) and total >= 3 and saved.done == pytest.approx(2 / total) and saved.seconds > 0
    size = sum(path.stat().st_size for path in specs[0].partial.iterdir())
    limit = size // 3  # the state (gzipped: a little smaller) must be split in two parts or more
    carried = tmp_path / "out1" / "unfinished"
    assert pack_unfinished(specs, carried, lrs=1, limit=limit, count=8) == specs
    parts = sorted(carried.iterdir())
    assert len(parts) >= 2 and all(part.stat().st_size <= limit for part in parts)
    assert all(part.name.startswith(specs[0].record.stem + ".tar.gz.") for part in parts)
    assert pack_unfinished(specs, tmp_path / "few", lrs=1, limit=limit, count=len(parts) - 1) == []  # too few files

    capfd.readouterr()
    assert main(["job", "--methods", "random", *three, "--budget", "900", "--margin", "5", "--threads", "1",
                 "--out", str(tmp_path / "window2"), "--cache-dir", str(board / "cache"),
                 "--archive", str(tmp_path / "out2" / "job.tar.gz"), "--unfinished", str(carried)]) == 0
    output = capfd.readouterr()
    assert f"resumed (carried from an earlier window): random f0.5 s0 (epoch 2 of {total})" in output.out
    assert f"resumed from lr0.checkpoint after epoch 2 of {total}" in output.err
    name = specs[0].record.name
    assert _comparable(tmp_path / "window2" / name) == _comparable(tmp_path / "whole" / name)

    parts[-1].unlink()  # a part that did not come back: the job says so, in one line, and runs nothing
    capfd.readouterr()
    assert main(["job", "--methods", "random", *three, "--budget", "60", "--out", str(tmp_path / "window3"),
                 "--cache-dir", str(board / "cache"), "--unfinished", str(carried)]) == 2
    error = capfd.readouterr().err.strip().splitlines()
    assert len(error) == 1 and f"part {len(parts)} of {len(parts)} is missing" in error[0]


def test_a_run_longer_than_the_window_starts_only_to_be_carried(board, tmp_path, capsys):
    """Committed timings say the run's training takes 5 minutes, the window has 2: it does not start, unless
    --carry-training lets it train its first epochs to be carried."""
    committed = tmp_path / "committed"
    committed.mkdir()
    (first, *_) = sorted((board / "board").glob("random*s0*.json"))
    record = json.loads(first.read_text())
    record["training"]["seconds"] = 300.0
    (committed / first.name).write_text(Record.from_json(record).dumps())
    ten = [*TINY, "--epochs", "10", "--seeds", "0"]  # another protocol: its run is not on the committed board
    common = ["job", "--methods", "random", *ten, "--budget", "120", "--margin", "5", "--done", str(committed),
              "--cache-dir", str(board / "cache"), "--threads", "1"]
    capsys.readouterr()
    assert main([*common, "--out", str(tmp_path / "plain")]) == 0
    assert "0 run(s) finished, 0 failed, 0 stopped at the deadline, 1 left" in capsys.readouterr().out
    assert main([*common, "--out", str(tmp_path / "carry"), "--unfinished", str(tmp_path / "none"),
                 "--carry-training", "1"]) == 0
    assert "1 run(s) finished" in capsys.readouterr().out  # on this tiny board it even finished
    assert main([*common, "--out", str(tmp_path / "x"), "--carry-training", "1"]) == 2
    assert "--carry-training needs --unfinished" in capsys.readouterr().err


def test_after_a_window_the_records_join_the_board_and_the_carried_runs_are_replaced(board, tmp_path):
    """scripts/after_gpu_window.py on what a call returns: the archive's records, selections and galleries go on
    the board (not the weights), validated; the carried runs become exactly the returned ones; a second pass adds
    nothing; a record on the board with other content is not overwritten; without an archive nothing changes."""
    import shutil
    import subprocess
    import sys

    script = Path(__file__).resolve().parent.parent / "scripts" / "after_gpu_window.py"
    returned, board_dir, carried = tmp_path / "files", tmp_path / "standard", tmp_path / "carried"
    (returned / "unfinished").mkdir(parents=True)
    shutil.copyfile(board / "board" / "job.tar.gz", returned / "standard-job.tar.gz")
    (returned / "unfinished" / "cal__x.tar.gz").write_bytes(b"new")
    carried.mkdir()
    (carried / "random__old.tar.gz").write_bytes(b"old")

    def after() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(script), str(returned), "--board", str(board_dir), "--carried",
                               str(carried), "--no-restore"], capture_output=True, text=True, timeout=300)

    done = after()
    assert done.returncode == 0, done.stderr
    records = sorted(path.name for path in (board / "board").glob("*.json"))
    assert sorted(path.name for path in board_dir.glob("*.json")) == records and len(records) == 4
    assert len(list(board_dir.glob("*.selection.npz"))) == 4 and not list(board_dir.glob("*.safetensors"))
    assert "(4 record(s))" in done.stdout and "4 record(s) valid" in done.stdout  # validate's own line
    assert [path.name for path in carried.iterdir()] == ["cal__x.tar.gz"]
    assert "0 new file(s)" in after().stdout  # again: nothing new, nothing rewritten

    (board_dir / records[0]).write_text((board_dir / records[0]).read_text().replace('"seed": 0', '"seed": 7'))
    done = after()
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1 and "not overwritten" in done.stderr

    (returned / "standard-job.tar.gz").unlink()
    (carried / "keep.tar.gz").write_bytes(b"k")
    done = after()
    assert done.returncode == 2 and "nothing is recorded" in done.stderr and (carried / "keep.tar.gz").exists()
