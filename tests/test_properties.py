"""Properties of records that `validate` accepts, over generated (hostile) records: they agree with themselves
image by image, and their export is inert in a spreadsheet and round-trips."""

import csv
import json

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmark.export import FORMULA_STARTS, export
from benchmark.record import pack_mask, unpack_mask
from benchmark.schema import check_record
from tests.records import make_record_v3, write_records

SIZE = 200  # test images of the helper's records
MASKS = ["evaluation.clean_correct", "attacks.0.robust", "attacks.6.robust", "worst_case.1.robust"]


def _locate(record: dict, where: str):
    *path, key = [int(part) if part.isdigit() else part for part in where.split(".")]
    node = record
    for part in path:
        node = node[part]
    return node, key


@settings(max_examples=40, deadline=None, derandomize=True)
@given(where=st.sampled_from(MASKS), flips=st.lists(st.integers(0, SIZE - 1), min_size=1, max_size=4),
       keep_count=st.booleans())
def test_an_accepted_record_agrees_with_itself_image_by_image(where, flips, keep_count):
    """Bits flipped in one mask (with the accuracy fixed up or not): whatever `validate` accepts has every
    attack's robust images right when clean, and each worst case the AND of the attacks at its eps."""
    record = make_record_v3(clean=0.5, test_size=SIZE)
    node, key = _locate(record, where)
    bits = unpack_mask(node[key], SIZE)
    for i in flips:
        bits[i] = not bits[i]
    node[key] = pack_mask(bits)
    if keep_count:  # a forger keeps the count right, so only the images tell
        if where.startswith("evaluation"):
            record["clean_accuracy"] = bits.mean()
        else:
            node["accuracy"] = bits.mean()
    if check_record(record, "x.json"):
        return
    clean = unpack_mask(record["evaluation"]["clean_correct"], SIZE)
    assert abs(clean.mean() - record["clean_accuracy"]) < 1e-9
    masks = {}
    for attack in record["attacks"]:
        robust = unpack_mask(attack["robust"], SIZE)
        assert not (robust & ~clean).any() and abs(robust.mean() - attack["accuracy"]) < 1e-9
        masks.setdefault(attack["eps"], []).append(robust)
    for worst in record["worst_case"]:
        expected = clean.copy()
        for robust in masks[worst["eps"]]:
            expected &= robust
        assert np.array_equal(unpack_mask(worst["robust"], SIZE), expected)


FORMULA_TEXT = st.builds(lambda start, rest: start + rest, st.sampled_from(list(FORMULA_STARTS)),
                         st.sampled_from(["SUM(A1:A9)", "HYPERLINK(\"http://x\")", "1+1", "cmd|' /C calc'!A0"]))


@settings(max_examples=25, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(field=st.sampled_from(["paper", "paper_url", "flag", "param"]), text=FORMULA_TEXT)
def test_an_accepted_record_exports_inert_and_round_trips(tmp_path_factory, field, text):
    folder = tmp_path_factory.mktemp("export")
    record = make_record_v3("random", test_size=SIZE)
    if field == "flag":
        record["flags"] = [{"code": "few-steps", "detail": text}]
    elif field == "param":
        record["method_params"] = {"note": text}
    else:
        record[field] = text
    write_records(folder / "in", [record])
    if check_record(json.loads(json.dumps(record)), "x.json"):
        return
    rows = export([folder / "in"], folder / "out.csv")
    with open(folder / "out.csv", newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == rows == 1 + len(record["attacks"]) + len(record["worst_case"])
    for row in table:
        for value in row.values():
            assert not value.startswith(FORMULA_STARTS), value
    assert {row["measure"] for row in table} == {"clean", "attack", "worst_case"}
    assert float(table[0]["accuracy"]) == record["clean_accuracy"]
