"""The leaderboard: run records in, pages out (`python -m benchmark leaderboard`). Installed as
`benchmark.leaderboard`; it needs only the pages' dependencies (pandas, tabulate, Jinja2, matplotlib, scipy,
jsonschema), never torch, and never imports a selector.

`aggregate` turns validated records into tables; `render` writes `leaderboard.md`, `index.html` (Jinja2
templates in `templates/`, curves as inline SVG, adversarial examples as inline PNG) and copies of the records;
`study` checks the conclusions of the study this benchmark grew from.
"""

from benchmark.leaderboard.aggregate import Group, build_groups, paired_difference
from benchmark.leaderboard.render import PUBLISHED_PRESETS, build_site

__all__ = ["PUBLISHED_PRESETS", "Group", "build_groups", "build_site", "paired_difference"]
