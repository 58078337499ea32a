"""The generated page in a real browser: headless Chromium loads index.html from disk (offline), runs its
script, and we check the DOM it dumps: table rows, the sort script's marks (and a sort it applied), and the
inline SVG plots. Screenshots (desktop and phone width) are kept as artifacts: under
$CORESET_BENCH_ARTIFACTS when set, else under pytest's temporary directory; their paths are printed.

Chromium is required, not optional: without it this test fails and says how to install it."""

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from benchmark.leaderboard.render import build_site

from tests.records import write_records
from tests.test_leaderboard import hand_records, v2_records

CHROMIUM = os.environ.get("CORESET_BENCH_CHROMIUM", "/usr/bin/chromium")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--hide-scrollbars"]


def _chromium() -> str:
    path = CHROMIUM if os.path.isfile(CHROMIUM) else shutil.which("chromium")
    if not path:
        pytest.fail(f"Chromium not found at {CHROMIUM}: install Debian's chromium (`apt-get install chromium`; "
                    "the CI installs it) or set CORESET_BENCH_CHROMIUM to its path. This test is not skipped.")
    return path


def _run(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    result = subprocess.run([_chromium(), *FLAGS, f"--user-data-dir={profile}", *args], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result


class _Rows(HTMLParser):
    """Collects, per table id, the text of each body row's cells, and the attributes of every element."""

    def __init__(self):
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.elements: list[tuple[str, dict]] = []
        self._table = None
        self._in_body = False
        self._cell = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs))
        if tag == "table":
            self._table = attrs.get("id")
            self.tables[self._table] = []
        elif tag == "tbody":
            self._in_body = True
        elif tag == "tr" and self._in_body:
            self.tables[self._table].append([])
        elif tag == "td" and self._in_body:
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "tbody":
            self._in_body = False
        elif tag == "td" and self._cell is not None:
            self.tables[self._table][-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)


def _artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("CORESET_BENCH_ARTIFACTS") or tmp_path / "artifacts")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_page_renders_sorts_and_draws_in_chromium(tmp_path):
    write_records(tmp_path / "submissions", hand_records())
    build_site([tmp_path / "submissions"], tmp_path / "site", include_unpublished=True)
    page = (tmp_path / "site" / "index.html").resolve().as_uri()

    # the worst-case mean is column 4 of the runs table: sort ascending from the URL fragment
    dom = _run(["--dump-dom", f"{page}#sort=g0-results.4.asc"], tmp_path / "profile").stdout
    parsed = _Rows()
    parsed.feed(dom)
    html_tag = next(attrs for tag, attrs in parsed.elements if tag == "html")
    # ranked tables at 0.1 and 0.5, table 1, FGSM and worst-case tables, the runs table, and the one fraction
    # with a robustness-beyond-accuracy fit: all wired by the script
    assert html_tag.get("data-sortable-tables") == "7"
    headers = [attrs for tag, attrs in parsed.elements if tag == "th"]
    assert headers and all("sortable" in attrs.get("class", "") for attrs in headers)
    results = parsed.tables["g0-results"]
    assert len(results) == 7  # random, mine, meh, one at 0.1; random, mine at 0.5; full
    worst = [float(row[4].split(" ± ")[0]) for row in results]
    assert worst == sorted(worst) and worst != [float(r[4].split(" ± ")[0]) for r in _unsorted(tmp_path)]
    assert 'aria-sort="ascending"' in dom and 'data-sorted="4.asc"' in dom
    assert [row[0] for row in parsed.tables["g0-table1"]] == ["random", "meh", "mine", "one", "full"]
    assert [row[1] for row in parsed.tables["g0-rank0"]][:1] == ["mine"]  # best worst case first

    plots = re.findall(r"<svg[^>]*class=\"plot\"[^>]*accuracy against eps.*?</svg>", dom, flags=re.S)
    assert len(plots) == 4, "expected the worst case and FGSM per fraction in the rendered DOM"
    assert len(re.findall(r"<svg[^>]*class=\"plot\"[^>]*robust against clean accuracy", dom)) == 1
    assert all(len(re.findall(r"<path\b", plot)) > 10 for plot in plots) and "fraction 0.5" in plots[2]

    artifacts = _artifacts(tmp_path)
    for name, size in (("leaderboard-desktop.png", "1280,2000"), ("leaderboard-phone.png", "390,2400")):
        shot = artifacts / name
        shot.unlink(missing_ok=True)
        _run([f"--screenshot={shot}", f"--window-size={size}", page], tmp_path / "profile")
        data = shot.read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 20_000
        assert int.from_bytes(data[16:20], "big") == int(size.split(",")[0])  # the PNG's width
        print(f"screenshot: {shot}")


def test_the_ranking_caveats_and_verdicts_fit_1280_pixels_without_sideways_scrolling(tmp_path):
    write_records(tmp_path / "submissions", v2_records())
    build_site([tmp_path / "submissions"], tmp_path / "site")
    page = (tmp_path / "site" / "index.html").resolve().as_uri()
    dom = _run(["--window-size=1280,2000", "--dump-dom", f"{page}#measure"], tmp_path / "profile").stdout
    parsed = _Rows()
    parsed.feed(dom)
    root = next(attrs for tag, attrs in parsed.elements if tag == "html")
    assert int(root["data-measured"]) == 2  # the caveats and the one ranked table
    width = int(root["data-window-width"])
    assert width == 1280 and int(root["data-scroll-width"]) <= width
    assert int(root["data-measured-right"]) <= width
    verdicts = [row[5] for row in parsed.tables["g0-rank0"]]
    assert any(v.startswith("better") for v in verdicts)


def _unsorted(tmp_path: Path) -> list[list[str]]:
    """The results table's rows in the order the page lists them (before any sorting)."""
    parsed = _Rows()
    parsed.feed((tmp_path / "site" / "index.html").read_text())
    return parsed.tables["g0-results"]
