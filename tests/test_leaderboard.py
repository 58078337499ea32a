"""The leaderboard: aggregation checked against numbers computed by hand (means, intervals, p-values, Holm's
adjustment), the pages (Markdown and HTML) for version-1 and version-2 records, escaping of untrusted record
strings, the inline plots and adversarial examples, the published presets, and the all-or-nothing writing."""

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from benchmark.leaderboard.aggregate import WORST, build_groups, mean_std, table1
from benchmark.leaderboard.render import MARKER, build_site, markdown_escape, safe_url
from benchmark.leaderboard.statistics import holm
from benchmark.leaderboard.view import caveats

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.schema import SchemaError, load_records
from tests.conftest import REPO
from tests.records import (
    EPS,
    PROTOCOL,
    make_record,
    make_record_v2,
    make_record_v4,
    make_record_v5,
    make_record_v6,
    write_records,
)

T_975_2DF = 4.302652729749462  # t distribution, 97.5 % quantile, 2 degrees of freedom (from a t table)
MINE_URL = "https://example.org/mine"


def _fgsm(clean):
    return [round(clean - d, 6) for d in (0.1, 0.2, 0.3, 0.4, 0.5)]


def hand_records() -> list[dict]:
    """Three seeds of random and `mine`, three of `meh`, one of `one`, and `full` for seeds 0 and 1 only."""
    records = []
    for seed, clean in enumerate([0.60, 0.62, 0.64]):
        records.append(make_record("random", seed=seed, clean=clean, fgsm=_fgsm(clean), seconds=0.1))
    for seed, clean in enumerate([0.65, 0.66, 0.70]):
        records.append(make_record("mine", seed=seed, clean=clean, fgsm=_fgsm(clean), seconds=[1.0, 2.0, 6.0][seed],
                                   url=MINE_URL))
    for seed, clean in enumerate([0.61, 0.60, 0.66]):
        records.append(make_record("meh", seed=seed, clean=clean, fgsm=_fgsm(clean)))
    records.append(make_record("one", seed=0, clean=0.50, fgsm=_fgsm(0.5)))
    records.append(make_record("random", fraction=0.5, seed=0, clean=0.80, fgsm=_fgsm(0.8)))
    records.append(make_record("mine", fraction=0.5, seed=0, clean=0.82, fgsm=_fgsm(0.82), url=MINE_URL))
    for seed, clean in enumerate([0.90, 0.95]):
        records.append(make_record("full", fraction=1.0, seed=seed, clean=clean, fgsm=_fgsm(clean)))
    return records


@pytest.fixture
def groups(tmp_path):
    write_records(tmp_path / "records", hand_records())
    return build_groups(load_records([tmp_path / "records"]))


def _row(group, label, fraction=0.1):
    rows = group.summary[(group.summary["label"] == label) & (group.summary["fraction"] == fraction)]
    assert len(rows) == 1
    return rows.iloc[0]


def test_means_and_sample_stds_by_hand(groups):
    (group,) = groups
    mine = _row(group, "mine")
    assert mine["n"] == 3 and mine["seeds"] == [0, 1, 2]
    assert mine["clean_mean"] == pytest.approx(0.67)
    # deviations -0.02, -0.01, 0.03: squares sum to 0.0014, over n - 1 = 2
    assert mine["clean_std"] == pytest.approx(math.sqrt(0.0014 / 2))
    # FGSM at eps index 2 is clean - 0.3 for every seed: same std, mean shifted
    mean, std = mine["measures"][("fgsm", "Linf", EPS[2])]
    assert mean == pytest.approx(0.37) and std == pytest.approx(math.sqrt(0.0014 / 2))
    # version 1: the worst case is FGSM itself; its mean over eps is clean - 0.3 per run
    assert mine["measures"][(WORST, "Linf", EPS[2])][0] == pytest.approx(0.37)
    assert mine["worst_mean_mean"] == pytest.approx(0.37)
    assert mine["headline_mean"] == pytest.approx(0.67 - 0.2)  # version-1 headline: 2/255, the 2nd eps
    assert mine["select_seconds_mean"] == pytest.approx(3.0)
    assert mine["select_seconds_std"] == pytest.approx(math.sqrt((4 + 1 + 9) / 2))
    one = _row(group, "one")
    assert one["n"] == 1 and one["clean_mean"] == pytest.approx(0.5) and math.isnan(one["clean_std"])


def test_relative_to_full_per_seed_with_fallback_to_the_full_mean(groups):
    (group,) = groups
    mine = _row(group, "mine")
    # seeds 0 and 1 have their own full run; seed 2 has none and uses the full mean (0.90 + 0.95) / 2
    expected = [0.65 / 0.90, 0.66 / 0.95, 0.70 / 0.925]
    assert mine["relative_mean"] == pytest.approx(sum(expected) / 3)
    assert mine["relative_fallback"]
    random_half = _row(group, "random", 0.5)  # seed 0 only: its own full run
    assert random_half["relative_mean"] == pytest.approx(0.80 / 0.90) and not random_half["relative_fallback"]


