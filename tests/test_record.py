"""The record model: every published record reads and writes back byte for byte, old versions are read, eps has
one unit and one spelling, and a record that disagrees with itself is refused."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from benchmark.record import (
    Record,
    RecordError,
    budget_for,
    eps_text,
    pack_mask,
    pack_radii,
    parse_eps,
    robust_beyond,
    unpack_mask,
    unpack_radii,
)
from benchmark.schema import check_record
from tests.records import make_record, make_record_v2, make_record_v4, make_record_v5

REPO = Path(__file__).resolve().parent.parent
PUBLISHED = sorted((REPO / "submissions").rglob("*.json"))


def test_every_published_record_reads_and_writes_back_byte_for_byte():
    assert len(PUBLISHED) >= 100
    for path in PUBLISHED:
        text = path.read_text()
        record = Record.parse(text)
        assert record.dumps() == text, path
        assert record.problems() == [], path


@pytest.mark.parametrize("make", [make_record, make_record_v2])
def test_both_versions_read_into_one_model(make):
    data = make()
    record = Record.from_json(data)
    assert record.to_json() == data
    assert record.version == int(data["schema"][-1])
    assert set(record.worst_linf()) == set(data["protocol"]["eps"])  # version 1: FGSM stands for the worst case


def test_unknown_and_missing_fields_are_refused_with_their_path():
    data = make_record_v2()
    data["training"]["sneaky"] = 1
    with pytest.raises(RecordError, match=r"training\.sneaky: is not a field"):
        Record.from_json(data)
    data = make_record_v2()
    del data["attacks"][0]["params"]
    with pytest.raises(RecordError, match=r"attacks\.0: 'params' is a required property"):
        Record.from_json(data)


def test_a_record_refuses_to_be_written_when_its_schema_would_refuse_it():
    record = Record.from_json(make_record_v2())
    broken = dataclasses.replace(record, clean_accuracy=1.5)
    with pytest.raises(RecordError, match="clean_accuracy"):
        broken.dumps()


def test_eps_is_stored_in_pixel_units_and_written_as_a_fraction_of_255():
    assert parse_eps("8/255") == 8 / 255 and parse_eps("8") == 8 / 255 and parse_eps("0") == 0
    assert parse_eps("0.5/255") == 0.5 / 255
    assert parse_eps("0.5", "L2") == 0.5 and parse_eps("64/255", "L2") == 64 / 255
    assert eps_text(8 / 255) == "8/255" and eps_text(0.5, "L2") == "0.5 (L2)"
    for text in ("0.031", "0.5"):
        with pytest.raises(ValueError, match="ambiguous"):
            parse_eps(text)  # 8/255 or 0.031/255? refused, with both spellings offered
    for text in ("-1", "nan", "inf", "1/0", "x/255", ""):
        with pytest.raises(ValueError):
            parse_eps(text)


def test_masks_round_trip_and_refuse_the_wrong_size():
    bits = np.random.default_rng(0).random(13) < 0.5
    assert np.array_equal(unpack_mask(pack_mask(bits), 13), bits)
    with pytest.raises(ValueError):
        unpack_mask(pack_mask(bits), 20)
    with pytest.raises(ValueError):
        unpack_mask(pack_mask(np.ones(16, dtype=bool)), 13)  # bits set past the end


def test_the_budget_is_defined_once():
    assert budget_for(1800, 0.1) == 180 and budget_for(10, 0.001) == 1 and budget_for(10, 1.0) == 10


def _forged(change) -> list[str]:
    data = make_record_v2(clean=0.5, test_size=200)
    change(data)
    return check_record(data, "x.json")


def test_a_mask_robust_where_the_image_is_wrong_when_clean_is_refused():
    size = 200

    def shift(data):
        # same count as before, but the robust images are the last ones, which are wrong when clean
        attack = data["attacks"][0]
        count = round(attack["accuracy"] * size)
        bits = np.zeros(size, dtype=bool)
        bits[size - count:] = True
        attack["robust"] = pack_mask(bits)

    problems = _forged(shift)
    assert any("attacks[0].robust" in p and "wrong when clean" in p for p in problems), problems


def test_a_worst_case_that_is_not_the_and_of_its_attacks_is_refused():
    def shuffle(data):
        worst = data["worst_case"][0]
        bits = unpack_mask(worst["robust"], 200)
        worst["robust"] = pack_mask(np.roll(bits, 1))  # same count, other images

    problems = _forged(shuffle)
    assert any("worst_case[0].robust" in p for p in problems), problems

    def rename(data):
        data["worst_case"][0]["attacks"] = ["fgsm"]  # pgd ran at that eps too

    problems = _forged(rename)
    assert any("worst_case[0].attacks" in p for p in problems), problems


def test_the_helper_records_are_consistent():
    assert _forged(lambda data: None) == []
    assert json.loads(Record.from_json(make_record_v2()).dumps()) == make_record_v2()


def test_the_current_schema_declares_every_field_the_record_classes_write():
    """Version 3's and 4's objects are closed (no undeclared key), so every field a class writes must be declared, and
    nothing is declared that no class writes."""
    import benchmark.record as module
    from benchmark.record import SCHEMA, schema_file

    schema = json.loads(schema_file(int(SCHEMA.rsplit("/", 1)[1])).read_text())

    def resolve(node):
        while "$ref" in node:
            node = schema["$defs"][node["$ref"].split("/")[-1]]
        return node

    attack = resolve({"$ref": "#/$defs/attack"})
    protocol = resolve({"$ref": "#/$defs/protocol"})
    parts = {module.Record: schema, module.ProtocolSettings: protocol,
             module.AttackSpec: protocol["properties"]["attacks"]["items"],
             module.Selection: schema["properties"]["selection"], module.Training: schema["properties"]["training"],
             module.LrTrial: schema["properties"]["training"]["properties"]["lr_grid"]["items"],
             module.ModelWeights: schema["properties"]["model_weights"],
             module.Evaluation: schema["properties"]["evaluation"], module.AttackResult: attack,
             module.CrossCheck: attack["properties"]["cross_check"],
             module.WorstCase: schema["properties"]["worst_case"]["items"],
             module.Check: schema["properties"]["checks"]["items"], module.Flag: schema["properties"]["flags"]["items"],
             module.Gallery: schema["properties"]["gallery"],
             module.Reevaluation: schema["properties"]["reevaluations"]["items"],
             module.AttackFailure: schema["properties"]["attack_failures"]["items"],
             module.Environment: schema["properties"]["environment"],
             module.TrainingSpec: schema["$defs"]["training_method"],
             module.EpochCheck: schema["properties"]["training"]["properties"]["monitor"]["items"],
             module.FullTest: schema["properties"]["evaluation"]["properties"]["full_test"]}
    version_1_only = {"inhouse_accuracy", "max_abs_diff"}
    for part, node in parts.items():
        fields = {f.name for f in dataclasses.fields(part)} - version_1_only
        assert set(node["properties"]) == fields, part.__name__
        assert node["additionalProperties"] is False, part.__name__


FGSM_RS = {"name": "fgsm-rs", "params": {"eps": 4 / 255, "rel_step": 1.25, "random_start": True}}


def test_an_adversarially_trained_record_states_its_training_and_reads_back():
    data = make_record_v4(training=FGSM_RS)
    record = Record.from_json(data)
    assert record.training.method.name == "fgsm-rs" and record.protocol.training == record.training.method
    assert [e.epoch for e in record.training.monitor] == [1, 2, 3]
    assert record.problems() == [] and record.to_json() == data
    # standard training writes none of it: the settings of standard runs (their file names) did not change
    assert "training" not in make_record_v4()["protocol"] and Record.from_json(make_record_v4()).problems() == []


def test_a_training_method_other_than_the_protocols_is_refused():
    data = make_record_v4(training=FGSM_RS)
    data["training"]["method"] = {"name": "pgd-at", "params": {"eps": 8 / 255, "steps": 10, "rel_step": 2.5}}
    assert any(where == "training.method" for where, _ in Record.from_json(data).problems())


def test_a_guard_that_shows_catastrophic_overfitting_needs_the_flag():
    collapse = [{"epoch": 1, "clean": 0.5, "fgsm": 0.4, "pgd": 0.35}, {"epoch": 2, "clean": 0.6, "fgsm": 0.5,
                                                                       "pgd": 0.05}]
    data = make_record_v4(training=FGSM_RS, monitor=collapse)
    assert any(where == "flags" and "epoch 2" in message for where, message in Record.from_json(data).problems())
    data["flags"] = [{"code": "catastrophic-overfitting", "detail": "epoch 2: ..."}]
    assert Record.from_json(data).problems() == []


def test_radii_pack_k_over_255_exactly_and_keep_none_found_and_wrong_clean_apart():
    radii = np.array([0.0, 1 / 255, 2 / 255, 8 / 255, 16 / 255, np.inf, 0.5, 1.0])
    back = unpack_radii(pack_radii(radii), len(radii))
    assert np.array_equal(back[:6], radii[:6])  # every k/255 is a whole number of units: exact
    assert back[6] >= 0.5 and back[6] - 0.5 < 1 / 65535  # others round up, never below what was found
    assert back[7] == 1.0 - 1 / 65535 or back[7] == 1.0  # 1.0 itself is the sentinel's neighbour, not "none"
    assert robust_beyond(back, 2 / 255).tolist() == [False, False, False, True, True, True, True, True]
    with pytest.raises(ValueError, match="one radius per test image"):
        unpack_radii(pack_radii(radii), len(radii) + 1)


def test_a_version_5_record_reads_back_and_its_board_clean_accuracy_is_the_whole_test_splits():
    data = make_record_v5(clean=0.5, full_test=(10000, 4321))
    record = Record.from_json(data)
    assert record.problems() == [] and record.to_json() == data
    assert record.board_clean_accuracy == 0.4321 and record.clean_accuracy == 0.5
    assert Record.from_json(make_record_v5(full_test=None)).board_clean_accuracy == record.clean_accuracy
    radii = record.evaluation.radii_array()
    for worst in record.worst_case:  # the radii reproduce the worst case, eps by eps
        assert np.array_equal(record.robust_mask(worst), robust_beyond(radii, worst.eps))


def test_radii_that_contradict_the_worst_case_or_the_clean_mask_are_refused():
    record = Record.from_json(make_record_v5())
    radii = record.evaluation.radii_array()
    clean, worst = record.clean_mask(), record.robust_mask(record.worst_case[0])
    fooled = np.flatnonzero(clean & ~worst)[0]
    for position, value, words in ((fooled, np.inf, "have a radius above it"),
                                   (np.flatnonzero(~clean)[0], 1 / 255, "wrong when clean have a radius")):
        changed = radii.copy()
        changed[position] = value
        forged = dataclasses.replace(record, evaluation=dataclasses.replace(record.evaluation,
                                                                            radii=pack_radii(changed)))
        assert any(where == "evaluation.radii" and words in message for where, message in forged.problems()), words
    robust = np.flatnonzero(worst)[0]  # a radius within eps where the worst case says robust: the mask is wrong
    changed = radii.copy()
    changed[robust] = record.worst_case[0].eps
    forged = dataclasses.replace(record, evaluation=dataclasses.replace(record.evaluation, radii=pack_radii(changed)))
    assert any(where == "worst_case[0].robust" for where, _ in forged.problems())
