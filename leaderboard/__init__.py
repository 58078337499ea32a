"""The leaderboard: run records in, pages out (`python -m benchmark leaderboard`).

`aggregate` turns validated records into tables (pandas); `render` writes `leaderboard.md`, `index.html`
(Jinja2 templates in `templates/`, robustness curves as inline SVG) and copies of the records.
"""

from leaderboard.aggregate import Group, build_groups, paired_difference
from leaderboard.render import build_site

__all__ = ["Group", "build_groups", "build_site", "paired_difference"]