def test_paired_comparison_with_random_by_hand(groups):
    (group,) = groups
    # mine - random per seed: 0.05, 0.04, 0.06 -> mean 0.05, sample sd 0.01
    verdict = _row(group, "mine")["vs_random_clean"]
    paired = verdict.comparison
    half = T_975_2DF * 0.01 / math.sqrt(3)
    assert (paired.n, paired.mean) == (3, pytest.approx(0.05))
    assert (paired.low, paired.high) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    # t = 0.05 / (0.01 / sqrt 3) = 8.660; two-sided p with 2 degrees of freedom = 1 - t / sqrt(t^2 + 2)
    t = 0.05 / (0.01 / math.sqrt(3))
    assert paired.p == pytest.approx(1 - t / math.sqrt(t * t + 2))
    # meh - random: 0.01, -0.02, 0.02 -> mean 1/300, sd sqrt(((2/3)^2 + (7/3)^2 + (5/3)^2) / 2) / 100
    meh = _row(group, "meh")["vs_random_clean"]
    sd = math.sqrt(((2 / 3) ** 2 + (7 / 3) ** 2 + (5 / 3) ** 2) / 2) / 100
    assert meh.comparison.mean == pytest.approx(1 / 300)
    assert meh.comparison.low == pytest.approx(1 / 300 - T_975_2DF * sd / math.sqrt(3))
    # Holm over the fraction's clean comparisons (mine, meh and one, which has no p-value): m = 2 tested
    assert verdict.p_holm == pytest.approx(min(1, 2 * paired.p)) and verdict.kind == "better"
    assert meh.p_holm == pytest.approx(max(2 * paired.p, meh.comparison.p))
    # three seeds in a family of three detect only large differences: meh's is not resolved, not "no difference"
    assert meh.kind == "not resolved" and meh.margin > 0.05 and "could detect" in meh.text
    # one pair: a mean difference but no interval, no verdict
    one = _row(group, "one")["vs_random_clean"]
    assert one.comparison.n == 1 and one.comparison.mean == pytest.approx(-0.10) and one.kind == "no comparison"
    # random against itself is no comparison; full has no random run at fraction 1.0
    assert _row(group, "random")["vs_random_clean"] is None
    assert _row(group, "full", 1.0)["vs_random_clean"].comparison.n == 0


def test_holm_by_hand():
    # sorted 0.01, 0.02, 0.04 with m = 3: 0.03, 0.04, 0.04 (the running maximum); NaN stays out
    adjusted = holm([0.04, math.nan, 0.01, 0.02])
    assert adjusted[0] == pytest.approx(0.04) and math.isnan(adjusted[1])
    assert adjusted[2] == pytest.approx(0.03) and adjusted[3] == pytest.approx(0.04)
    assert holm([0.5, 0.9]) == [pytest.approx(1.0), pytest.approx(1.0)]


def test_mean_std_edge_cases():
    assert math.isnan(mean_std([0.3])[1]) and mean_std([0.3])[0] == 0.3
    assert mean_std([0.1, 0.3]) == (pytest.approx(0.2), pytest.approx(math.sqrt(0.02)))


def test_table1_rows_methods_columns_fractions(groups):
    table = table1(groups[0].summary)
    assert list(table.columns) == [0.1, 0.5, 1.0]
    assert list(table.index) == ["random", "meh", "mine", "one", "full"]  # random first, full last
    mean, std, n = table.loc["mine", 0.1]
    assert (mean, std, n) == (pytest.approx(0.67), pytest.approx(math.sqrt(0.0007)), 3)
    assert table.loc["meh", 0.5] is None and table.loc["full", 1.0][2] == 2


def _build(root: Path) -> tuple[Path, list[Path]]:
    paths = write_records(root / "submissions", hand_records())
    build_site([root / "submissions"], root / "site", include_unpublished=True)
    return root / "site", paths


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """One site shared by the tests that only read it."""
    return _build(tmp_path_factory.mktemp("shared"))


def test_site_files_and_record_copies(site):
    out, paths = site
    html = (out / "index.html").read_text()
    assert (out / "leaderboard.md").is_file() and (out / MARKER).is_file()
    links = re.findall(r'href="(records/[^"]+)"', html)
    assert len(set(links)) == len(paths)
    for link in links:  # every linked record exists next to the page and is the submitted file, byte for byte
        copy = out / link
        assert json.loads(copy.read_text())["schema"] == "coreset-bench/run/1"
    assert sorted(p.read_bytes() for p in (out / "records").iterdir()) == sorted(p.read_bytes() for p in paths)


def test_page_shows_numbers_from_the_records(site):
    out, _ = site
    html = (out / "index.html").read_text()
    md = (out / "leaderboard.md").read_text()
    std = 100 * math.sqrt(0.0007)
    assert f"67.00 ± {std:.2f}" in html and f"67.00 ± {std:.2f}" in md
    half = 100 * T_975_2DF * 0.01 / math.sqrt(3)
    assert f"+5.00 [{5 - half:+.2f}, {5 + half:+.2f}]" in html
    assert "-10.00 (1 pair: no interval)" in html and "50.00 ± n/a" in html
    assert 'data-value="67.0"' in html  # the sortable value is a plain number
    # protocol, dataset, scale and version are stated, and the page says these are FGSM-only records
    for text in ("smoke", "digits", "pool size 1000", "mobilenetv2_035", "4 epochs", "coreset-bench 0.1.0",
                 "1, 2, 4, 8, 16 /255", "schema 1: FGSM only", "Version 1 records: FGSM alone"):
        assert text in html, text
    assert f'<a href="{MINE_URL}" rel="noopener noreferrer"' in html


def test_plots_are_inline_deterministic_svg(site, tmp_path):
    out, _ = site
    html = (out / "index.html").read_text()
    every = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    svgs = [svg for svg in every if "accuracy against eps" in svg]
    assert len(svgs) == 4  # fractions 0.1 and 0.5, each the worst case and FGSM; full is a line, not a row
    scatters = [svg for svg in every if "robust against clean accuracy" in svg]
    assert len(scatters) + len(svgs) == len(every) and len(scatters) >= 1
    assert all(f"-m{0}-dots" in svg for svg in scatters)  # Random's points, which the checkboxes hide too
    assert "fraction 0.1</text>" in svgs[0] and "fraction 0.5</text>" in svgs[2]
    labels = ["random", "meh", "mine", "one", "full"]  # the legend order (table 1's)
    for svg in svgs:
        assert svg.count("<path") > 10 and f"-m{labels.index('full')}-line" in svg
    assert f"-m{labels.index('mine')}-line" in svgs[2] and f"-m{labels.index('meh')}-line" not in svgs[2]
    assert html.count('data-method-index="') == len(labels)  # one checkbox per line
    assert "<?xml" not in html and "<dc:date>" not in "".join(svgs)
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # no clash between the plots' ids and the page's
    for reference in re.findall(r"url\(#([^)]+)\)", "".join(every)):
        assert f'id="{reference}"' in html
    # no external resources: the page works offline
    assert not re.search(r'(src|href)="(https?:)?//(?!example\.org)', html)
    assert "<link" not in html and "@import" not in html
    # a second build gives the same bytes
    build_site([out.parent / "submissions"], tmp_path / "again", include_unpublished=True)
    assert (tmp_path / "again" / "index.html").read_text() == html


