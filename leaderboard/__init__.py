"""The leaderboard: run records in, pages out (`python -m benchmark leaderboard`). Installed as
`benchmark.leaderboard`; it needs only the pages' dependencies (pandas, tabulate, Jinja2, matplotlib, scipy,
jsonschema), never torch, and never imports a selector.

`aggregate` turns validated records into tables (with `statistics`: paired verdicts, power, rank intervals);
`view` makes them what the pages show (with `figures`: curves as inline SVG, adversarial examples as PNG) and
`study` sets the study this benchmark grew from beside them; `render` writes `leaderboard.md` and `index.html`
from the Jinja2 templates in `templates/`, and copies of the records.
"""

from benchmark.leaderboard.aggregate import Group, build_groups
from benchmark.leaderboard.render import PUBLISHED_PRESETS, build_site

__all__ = ["PUBLISHED_PRESETS", "Group", "build_groups", "build_site"]
