"""The leaderboard: aggregation checked against numbers computed by hand, the pages (Markdown and HTML),
escaping of untrusted record strings, the inline SVG plots, and the all-or-nothing site writing."""

import json
import math
import re
from pathlib import Path

import pytest

from benchmark.cli import main
from benchmark.errors import UserError
from benchmark.schema import SchemaError, load_records
from leaderboard.aggregate import build_groups, mean_std, paired_difference, table1
from leaderboard.render import MARKER, build_site, default_urls, safe_url
from tests.test_schema import PROTOCOL, make_record, write_records

T_975_2DF = 4.302652729749462  # t distribution, 97.5 % quantile, 2 degrees of freedom (from a t table)
URLS = {"mine": "https://example.org/mine", "random": ""}


def _fgsm(clean):
    return [round(clean - d, 6) for d in (0.1, 0.2, 0.3, 0.4, 0.5)]


def hand_records() -> list[dict]:
    """Three seeds of random and `mine`, two of `meh`, one of `one`, and `full` for seeds 0 and 1 only."""
    records = []
    for seed, clean in enumerate([0.60, 0.62, 0.64]):
        records.append(make_record("random", seed=seed, clean=clean, fgsm=_fgsm(clean), seconds=0.1))
    for seed, clean in enumerate([0.65, 0.66, 0.70]):
        records.append(make_record("mine", seed=seed, clean=clean, fgsm=_fgsm(clean), seconds=[1.0, 2.0, 6.0][seed]))
    for seed, clean in enumerate([0.61, 0.60, 0.66]):
        records.append(make_record("meh", seed=seed, clean=clean, fgsm=_fgsm(clean)))
    records.append(make_record("one", seed=0, clean=0.50, fgsm=_fgsm(0.5)))
    records.append(make_record("random", fraction=0.5, seed=0, clean=0.80, fgsm=_fgsm(0.8)))
    records.append(make_record("mine", fraction=0.5, seed=0, clean=0.82, fgsm=_fgsm(0.82)))
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
    assert mine["fgsm2_mean"] == pytest.approx(0.37)
    assert mine["fgsm2_std"] == pytest.approx(math.sqrt(0.0014 / 2))
    # the mean over eps is clean - 0.3 per run
    assert mine["fgsm_mean_mean"] == pytest.approx(0.37)
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
    paired = _row(group, "mine")["vs_random_clean"]
    half = T_975_2DF * 0.01 / math.sqrt(3)
    assert (paired.n, paired.mean) == (3, pytest.approx(0.05))
    assert (paired.low, paired.high) == (pytest.approx(0.05 - half), pytest.approx(0.05 + half))
    assert paired.significant
    # meh - random: 0.01, -0.02, 0.02 -> mean 1/300, sd sqrt(((2/3)^2 + (7/3)^2 + (5/3)^2) / 2) / 100
    meh = _row(group, "meh")["vs_random_clean"]
    sd = math.sqrt(((2 / 3) ** 2 + (7 / 3) ** 2 + (5 / 3) ** 2) / 2) / 100
    assert meh.mean == pytest.approx(1 / 300)
    assert meh.low == pytest.approx(1 / 300 - T_975_2DF * sd / math.sqrt(3))
    assert meh.low < 0 < meh.high and not meh.significant
    # one pair: a mean difference but no interval
    one = _row(group, "one")["vs_random_clean"]
    assert one.n == 1 and one.mean == pytest.approx(-0.10) and not one.has_interval and not one.significant
    # random against itself is no comparison; full has no random run at fraction 1.0
    assert _row(group, "random")["vs_random_clean"] is None
    assert _row(group, "full", 1.0)["vs_random_clean"].n == 0


def test_paired_difference_and_mean_std_edge_cases():
    assert paired_difference([0.02, 0.02]).significant  # zero spread, nonzero mean: a zero-width interval
    assert not paired_difference([]).significant and paired_difference([]).n == 0
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
    build_site([root / "submissions"], root / "site", urls=URLS)
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
    assert f"+5.00 [{5 - half:+.2f}, {5 + half:+.2f}] *" in html
    assert "-10.00 (1 pair: no interval)" in html and "50.00 ± n/a" in html
    assert 'data-value="67.0"' in html  # the sortable value is a plain number
    # protocol, dataset, scale and version are stated
    for text in ("smoke", "digits", "pool size 1000", "mobilenetv2_035", "4 epochs", "coreset-bench 0.1.0",
                 "1/255, 2/255, 4/255, 8/255, 16/255"):
        assert text in html, text
    assert '<a href="https://example.org/mine" rel="noopener noreferrer"' in html