def test_untrusted_strings_render_inert(tmp_path):
    evil = "<script>alert(1)</script>"
    records = [make_record("random", seed=s, clean=0.5) for s in range(2)]
    records += [make_record("linky", seed=s, clean=0.6, paper='<img src=x onerror="alert(2)">',
                            params={"note": evil}) for s in range(2)]
    records += [make_record("mathy", seed=0, clean=0.55, paper="$x$ \\frac{ [click](javascript:alert(3)) ~~gone~~ "
                            "<http://evil.example> ![i](http://evil.example/x.png) | row")]
    write_records(tmp_path / "in", records)
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    html = (tmp_path / "site" / "index.html").read_text()
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=" in html
    assert "javascript:" not in html.lower().replace("javascript:alert(3)", "")  # only as escaped text
    assert html.count("<script>") == 2  # only the page's own scripts (sorting, plot toggles)
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    # escaped brackets, tildes and angle brackets: no link, strikethrough or autolink can form
    assert evil not in md and "[click](" not in md and "\\[click\\]" in md and "~~gone" not in md
    assert "<http" not in md
    assert "![i](" not in md and "\\| row" in md and "&lt;img src=x" in md


@pytest.mark.parametrize("text, expected", [
    ("a\rb\u2028c\x0bd\te", "a b c d e"),  # every line or field break becomes a space: no extra table rows
    ("[x](javascript:y)", "\\[x\\](javascript:y)"),
    ("~~strike~~ <b>", "\\~\\~strike\\~\\~ &lt;b&gt;"),
    ("a|b", "a\\|b"),
])
def test_markdown_cells_escape_everything_with_a_meaning(text, expected):
    assert markdown_escape(text) == expected


@pytest.mark.parametrize("url, expected", [
    ("https://arxiv.org/abs/2107.07075", True), ("http://example.org/a?b=1", True),
    ("javascript:alert(1)", False), (" JavaScript:alert(1)", False), ("data:text/html,<script>", False),
    ("//evil.example", False), ("https://x.org/\" onmouseover=\"alert(1)", False), ("", False), (None, False),
    ("vbscript:msgbox", False), ("https:///nohost", False),
])
def test_only_http_urls_become_links(url, expected):
    assert (safe_url(url) is not None) == expected


def test_invalid_records_write_nothing(tmp_path):
    records = hand_records()
    records[1]["attacks"][2]["eps"] = 0.0
    write_records(tmp_path / "in", records)
    with pytest.raises(SchemaError) as caught:
        build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    assert any("attacks[2].eps: not sorted ascending" in p for p in caught.value.problems)
    assert not (tmp_path / "site").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no staging directory left behind


def test_rebuild_replaces_a_site_but_never_a_foreign_directory(tmp_path):
    out, paths = _build(tmp_path)
    paths[0].unlink()
    build_site([tmp_path / "submissions"], out, include_unpublished=True)
    assert len(list((out / "records").iterdir())) == len(paths) - 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="is not a leaderboard site"):
        build_site([tmp_path / "submissions"], foreign, include_unpublished=True)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # an invalid record later leaves the previous site as it was
    before = (out / "index.html").read_text()
    (tmp_path / "submissions" / "broken.json").write_text("{")
    with pytest.raises(SchemaError):
        build_site([tmp_path / "submissions"], out, include_unpublished=True)
    assert (out / "index.html").read_text() == before


def test_out_dot_rebuilds_in_place_and_a_killed_builds_leftovers_are_cleaned(tmp_path, monkeypatch):
    out, _ = _build(tmp_path)
    # what a build killed mid-way leaves: a staging folder and an old copy named after a dead writer of this
    # host; another host's (it may be alive, on a shared file system) is left alone
    (tmp_path / ".site.otherhost-999999.abc.tmp").mkdir()
    import benchmark.storage as storage
    host = storage.WRITER.rsplit("-", 1)[0]
    stale = [tmp_path / f".site.{host}-999999.abc.tmp", tmp_path / f".site.{host}-999999.def.old"]
    for path in stale:
        path.mkdir()
    monkeypatch.chdir(out)
    assert main(["-q", "leaderboard", "--records", str(tmp_path / "submissions"), "--out", ".",
                 "--include-unpublished"]) == 0
    assert (out / "index.html").is_file()
    assert not any(path.exists() for path in stale)
    assert not list(tmp_path.glob(".site.*.old"))
    assert [p.name for p in tmp_path.glob(".site.*.tmp")] == [".site.otherhost-999999.abc.tmp"]


