"""The sweep's parts in-process: the grid, what counts as done, the dry run's report and the progress view."""

import json
import logging

import numpy as np
import pytest

from benchmark.errors import UserError
from benchmark.plan import dry_run_report, expand_grid, method_params, parse_methods, prepare_pending
from benchmark.progress import Progress, format_duration
from benchmark.protocol import preset
from benchmark.storage import write_arrays_sealed, write_checkpoint

PROTOCOL = preset("smoke").with_overrides(seeds=(0, 1), fractions=(0.1, 0.5))


def test_all_means_every_registered_method_and_names_are_checked():
    assert {"random", "cal", "full", "grand", "graphcut"} <= set(parse_methods("all"))
    assert parse_methods(" cal, random ") == ["cal", "random"]
    with pytest.raises(UserError, match="unknown method 'nope'"):
        parse_methods("cal,nope")


def test_params_go_to_the_method_they_name():
    assert method_params(["cal", "grand"], [("grand.repeats", "3"), ("cal.k", "5")]) == {
        "cal": {"k": "5"}, "grand": {"repeats": "3"}}
    assert method_params(["cal"], [("k", "5")]) == {"cal": {"k": "5"}}  # one method: no prefix needed
    with pytest.raises(UserError, match="METHOD one of cal, grand"):
        method_params(["cal", "grand"], [("k", "5")])


def test_the_grid_is_seed_major_with_whole_pool_methods_once_per_seed(tmp_path):
    specs = expand_grid(PROTOCOL, ["cal", "full", "random"], {"random": {}}, tmp_path)
    assert [(s.seed, s.method, s.fraction) for s in specs] == [
        (0, "cal", 0.1), (0, "cal", 0.5), (0, "full", 1.0), (0, "random", 0.1), (0, "random", 0.5),
        (1, "cal", 0.1), (1, "cal", 0.5), (1, "full", 1.0), (1, "random", 0.1), (1, "random", 0.5)]
    assert [s.uses_proxy for s in specs[:5]] == [True, True, False, False, False]
    assert len({s.record for s in specs}) == 10 and all(s.record.parent == tmp_path for s in specs)
    # the preset's defaults reach the record key; a --param changes it
    grand = expand_grid(PROTOCOL, ["grand"], {}, tmp_path)[0]
    assert grand.params["repeats"] == 2
    other = expand_grid(PROTOCOL, ["grand"], {"grand": {"repeats": "3"}}, tmp_path)[0]
    assert other.params["repeats"] == 3 and other.record != grand.record


def test_done_runs_are_skipped_their_leftovers_removed_and_force_redoes_everything(tmp_path):
    specs = expand_grid(PROTOCOL, ["random"], {}, tmp_path)
    done_spec, killed_spec = specs[0], specs[1]
    done = {done_spec.record: {}}
    for spec in (done_spec, killed_spec):  # a leftover of a finished run, and a killed run's state
        spec.partial.mkdir(parents=True)
        (spec.partial / "selection.npz").write_bytes(b"x")
    assert prepare_pending(specs, done, force=False) == specs[1:]
    assert not done_spec.partial.exists() and killed_spec.partial.exists()  # the killed run will resume
    assert prepare_pending(specs, done, force=True) == specs
    assert not killed_spec.partial.exists()  # --force starts from scratch


def test_dry_run_says_what_is_done_partly_done_and_the_proxies_to_train(tmp_path):
    specs = expand_grid(PROTOCOL, ["cal", "full"], {}, tmp_path)
    done = {specs[0].record: {}}
    partial = specs[1]
    partial.partial.mkdir(parents=True)
    write_arrays_sealed(partial.partial / "selection.sealed", indices=np.arange(3), seconds=np.float64(1))
    write_checkpoint(partial.partial / "lr0.checkpoint", {"epoch": 2})
    pending = prepare_pending(specs, done, force=False)
    lines = dry_run_report(specs, done, pending, protocol=PROTOCOL, methods=["cal", "full"], out=tmp_path,
                           cached_proxy_seeds={1})
    text = "\n".join(lines)
    assert "sweep of 6 run(s): 2 method(s) x 2 fraction(s) x 2 seed(s) (full: one run per seed)" in text
    assert "1 done, 1 partly done (resume where they were), 4 not started" in text
    assert "proxies: 1 to train, 1 in the cache (one per seed, shared by cal)" in text
    assert f"partial (selected, lr 0.05 at epoch 2/{PROTOCOL.epochs})" in text
    assert sum(line.startswith("to run") for line in lines) == 4
    grand = expand_grid(PROTOCOL, ["grand"], {}, tmp_path)  # the smoke preset's 2 proxies per seed
    text = "\n".join(dry_run_report(grand, {}, grand, protocol=PROTOCOL, methods=["grand"], out=tmp_path,
                                    cached_proxy_seeds=set()))
    assert "proxies: none to train" in text and "grand trains 2 proxies of its own per seed: up to 4 for the 2" in text


