"""The committed leaderboard data: every record under submissions/ is valid, and the published Markdown
page is exactly what the records render to (no number typed by hand, no stale page)."""

from benchmark.cli import main
from tests.conftest import REPO

SUBMISSIONS = REPO / "submissions"
PUBLISHED = REPO / "docs" / "leaderboard"


def test_committed_records_are_valid(capsys):
    assert main(["validate", str(SUBMISSIONS)]) == 0
    assert "record(s) valid" in capsys.readouterr().out


def test_published_pages_are_rendered_from_the_committed_records(tmp_path):
    assert main(["-q", "leaderboard", "--records", str(SUBMISSIONS), "--out", str(tmp_path / "site")]) == 0
    assert (tmp_path / "site" / "leaderboard.md").read_text() == (PUBLISHED / "leaderboard.md").read_text()
    published = sorted(p.name for p in (PUBLISHED / "records").iterdir())
    assert published == sorted(p.name for p in (tmp_path / "site" / "records").iterdir())