def test_one_section_per_protocol(tmp_path):
    other = {**PROTOCOL, "preset": "standard", "dataset": "cifar10", "model": "mobilenetv2_100", "epochs": 200}
    custom = {**PROTOCOL, "preset": "smoke+custom", "epochs": 2}
    custom3 = {**custom, "epochs": 3}
    records = [make_record(seed=0), make_record(seed=0, protocol=other, pool_size=45000),
               make_record(seed=0, protocol=custom, clean=0.4), make_record(seed=0, protocol=custom3, clean=0.45)]
    for index, record in enumerate(records):
        write_records(tmp_path / "in" / str(index), [record])
    groups = build_groups(load_records([tmp_path / "in"]))
    titles = [group.title for group in groups]
    assert titles[0] == "cifar10 · mobilenetv2_100 · standard" and titles[1] == "digits · mobilenetv2_035 · smoke"
    assert len(titles) == 4 and len(set(titles)) == 4  # same preset name, other settings: told apart
    assert all("smoke+custom (settings " in title for title in titles[2:])
    assert groups[0].facts["pool_size"] == [45000] and groups[0].facts["epochs"] == 200
    build_site([tmp_path / "in" / "0", tmp_path / "in" / "1"], tmp_path / "site", include_unpublished=True)
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.count('<section id="g') == 2 and html.count("<svg ") == 4
    assert html.index("cifar10 · mobilenetv2_100 · standard</h2>") < html.index("digits · mobilenetv2_035 · smoke</h2>")


def test_adversarially_trained_runs_get_their_own_section_that_says_how_they_were_trained(tmp_path):
    fgsm_rs = {"name": "fgsm-rs", "params": {"eps": 4 / 255, "rel_step": 1.25, "random_start": True}}
    write_records(tmp_path / "in" / "clean", [make_record_v4(seed=s) for s in (0, 1)])
    write_records(tmp_path / "in" / "at", [make_record_v4(seed=s, training=fgsm_rs) for s in (0, 1)])
    groups = build_groups(load_records([tmp_path / "in"]))
    titles = sorted(group.title for group in groups)
    assert len(titles) == 2 and titles[1] == titles[0] + " · adversarially trained (fgsm-rs)"
    trained = {group.title: group.facts["training"] for group in groups}
    assert trained[titles[0]].startswith("standard")
    assert trained[titles[1]].startswith("fgsm-rs at 4/255, random_start True, rel_step 1.25")
    assert "robust accuracy (PGD-10) on 64 held-out validation images" in trained[titles[1]]
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    assert "<dt>training</dt><dd>fgsm-rs at 4/255" in (tmp_path / "site" / "index.html").read_text()


def test_an_attack_with_other_settings_than_the_suites_gets_a_column_of_its_own():
    """PGD-50 added by `attack` beside the suite's PGD-20 at the same eps: two measures, never one."""
    import dataclasses

    from benchmark.leaderboard.aggregate import measures

    from benchmark.record import Record

    record = Record.from_json(make_record_v2())
    suite_pgd = record.attacks[-1]
    stronger = dataclasses.replace(suite_pgd, params={**suite_pgd.params, "steps": 50}, accuracy=0.05)
    found = measures(dataclasses.replace(record, attacks=(*record.attacks, stronger)))
    eps = float(suite_pgd.eps)
    assert found[("pgd", "Linf", eps)] == suite_pgd.accuracy
    assert found[("pgd (rel_step=2.5, restarts=1, steps=50)", "Linf", eps)] == 0.05
    # the suite's setting written as text (as --attack-param leaves it) is the same setting
    as_text = dataclasses.replace(record.protocol, attacks=tuple(
        dataclasses.replace(spec, params={key: str(value) for key, value in spec.params.items()})
        for spec in record.protocol.attacks))
    assert ("pgd", "Linf", eps) in measures(dataclasses.replace(record, protocol=as_text))


def test_rows_are_keyed_by_typed_parameters_never_by_rendered_text(tmp_path):
    records = [make_record("cal", seed=0, params={"k": 10}), make_record("cal", seed=1, params={"k": 10}),
               make_record("cal", seed=0, params={"k": "10"})]  # a string ten is another setting
    for index, record in enumerate(records):
        write_records(tmp_path / "in" / str(index), [record])
    (group,) = build_groups(load_records([tmp_path / "in"]))
    labels = sorted(group.summary["label"])
    assert len(labels) == 2 and len(set(labels)) == 2 and sorted(group.summary["n"]) == [1, 2]
    assert labels == ['cal (k="10")', "cal (k=10)"]


def test_paper_links_come_from_the_records_and_rendering_imports_no_selector_and_no_torch(tmp_path):
    records = [make_record("random", seed=s) for s in range(2)]
    records += [make_record("not-installed", seed=s, url="https://example.org/paper") for s in range(2)]
    write_records(tmp_path / "in", records)
    script = (f"import sys; from benchmark.leaderboard import build_site; "
              f"build_site([{str(tmp_path / 'in')!r}], {str(tmp_path / 'site')!r}, include_unpublished=True); "
              f"bad = [m for m in sys.modules if m == 'torch' or m.startswith('benchmark.methods')]; "
              f"assert not bad, bad")
    subprocess.run([sys.executable, "-c", script], check=True, cwd=REPO, env={**os.environ})
    html = (tmp_path / "site" / "index.html").read_text()
    assert '<a href="https://example.org/paper" rel="noopener noreferrer"' in html


def test_the_board_takes_only_its_published_presets(tmp_path, capsys, monkeypatch):
    write_records(tmp_path / "submissions", hand_records())  # preset smoke
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "leaderboard", "--out", "public"]) == 2
    err = capsys.readouterr().err
    assert "14 record(s) of preset(s) smoke, which the published board does not take (it takes cifar10-cpu, " \
           "cifar10-cpu-at, standard, standard-at)" in err and "--include-unpublished" in err
    assert not (tmp_path / "public").exists()
    assert main(["-q", "leaderboard", "--out", "public", "--include-unpublished"]) == 0
    assert (tmp_path / "public" / "index.html").is_file()


