"""Views -> pages: `index.html` and `leaderboard.md` from their Jinja2 templates in `templates/` (the HTML
autoescaped, the Markdown through the `md` filter), and `records/` (copies of the record files each row links to,
so the site is self-contained). The numbers and their text come from `view`; nothing here computes one.

Strings from records are untrusted: the schema refuses control and separator characters, the HTML template
autoescapes them, only http(s) URLs become links, Markdown cells are escaped (every character with a meaning
in Markdown tables, links, emphasis or HTML), and plot labels are escaped before matplotlib sees them.
Nothing here imports torch or any selector: a submitted selector's code never runs when pages are built.
The site is written into a temporary directory next to `out` and renamed into place, so a failure leaves the
previous site (or nothing) and never half a site; a build that was killed leaves a temporary directory that
the next build removes."""

from __future__ import annotations

import os
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable
from pathlib import Path

import jinja2
import pandas as pd
from benchmark.leaderboard.aggregate import Group, build_groups
from benchmark.leaderboard.view import SELECTION_TIME_NOTE, fraction_text, markdown_escape, safe_url, views

import benchmark
from benchmark.errors import UserError
from benchmark.schema import RecordFile, load_records
from benchmark.storage import WRITER, remove_stale_temporaries, slug

__all__ = ["MARKER", "PUBLISHED_PRESETS", "build_site", "markdown_escape", "safe_url"]
MARKER = ".coreset-bench-site"  # marks a directory this module wrote, so it may be replaced
TEMPLATES = Path(__file__).resolve().parent / "templates"
# the presets the published board takes: each clean-training board and its adversarially trained counterpart
PUBLISHED_PRESETS = ("cifar10-cpu", "cifar10-cpu-at", "standard", "standard-at")


# --- pages --------------------------------------------------------------------------------------------------
def _environment(*, html: bool) -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=html,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True)
    environment.filters["fraction"] = fraction_text
    environment.filters["md"] = markdown_escape
    environment.globals.update(md_table=_md_table, md_link=_md_link)
    return environment


def render_html(views: list[dict], *, records: int) -> str:
    return _environment(html=True).get_template("index.html.j2").render(
        groups=views, version=benchmark.__version__, records=records, published=PUBLISHED_PRESETS,
        selection_time_note=SELECTION_TIME_NOTE)


def render_markdown(views: list[dict], *, records: int) -> str:
    return _environment(html=False).get_template("leaderboard.md.j2").render(
        groups=views, version=benchmark.__version__, records=records, selection_time_note=SELECTION_TIME_NOTE)


def _md_table(columns: list[str], rows: list[list]) -> str:
    return pd.DataFrame(rows, columns=columns).to_markdown(index=False, disable_numparse=True)


def _md_link(text: str, url: str | None) -> str:
    return f"[{markdown_escape(text)}]({url})" if url else markdown_escape(text)


# --- the site -----------------------------------------------------------------------------------------------
def _copy_records(records: list[RecordFile], directory: Path) -> dict[Path, str]:
    """Copies each record (byte for byte) to `directory/records/`; returns path -> relative, quoted href."""
    target = directory / "records"
    target.mkdir()
    hrefs, used = {}, set()
    for item in records:
        name = slug(item.path.stem) or "record"
        candidate, counter = f"{name}.json", 1
        while candidate.lower() in used:
            counter += 1
            candidate = f"{name}-{counter}.json"
        used.add(candidate.lower())
        shutil.copyfile(item.path, target / candidate, follow_symlinks=False)
        hrefs[item.path] = "records/" + urllib.parse.quote(candidate)
    return hrefs


def published(records: list[RecordFile], include_unpublished: bool) -> list[RecordFile]:
    """The records the published board takes: those of its presets, unchanged. Others are refused, with what to
    do, unless `include_unpublished` (a local page)."""
    if include_unpublished:
        return records
    others = sorted({item.record.preset for item in records if item.record.preset not in PUBLISHED_PRESETS})
    if others:
        count = sum(1 for item in records if item.record.preset not in PUBLISHED_PRESETS)
        raise UserError(f"{count} record(s) of preset(s) {', '.join(others)}, which the published board does not take "
                        f"(it takes {', '.join(PUBLISHED_PRESETS)}): move them out of the records, or pass "
                        f"--include-unpublished for a local page")
    return records


def build_site(inputs: Iterable[Path], out: Path, *, include_unpublished: bool = False) -> list[Group]:
    """Validates every record under `inputs` (raises `SchemaError`, writing nothing, when any is invalid),
    then writes `out/index.html`, `out/leaderboard.md` and `out/records/`. `out` must be new, empty, or a
    site this function wrote before (it is then replaced as a whole)."""
    records = published(load_records(inputs), include_unpublished)
    out = Path(os.path.abspath(out))
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UserError(f"{out} exists and is not a leaderboard site written by coreset-bench; choose a new or "
                        "empty directory for --out")
    if out == Path(out.anchor):
        raise UserError("--out cannot be the root directory: choose a new or empty directory")
    groups = build_groups(records)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(out.parent, prefix=f"{out.name}.")  # only this site's: the parent is not ours
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{WRITER}.", suffix=".tmp", dir=out.parent))
    try:
        shown = views(groups, _copy_records(records, staging))
        (staging / "index.html").write_text(render_html(shown, records=len(records)), encoding="utf-8")
        (staging / "leaderboard.md").write_text(render_markdown(shown, records=len(records)), encoding="utf-8")
        (staging / MARKER).write_text("written by `python -m benchmark leaderboard`; replaced on each build\n")
        os.chmod(staging, 0o755)
        _replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return groups


def _replace(staging: Path, out: Path) -> None:
    if not out.exists():
        os.replace(staging, out)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.{WRITER}.", suffix=".old", dir=out.parent))
    os.replace(out, old / "site")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / "site", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