def test_plots_are_inline_deterministic_svg(site, tmp_path):
    out, _ = site
    html = (out / "index.html").read_text()
    svgs = re.findall(r"<svg .*?</svg>", html, flags=re.S)
    assert len(svgs) == 2  # one panel per fraction; full is the reference line, not a panel of its own
    assert "fraction 0.1</text>" in svgs[0] and "fraction 0.5</text>" in svgs[1]
    assert all(svg.count("<path") > 10 and "full (1.0)</text>" in svg for svg in svgs)
    assert ">mine</text>" in svgs[1] and ">meh</text>" not in svgs[1]  # meh ran at fraction 0.1 only
    svg = "".join(svgs)
    assert "<?xml" not in html and "<dc:date>" not in svg
    ids = re.findall(r'\bid="([^"]+)"', html)
    assert len(ids) == len(set(ids))  # no clash between the plot's ids and the page's
    for reference in re.findall(r"url\(#([^)]+)\)", svg):
        assert f'id="{reference}"' in svg
    # no external resources: the page works offline
    assert not re.search(r'(src|href)="(https?:)?//(?!example\.org)', html)
    assert "<link" not in html and "@import" not in html
    # a second build gives the same bytes
    build_site([out.parent / "submissions"], tmp_path / "again", urls=URLS)
    assert (tmp_path / "again" / "index.html").read_text() == html


def test_untrusted_strings_render_inert(tmp_path):
    evil = "<script>alert(1)</script>"
    records = [make_record("random", seed=s, clean=0.5) for s in range(2)]
    records += [make_record(evil, seed=s, clean=0.6, paper='<img src=x onerror="alert(2)">') for s in range(2)]
    records += [make_record("linky", seed=0, clean=0.55, paper="$x$ \\frac{")]  # no mathtext in the plot
    records += [make_record('q" id="zz $a$', seed=0, clean=0.52)]  # plot text is shown as it is
    write_records(tmp_path / "in", records)
    build_site([tmp_path / "in"], tmp_path / "site", urls={evil: "javascript:alert(1)", "linky": " JaVaScRiPt:x"})
    html = (tmp_path / "site" / "index.html").read_text()
    assert evil not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<img" not in html and "&lt;img src=x onerror=" in html
    assert "javascript:" not in html.lower()
    assert html.count("<script>") == 1  # only the page's own sort script
    assert '>q" id="zz $a$</text>' in html and 'q&#34; id=&#34;zz $a$' in html
    md = (tmp_path / "site" / "leaderboard.md").read_text()
    assert evil not in md and "javascript:" not in md.lower()


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
        build_site([tmp_path / "in"], tmp_path / "site", urls=URLS)
    assert any("attacks[2].eps: not sorted ascending" in p for p in caught.value.problems)
    assert not (tmp_path / "site").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["in"]  # no staging directory left behind


def test_rebuild_replaces_a_site_but_never_a_foreign_directory(tmp_path):
    out, paths = _build(tmp_path)
    paths[0].unlink()
    build_site([tmp_path / "submissions"], out, urls=URLS)
    assert len(list((out / "records").iterdir())) == len(paths) - 1
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(UserError, match="is not a leaderboard site"):
        build_site([tmp_path / "submissions"], foreign, urls=URLS)
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]
    # an invalid record later leaves the previous site as it was
    before = (out / "index.html").read_text()
    (tmp_path / "submissions" / "broken.json").write_text("{")
    with pytest.raises(SchemaError):
        build_site([tmp_path / "submissions"], out, urls=URLS)
    assert (out / "index.html").read_text() == before


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
    build_site([tmp_path / "in" / "0", tmp_path / "in" / "1"], tmp_path / "site", urls={})
    html = (tmp_path / "site" / "index.html").read_text()
    assert html.count('<section id="g') == 2 and html.count("<svg ") == 2
    assert html.index("cifar10 · mobilenetv2_100 · standard</h2>") < html.index("digits · mobilenetv2_035 · smoke</h2>")


def test_paper_links_come_from_the_registered_selectors():
    urls = default_urls()
    assert urls["glister"] == "https://arxiv.org/abs/2012.10630" and "random" not in urls  # random has no url


def test_cli_leaderboard(tmp_path, capsys, monkeypatch):
    write_records(tmp_path / "submissions", hand_records())
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("leaderboard.render.default_urls", lambda: URLS)  # the registry is tested above
    assert main(["-q", "leaderboard", "--out", "public"]) == 0  # default --records submissions/
    assert (tmp_path / "public" / "index.html").is_file()
    (tmp_path / "submissions" / "x.json").write_text(json.dumps({**make_record(seed=9), "seed": "nine"}))
    assert main(["-q", "leaderboard", "--out", "public2"]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0] == f"{Path('submissions') / 'x.json'}: seed: expected an integer, got \"nine\""
    assert err[-1].startswith("error: 1 problem(s) in 1 of 15 record file(s); nothing written")
    assert not (tmp_path / "public2").exists()


def test_records_with_the_same_file_name_get_distinct_copies(tmp_path):
    for seed, folder in enumerate(("a", "b")):
        (tmp_path / "in" / folder).mkdir(parents=True)
        (tmp_path / "in" / folder / "run.json").write_text(json.dumps(make_record(seed=seed)))
    build_site([tmp_path / "in"], tmp_path / "site", urls={})
    assert sorted(p.name for p in (tmp_path / "site" / "records").iterdir()) == ["run-2.json", "run.json"]
    html = (tmp_path / "site" / "index.html").read_text()
    assert '<a href="records/run.json">s0</a><a href="records/run-2.json">s1</a>' in html