def test_cli_leaderboard_reports_invalid_records(tmp_path, capsys, monkeypatch):
    write_records(tmp_path / "submissions", hand_records())
    monkeypatch.chdir(tmp_path)
    (tmp_path / "submissions" / "x.json").write_text(json.dumps({**make_record(seed=9), "seed": "nine"}))
    assert main(["-q", "leaderboard", "--out", "public2", "--include-unpublished"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{Path('submissions') / 'x.json'}: seed: expected an integer, got \"nine\""
    assert err[-1].startswith("error: 1 problem(s) in 1 of 15 record file(s); nothing written")
    assert not (tmp_path / "public2").exists()


def test_records_with_the_same_file_name_get_distinct_copies(tmp_path):
    for seed, folder in enumerate(("a", "b")):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "run.json").write_text(json.dumps(make_record(seed=seed)))
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    assert sorted(p.name for p in (tmp_path / "site" / "records").iterdir()) == ["run-2.json", "run.json"]
    html = (tmp_path / "site" / "index.html").read_text()
    assert '<a href="records/run.json">s0</a><a href="records/run-2.json">s1</a>' in html


# --- version 2: the suite, the ranking, flags, caveats, examples --------------------------------------------
def v2_records() -> list[dict]:
    """Random and two methods over three seeds: `good` beats Random in the worst case at 2/255 by 10 points on
    every seed, `same` matches it; `full` as the reference; one flagged run."""
    records = []
    for seed in range(3):
        records.append(make_record_v2("random", seed=seed, clean=0.40 + 0.01 * seed, pgd=[0.20, 0.10, 0.05, 0, 0]))
        records.append(make_record_v2("good", seed=seed, clean=0.45, pgd=[0.30 + 0.005 * seed, 0.20 + 0.005 * seed,
                                                                          0.1, 0, 0], url="https://example.org/g"))
        records.append(make_record_v2("same", seed=seed, clean=0.40 + 0.01 * seed, pgd=[0.2, 0.1, 0.05, 0, 0],
                                      flags=[{"code": "few-steps", "detail": "12 steps"}] if seed == 1 else None))
        records.append(make_record_v2("full", seed=seed, fraction=1.0, clean=0.6))
    return records


def test_v2_ranking_by_the_worst_case_with_holm_verdicts_caveats_and_flags(tmp_path):
    write_records(tmp_path / "in", v2_records())
    (group,) = build_groups(load_records([tmp_path / "in"]))
    assert group.headline_eps == 2 / 255 and group.attacks == ["fgsm", "pgd", WORST]
    good = _row(group, "good")
    # worst case at 2/255: min(FGSM 0.45 - 0.10, PGD 0.20 + 0.005 s) = 0.20 + 0.005 s
    assert good["headline_mean"] == pytest.approx(0.205)
    assert good["vs_random_headline"].comparison.mean == pytest.approx(0.205 - 0.10)
    build_site([tmp_path / "in"], tmp_path / "site")  # cifar10-cpu: a published preset
    html = (tmp_path / "site" / "index.html").read_text()
    ranked = html[html.index('id="g0-rank0"'):html.index("</table>", html.index('id="g0-rank0"'))]
    assert ranked.index(">good<") < ranked.index(">random<") and ranked.index(">good<") < ranked.index(">same<")
    assert 'better<span class="ci">' in ranked  # good vs random, Holm-adjusted
    assert "few-steps (1 of 3)" in ranked
    for text in ("Read this first", "a test set of 200 images", "A model on the whole pool reaches 60.0 %",
                 "worst case is over fgsm, pgd", "cross-checked", "1 of 12 runs are flagged"):
        assert text in html, text
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "### Ranking at fraction 0.1: worst-case robust accuracy at 2/255 (%)" in md and "| better " in md


def test_adversarial_examples_are_inlined_from_the_gallery_artifact(tmp_path):
    records = v2_records()
    paths = write_records(tmp_path / "in", records)
    good = next(p for p, r in zip(paths, records) if r["method"] == "good" and r["seed"] == 0)
    record = json.loads(good.read_text())
    artifact = good.with_name("good-gallery.npz")
    record["gallery"] = {"artifact": artifact.name, "attack": "pgd", "eps": [2 / 255, 8 / 255]}
    good.write_text(json.dumps(record))
    rng = np.random.default_rng(0)
    pictures = rng.integers(0, 256, (3, 3, 32, 32), dtype=np.uint8)
    np.savez(artifact, class_names=np.asarray(["cat", "dog"]), attack="pgd", eps=np.asarray([2 / 255, 8 / 255]),
             labels=np.asarray([0, 1, 0]), clean=pictures, clean_predictions=np.asarray([0, 1, 1]),
             adversarial_0=pictures, predictions_0=np.asarray([1, 1, 1]), adversarial_1=pictures,
             predictions_1=np.asarray([1, 0, 1]))
    build_site([tmp_path / "in"], tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.count('<img src="data:image/png;base64,') == 15  # 3 images x (clean + 2 eps + 2 perturbations)
    assert "its perturbation ×32" in html and "its perturbation ×8" in html  # magnified to be seen
    assert "pgd at 2/255" in html and "pgd at 8/255" in html and 'class="wrong">dog<' in html
    artifact.write_bytes(b"PK\x03\x04 damaged")  # a damaged artifact: no gallery, the page still builds
    build_site([tmp_path / "in"], tmp_path / "site")
    assert "data:image/png" not in (tmp_path / "site" / "index.html").read_text()


def test_the_study_section_checks_its_conclusions(tmp_path):
    """Planted: Random 20 points above five of the study's methods (tiny seed noise: significant after Holm),
    GraphCut first by 10 points, FGSM at 4/255 keeping 70 % of the clean accuracy (the helper's FGSM is clean
    - 0.15 there), Moderate DS far below Random under attack."""
    records = []
    clean_of = {"random": 0.5, "graphcut": 0.6}
    for seed in range(3):
        for method in ("random", "cal", "contextual_diversity", "glister", "grand", "graphcut", "moderate_ds"):
            for fraction in (0.1, 0.5):
                clean = clean_of.get(method, 0.3) + 0.005 * seed * (1 + (method in clean_of))
                records.append(make_record_v2(method, seed=seed, fraction=fraction, clean=clean))
    write_records(tmp_path / "in", records)
    build_site([tmp_path / "in"], tmp_path / "site")
    html = (tmp_path / "site" / "index.html").read_text()
    section = html[html.index("The study, side by side"):]
    assert "Framework for Testing Adversarial Robustness of Coreset Selection Paradigms" in section
    assert 'href="https://github.com/97harsh/CoreAdv"' in section
    marks = dict(re.findall(r"<li>([^<:]+)[^<]*: <b>(supported|contradicted|not resolved)</b>", section))
    assert marks == {"Random outperforms CAL, Contextual Diversity, Glister, GraNd and Moderate DS at both fractions "
                     "(clean accuracy)": "supported",
                     "Submodular (GraphCut) is the best method at both fractions (clean accuracy)": "supported",
                     "No coreset method resists FGSM": "contradicted",
                     "Moderate DS, described as robust, succumbs to the attacks like the others (worst case at the "
                     "headline eps, against Random)": "supported"}, marks
    assert "<td>59.70</td>" in section and "Spearman ρ = " in section  # the study's Table 1 beside ours
    assert "holds" not in section


def _seeded(method: str, seed: int, clean: float, headline: float) -> dict:
    """A version-2 record whose clean accuracy and worst case at 2/255 (the headline) are these."""
    grid = len(PROTOCOL_V2_EPS)
    fgsm = [clean] * grid
    fgsm[1] = headline
    return make_record_v2(method, seed=seed, clean=clean, fgsm=fgsm, pgd=[clean] * grid, test_size=1000)


PROTOCOL_V2_EPS = EPS


def test_a_planted_difference_is_significant_and_a_null_one_is_bounded_by_the_power_formula(tmp_path):
    """Ten seeds: `planted` is 5 points above Random on clean accuracy, `null` equals Random up to a seed noise
    of 0.3 points. The planted one is "better"; the null one "no difference larger than X", X what the paired
    t-test's power formula gives (scipy's noncentral t, alpha / 2 for a family of two, 80 % power) times the
    spread of the differences."""
    from scipy import optimize, stats

    rng = np.random.default_rng(0)
    noise = rng.normal(0, 0.003, 10).round(3)
    records = []
    for seed in range(10):
        base = 0.5 + 0.01 * (seed % 3)
        records.append(_seeded("random", seed, base, 0.2))
        records.append(_seeded("planted", seed, base + 0.05 + noise[seed] / 2, 0.2))
        records.append(_seeded("null", seed, base + noise[seed], 0.2))
    write_records(tmp_path / "in", records)
    (group,) = build_groups(load_records([tmp_path / "in"]))
    planted, null = _row(group, "planted")["vs_random_clean"], _row(group, "null")["vs_random_clean"]
    assert planted.kind == "better" and planted.comparison.low > 0.04
    runs = group.runs  # the differences, recomputed from the records
    by = {m: runs[runs["method"] == m].set_index("seed")["clean"] for m in ("null", "random")}
    differences = (by["null"] - by["random"]).to_numpy()
    n, sd, alpha = 10, differences.std(ddof=1), 0.05 / 2

    def power(d):
        t = stats.t.ppf(1 - alpha / 2, n - 1)
        shift = d * math.sqrt(n)
        # the wrong-sign tail underflows to NaN in scipy far from zero; it is then nothing
        return stats.nct.sf(t, n - 1, shift) + np.nan_to_num(stats.nct.cdf(-t, n - 1, shift))

    expected = optimize.brentq(lambda d: power(d) - 0.8, 1e-3, 4) * sd
    assert null.kind == "equivalent" and null.margin == pytest.approx(expected, rel=1e-6)
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert f"no difference &gt; {math.ceil(expected * 1000) / 10:.1f}" in md and "| better " in md


def test_rows_that_cannot_be_compared_are_shown_with_the_reason_not_ranked(tmp_path):
    records = []
    for seed in range(3):
        records += [_seeded("random", seed, 0.5 + 0.01 * seed, 0.2), _seeded("steady", seed, 0.52, 0.21)]
    records.append(_seeded("single", 0, 0.9, 0.8))  # one seed, and the best numbers: never ranked first
    records += [_seeded("partial", seed, 0.6, 0.3) for seed in range(2)]  # 2 of 3 seeds
    records += [make_record_v2("guess", seed=seed, clean=0.1, flags=[{"code": "chance-level", "detail": "x"}])
                for seed in range(3)]
    write_records(tmp_path / "in", records)
    html_site = tmp_path / "site"
    build_site([tmp_path / "in"], html_site)
    html = (html_site / "index.html").read_text()
    ranked = html[html.index('id="g0-rank0"'):html.index("</table>", html.index('id="g0-rank0"'))]
    assert ">single<" not in ranked and ">partial<" not in ranked and ">guess<" not in ranked
    note = html[html.index("Shown, not ranked"):]
    for text in ("<b>single</b> (one seed: no interval", "<b>partial</b> (2 of 3 seeds: incomplete",
                 "<b>guess</b> (3 of 3 runs at chance level"):
        assert text in note, text


def test_records_of_two_harness_versions_in_one_section_are_said_to_be(tmp_path):
    records = [_seeded("random", seed, 0.5, 0.2) for seed in range(2)]
    records[1]["environment"]["package"] = "0.3.0"
    write_records(tmp_path / "in", records)
    build_site([tmp_path / "in"], tmp_path / "site")
    assert "These records come from 2 package version(s) (0.2.0, 0.3.0)" in (tmp_path / "site" /
                                                                             "index.html").read_text()


def test_runs_of_two_cpu_models_are_named_with_their_run_counts_and_their_cross_machine_pairs_counted(tmp_path):
    records = [_seeded(method, seed, 0.5, 0.2) for method in ("random", "cal") for seed in range(3)]
    for record in records:
        record["environment"]["device_name"] = "Intel(R) Xeon(R) CPU"
    records[4]["environment"]["device_name"] = "AMD EPYC 9654 96-Core Processor"  # cal, seed 1
    write_records(tmp_path / "in", records)
    (group,) = build_groups(load_records([tmp_path / "in"]))
    assert group.facts["devices"] == ["AMD EPYC 9654 96-Core ×1", "Intel Xeon ×5"]
    lines = caveats(group)
    assert any("made on 2 machines (AMD EPYC 9654 96-Core ×1, Intel Xeon ×5 runs)" in line for line in lines)
    assert any("different machines are paired in 1 of 3 pairs of runs compared with Random" in line for line in lines)
    records[1]["environment"]["device_name"] = "AMD EPYC 9654 96-Core Processor"  # Random, seed 1: pairs agree
    write_records(tmp_path / "paired", records)
    (group,) = build_groups(load_records([tmp_path / "paired"]))
    assert not any("different machines are paired" in line for line in caveats(group))
    for record in records:
        record["environment"]["device_name"] = "Intel(R) Xeon(R) CPU"
    write_records(tmp_path / "one", records)
    (group,) = build_groups(load_records([tmp_path / "one"]))
    assert group.facts["devices"] == ["Intel Xeon"] and not any("machines" in line for line in caveats(group))


def test_fgsm_rising_with_eps_is_shown_as_a_weak_attack_sign_not_a_failure(tmp_path):
    records = [make_record_v2("random", seed=seed, clean=0.5, fgsm=[0.4, 0.3, 0.35, 0.2, 0.1]) for seed in range(2)]
    records.append(make_record_v2("random", seed=2, clean=0.5))
    write_records(tmp_path / "in", records)
    build_site([tmp_path / "in"], tmp_path / "site")
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "FGSM's accuracy rises with eps (by more than 0.1 point) in 2 of 3 runs" in md and "not a failure" in md


def test_clean_accuracy_on_the_whole_test_split_is_what_the_board_compares_and_says(tmp_path):
    """Version 5: the attacked test set is a subset; the board's clean column is the whole split's accuracy, and
    the caveats say which images each number is over."""
    records = [make_record_v5(seed=s, clean=0.5, full_test=(10000, 4000 + 100 * s)) for s in (0, 1)]
    write_records(tmp_path / "in", records)
    (group,) = build_groups(load_records([tmp_path / "in"]))
    assert sorted(group.runs["clean"]) == [0.40, 0.41]  # not the attacked subset's 0.5
    (line,) = [c for c in caveats(group) if c.startswith("Scale:")]
    assert "a test set of 200 images attacked" in line and "clean accuracy on all 10000 test images" in line


def test_runs_that_shared_a_device_cost_their_share_of_it(tmp_path):
    """Version 6: a job ran four runs at once on one GPU; each record's seconds are wall-clock while sharing it, and
    the page's cost per run is its share, a quarter of them, with a caveat saying so."""
    shared = [make_record_v6(seed=s, runs_per_device=4) for s in (0, 1)]
    write_records(tmp_path / "in", shared)
    (group,) = build_groups(load_records([tmp_path / "in"]))
    alone = [make_record_v6(seed=s) for s in (0, 1)]
    write_records(tmp_path / "alone", alone)
    (alone_group,) = build_groups(load_records([tmp_path / "alone"]))
    assert (group.runs["run_seconds"] * 4).tolist() == pytest.approx(alone_group.runs["run_seconds"].tolist())
    assert alone_group.runs["run_seconds"].min() > 0
    (line,) = [c for c in caveats(group) if c.startswith("Runs shared their device")]
    assert "ran 4 at once" in line and "divided by that number" in line
    assert not [c for c in caveats(alone_group) if c.startswith("Runs shared")]


def test_a_cascaded_suite_is_named_whole_in_the_caveats(tmp_path):
    # a cascade's later attacks have no columns of their own (their entries are the running worst case), but the
    # worst case is theirs too: the caveat names every attack of the suite with its settings, and the eps the
    # cross-checks ran at
    genuine = next(path for path in sorted(REPO.glob("*/cifar10-cpu/random__*f0.1__s0*.json"))
                   if json.loads(path.read_text())["schema"] == "coreset-bench/run/5")
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / genuine.name).write_text(genuine.read_text())
    (group,) = build_groups(load_records([tmp_path / "in"]))
    assert group.protocol.cascade and WORST in group.attacks and "apgd-t" not in group.attacks
    text = "\n".join(caveats(group))
    assert ('the worst case is over fgsm, apgd (losses="ce", steps=20), apgd-t (steps=20, targets=3), image by '
            'image') in text
    assert "on 8 images at 2/255 in every run" in text
    # and so does the page's list of facts (before, "attacks: fgsm", the only attack with columns)
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    page = (tmp_path / "site" / "index.html").read_text()
    assert re.search(r"<dt>attacks</dt><dd>fgsm, apgd \(losses=\S+ce\S+, steps=20\), "
                     r"apgd-t \(steps=20, targets=3\); ", page)


def test_rows_with_fewer_seeds_are_a_family_of_their_own(tmp_path):
    # the ranked rows' Holm correction counts only the ranked rows: adding methods at fewer seeds (shown, never
    # ranked) must not weaken the ranked comparisons, and those rows are corrected among themselves
    def steady_verdict(records):
        write_records(tmp_path / str(len(records)), records)
        (group,) = build_groups(load_records([tmp_path / str(len(records))]))
        rows = group.summary.set_index("method")
        return rows.loc["steady", "vs_random_clean"], rows, group

    base = []
    for seed in range(4):
        base += [_seeded("random", seed, 0.5 + 0.01 * seed, 0.2), _seeded("steady", seed, 0.53 + 0.002 * seed, 0.2)]
    alone, _, _ = steady_verdict(base)
    extra = [_seeded(name, seed, 0.4 + 0.01 * seed, 0.2) for name in ("few", "fewer") for seed in range(3)]
    beside, rows, group = steady_verdict(base + extra)
    assert alone.comparison.family_size == beside.comparison.family_size == 1
    assert beside.comparison.detectable == alone.comparison.detectable and beside.kind == alone.kind
    assert rows.loc["few", "vs_random_clean"].comparison.family_size == 2
    lines = "\n".join(caveats(group))
    assert "so of 1 comparisons" in lines
    assert "rows with fewer seeds (shown, not ranked; a family of their own)" in lines


FGSM_RS = {"name": "fgsm-rs", "params": {"eps": 4 / 255, "rel_step": 1.25, "random_start": True}}


def _trained(method: str, seed: int, clean: float, headline: float, training: dict | None = None) -> dict:
    """A version-4 record with this clean accuracy and worst case at 2/255, trained with `training` (None:
    clean-trained)."""
    fgsm = [clean] * len(EPS)
    fgsm[1] = headline
    return make_record_v4(method, seed=seed, clean=clean, fgsm=fgsm, pgd=[clean] * len(EPS), test_size=1000,
                          training=training)


def test_an_adversarially_trained_section_says_what_the_training_changed_method_by_method(tmp_path):
    """Planted, five seeds: adversarial training adds 10 points of worst case to Random (seed noise of 0.1-0.2
    points) and costs it 2 points of clean accuracy; `mine` gains nothing robust (noise of 0.1 point); `clean_only`
    has no adversarially trained runs and `once` one seed of them: neither gets a row. The changes are paired by
    seed: the means are the per-seed differences' (recomputed here), and the verdicts say so."""
    noise, small = [0.001, -0.002, 0.0, 0.002, -0.001], [0.001, -0.001, 0.0, 0.001, -0.001]
    clean_runs, trained_runs = [], []
    for seed in range(5):
        base_clean, base_robust = 0.5 + 0.01 * seed, 0.05 + 0.002 * seed
        clean_runs += [_trained("random", seed, base_clean, base_robust),
                       _trained("mine", seed, base_clean + 0.02, base_robust + 0.01),
                       _trained("clean_only", seed, base_clean, base_robust),
                       _trained("once", seed, base_clean, base_robust)]
        trained_runs += [_trained("random", seed, round(base_clean - 0.02 + noise[seed], 3),
                                  round(base_robust + 0.10 + noise[seed], 3), FGSM_RS),
                         _trained("mine", seed, base_clean + 0.02, round(base_robust + 0.01 + small[seed], 3),
                                  FGSM_RS)]
    trained_runs.append(_trained("once", 0, 0.5, 0.2, FGSM_RS))
    write_records(tmp_path / "in" / "clean", clean_runs)
    write_records(tmp_path / "in" / "at", trained_runs)
    groups = build_groups(load_records([tmp_path / "in"]))
    clean, trained = sorted(groups, key=lambda g: g.protocol.training is not None)
    assert clean.baseline is None and clean.training_gains == []
    assert trained.baseline is clean
    gains = {g.method: g for g in trained.training_gains}
    assert set(gains) == {"random", "mine"} and gains["random"].seeds == (0, 1, 2, 3, 4)
    runs = {(t, m): g.runs[g.runs["method"] == m].set_index("seed") for t, g in (("at", trained), ("clean", clean))
            for m in ("random", "mine")}
    for measure in ("headline", "clean"):
        expected = (runs["at", "random"][measure] - runs["clean", "random"][measure]).mean()
        assert gains["random"].verdicts[measure].comparison.mean == pytest.approx(expected, abs=1e-12)
    assert gains["random"].verdicts["headline"].kind == "better"
    assert gains["random"].verdicts["headline"].comparison.low > 0.09
    assert gains["random"].verdicts["clean"].kind == "worse"
    assert gains["mine"].verdicts["headline"].kind == "equivalent"
    assert gains["random"].verdicts["headline"].comparison.family_size == 2
    assert any(f'against the clean-training section "{clean.title}"' in line for line in caveats(trained))
    build_site([tmp_path / "in"], tmp_path / "site", include_unpublished=True)
    html = (tmp_path / "site" / "index.html").read_text()
    section = html[html.index(f'<section id="{trained.id}"'):]
    assert html.count("What adversarial training changed</h3>") == 1
    assert f'<a href="#{clean.id}">' in section and 'id="' + trained.id + '-gain"' in section
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert "### What adversarial training changed" in md and "| better " in md and "| worse " in md
    # Random's adversarially trained seed 0 on another machine: its twin pair, and the pairs with it of `mine` and
    # `once` at seed 0, are pairs of two machines
    trained_runs[0]["environment"]["device_name"] = "AMD EPYC"
    write_records(tmp_path / "moved" / "clean", clean_runs)
    write_records(tmp_path / "moved" / "at", trained_runs)
    trained = next(g for g in build_groups(load_records([tmp_path / "moved"])) if g.protocol.training is not None)
    assert any("paired in 2 of 6 pairs of runs compared with Random and 1 of 11 pairs of runs compared with the "
               "clean-training section" in line for line in caveats(trained))


def test_an_adversarially_trained_section_without_a_clean_counterpart_says_so(tmp_path):
    write_records(tmp_path / "in", [_trained("random", seed, 0.5, 0.2, FGSM_RS) for seed in range(2)])
    (group,) = build_groups(load_records([tmp_path / "in"]))
    assert group.baseline is None
    assert any("no clean-training section with the same settings" in line for line in caveats(group))