def _record(*, selection: tuple[float, float], training: float, evaluation: float | None):
    """A finished run's record with these timings (seconds): selection (selector, proxy training), training
    and evaluation (None: a record without evaluation timings)."""
    import dataclasses

    from benchmark.record import EvaluationSeconds, Record
    from tests.records import make_record_v2

    record = Record.from_json(make_record_v2())
    return dataclasses.replace(
        record, selection=dataclasses.replace(record.selection, seconds=selection[0],
                                              proxy_training_seconds=selection[1]),
        training=dataclasses.replace(record.training, seconds=training),
        evaluation=dataclasses.replace(record.evaluation, seconds=None if evaluation is None
                                       else EvaluationSeconds(total=evaluation)))


def test_progress_counts_runs_and_estimates_time_left_from_the_work_done(monkeypatch):
    clock = [100.0]
    monkeypatch.setattr("benchmark.progress.time.monotonic", lambda: clock[0])
    specs = expand_grid(PROTOCOL, ["random"], {}, __import__("pathlib").Path("/nowhere"))  # fractions .1 .5 .1 .5
    progress = Progress(total=5, done_before=1, pending=specs)
    clock[0] += 30  # loading the data: not part of the pace
    progress.start(specs[0])
    assert progress.summary() == ("1/5 done, 1 running, 3 left, time left estimated once a run has finished "
                                  "(proxy training not counted)")
    clock[0] += 40  # 40 s, 30 of them training the shared proxy; a record without timings: 10 s a run, 3 left
    progress.finish(specs[0], _record(selection=(0.25, 30.0), training=3.0, evaluation=None))
    progress.start(specs[1])
    assert progress.summary() == "2/5 done, 1 running, 2 left, about 30s left (plus any proxy training)"
    progress.finish(specs[1], None, "broken")
    assert progress.failures == [(specs[1], "broken")] and "1 failed" in progress.summary()


def test_the_time_left_comes_from_the_records_timings_not_from_the_wait_in_a_queue(monkeypatch, caplog):
    # the Ray executor queues every run at once; training scales with the fraction, the attacks do not
    clock = [0.0]
    monkeypatch.setattr("benchmark.progress.time.monotonic", lambda: clock[0])
    monkeypatch.setattr("benchmark.progress.interval", lambda: 0.0)
    specs = expand_grid(PROTOCOL, ["random"], {}, __import__("pathlib").Path("/nowhere"))  # fractions .1 .5 .1 .5
    progress = Progress(total=4, done_before=0, pending=specs, slots=2)
    for spec in specs:
        progress.start(spec)
    clock[0] += 5000  # an hour and more in the queue and running: not what the run cost
    progress.finish(specs[0], _record(selection=(2.0, 50.0), training=10.0, evaluation=98.0))
    # left: training 100 s per unit fraction x 1.1 = 110 s, the rest 100 s x 3 runs = 300 s; two at once
    assert progress.eta() == "about 3m25s left (plus any proxy training)"
    with caplog.at_level(logging.INFO, logger="benchmark"):
        progress.refresh()
    # queued runs are not listed as running
    assert "1/4 done, 2 running, 1 left" in caplog.text and specs[1].record.stem not in caplog.text


def test_durations_read_naturally():
    assert [format_duration(s) for s in (42, 125, 3 * 3600 + 7 * 60)] == ["42s", "2m05s", "3h07m"]


def test_records_from_a_sweep_are_named_like_runs_of_the_run_verb(tmp_path):
    # run and sweep write the same files, so one resumes the other
    from benchmark.run import run_spec

    spec = expand_grid(PROTOCOL, ["cal"], {}, tmp_path)[0]
    assert spec.record == run_spec(method="cal", params={}, protocol=PROTOCOL, fraction=0.1, seed=0,
                                   out=tmp_path).record
    assert json.dumps(spec.params)  # parameters are plain JSON values
