"""Tables -> pages: `leaderboard.md` (pandas + tabulate), `index.html` (Jinja2, autoescaped) with the
robustness curves drawn by matplotlib (Agg) as SVG and the adversarial examples as PNG, both inlined in the
page, and `records/` (copies of the record files each row links to, so the site is self-contained).

Strings from records are untrusted: the schema refuses control and separator characters, the HTML template
autoescapes them, only http(s) URLs become links, Markdown cells are escaped (every character with a meaning
in Markdown tables, links, emphasis or HTML), and plot labels are escaped before matplotlib sees them.
Nothing here imports torch or any selector: a submitted selector's code never runs when pages are built.
The site is written into a temporary directory next to `out` and renamed into place, so a failure leaves the
previous site (or nothing) and never half a site; a build that was killed leaves a temporary directory that
the next build removes."""

from __future__ import annotations

import base64
import io
import json
import math
import os
import re
import shutil
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterable
from pathlib import Path

import jinja2
import matplotlib
import numpy as np
import pandas as pd
from benchmark.leaderboard.aggregate import FULL, RANDOM, WORST, Group, Paired, build_groups, table1
from benchmark.leaderboard.study import study_view
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import benchmark
from benchmark.errors import UserError
from benchmark.schema import RecordFile, load_records
from benchmark.storage import WRITER, remove_stale_temporaries, slug

MARKER = ".coreset-bench-site"  # marks a directory this module wrote, so it may be replaced
TEMPLATES = Path(__file__).resolve().parent / "templates"
PUBLISHED_PRESETS = ("cifar10-cpu", "standard")  # the presets the published board takes
GALLERY_MAX_BYTES = 1 << 20
SELECTION_TIME_NOTE = ("Selection time is the selector's own, given its proxies' outputs; training the proxies (the "
                       "shared one, once per seed, and any a method trains for itself) is not counted in it.")
_RC = {"svg.hashsalt": "coreset-bench", "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10,
       "font.family": "DejaVu Sans", "path.simplify": False}


# --- small formatting helpers, shared by both pages ------------------------------------------------------
def safe_url(url) -> str | None:
    """`url` when it is a plain http(s) URL, else None (javascript:, data:, relative paths, junk)."""
    if not isinstance(url, str):
        return None
    url = url.strip()
    if not url or any(ord(c) < 33 or c in "\"'<>`\\" for c in url):
        return None
    parts = urllib.parse.urlsplit(url)
    return url if parts.scheme.lower() in ("http", "https") and parts.netloc else None


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


def pct(value, digits: int = 2) -> str:
    return f"{100 * value:.{digits}f}" if _finite(value) else "n/a"


def pm(mean, std, digits: int = 2, scale: float = 100) -> str:
    """'mean ± std' (std n/a for one seed)."""
    if not _finite(mean):
        return "n/a"
    spread = f"{scale * std:.{digits}f}" if _finite(std) else "n/a"
    return f"{scale * mean:.{digits}f} ± {spread}"


def eps_text(eps: float, threat: str = "Linf") -> str:
    return f"{eps * 255:.4g}/255" if threat == "Linf" else f"{eps:.4g} (L2)"


def fraction_text(fraction: float) -> str:
    return f"{fraction:g}"


def paired_text(paired: Paired | None) -> str:
    if paired is None:
        return "(baseline)"
    if paired.n == 0:
        return "no Random run to pair with"
    if not paired.has_interval:
        return f"{100 * paired.mean:+.2f} (1 pair: no interval)"
    mark = " *" if paired.significant else ""
    return f"{100 * paired.mean:+.2f} [{100 * paired.low:+.2f}, {100 * paired.high:+.2f}]{mark}"


def holm_text(paired: Paired | None) -> str:
    if paired is None or not paired.has_interval or not _finite(paired.adjusted):
        return "—"
    verdict = "better" if paired.mean > 0 else "worse"
    return f"{verdict} (p = {paired.adjusted:.3f})" if paired.significant_adjusted else \
        f"no difference (p = {paired.adjusted:.2f})"


def markdown_escape(text) -> str:
    """Cell text that Markdown renders as itself: every whitespace run (newlines, tabs, separators) becomes
    one space, and characters with a meaning in tables, links, emphasis, code, strikethrough or HTML are
    escaped (so no link, autolink, image or row can be made from a record's strings)."""
    text = re.sub(r"\s+", " ", str(text), flags=re.UNICODE)
    text = re.sub(r"([\\`*_\[\]|#~])", r"\\\1", text)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _value(value, scale: float = 100):
    """A number for data-value attributes (sortable), '' when missing."""
    return "" if not _finite(value) else repr(round(scale * value, 6))


# --- plots --------------------------------------------------------------------------------------------------
def _plot_label(text: str) -> str:
    text = text.replace("$", r"\$")  # no mathtext from a record's string
    return " " + text if text.startswith("_") else text  # labels starting with _ are hidden by matplotlib


def method_colors(labels: list[str], methods: list[str]) -> dict[str, tuple]:
    """Random black, full grey, the others from tab20 (then again with a dashed line, past 20)."""
    palette = matplotlib.colormaps["tab20"].colors
    colors, others = {}, 0
    for label, method in zip(labels, methods):
        if method == RANDOM:
            colors[label] = ((0.0, 0.0, 0.0), "-")
        elif method == FULL:
            colors[label] = ((0.5, 0.5, 0.5), "--")
        else:
            colors[label] = (palette[(2 * others) % 20 + (others // 10) % 2], "-" if others < 20 else ":")
            others += 1
    return colors


def _prefix_ids(svg: str, prefix: str) -> str:
    """Several SVGs share one HTML page: make their element ids (and references to them) unique. Only tags
    are rewritten (text content, which holds record strings, never contains a raw `<` or `>`)."""
    def tag(match: re.Match) -> str:
        text = re.sub(r'(\s)id="([^"]+)"', lambda m: f'{m.group(1)}id="{prefix}{m.group(2)}"', match.group(0))
        text = re.sub(r"url\(#([^)]+)\)", lambda m: f"url(#{prefix}{m.group(1)})", text)
        return re.sub(r'(\s(?:xlink:)?href)="#([^"]+)"', lambda m: f'{m.group(1)}="#{prefix}{m.group(2)}"', text)
    return re.sub(r"<[^<>]+>", tag, svg)


def _curve(row, attack: str, eps_values: list[tuple[str, float]]) -> tuple[list[float], list[float] | None]:
    """(mean, std) in % at eps 0 (clean) and each eps of the attack."""
    mean, std = [100 * row.clean_mean], [100 * row.clean_std if _finite(row.clean_std) else math.nan]
    for threat, eps in eps_values:
        m, s = row.measures.get((attack, threat, eps), (math.nan, math.nan))
        mean.append(100 * m)
        std.append(100 * s)
    return mean, (std if row.n > 1 and all(map(math.isfinite, std)) else None)


def robustness_svgs(group: Group, order: list[str], colors: dict) -> list[dict]:
    """For each fraction (a row) and each attack of the suite plus the worst case (a panel), accuracy
    against eps with eps 0 the clean accuracy: mean over seeds with a band of ± 1 std, every method a line
    whose SVG id ends in -m<index> (the page's checkboxes show and hide them). `full` is drawn in every row as
    the reference. Deterministic: fixed hash salt, no date, no pyplot state."""
    summary = group.summary
    fractions = [f for f in group.fractions if not (summary[summary["fraction"] == f]["method"] == FULL).all()]
    fractions = fractions or group.fractions
    full = summary[summary["method"] == FULL]
    panels = []
    for attack in [WORST] + [a for a in group.attacks if a != WORST]:
        threats = sorted({t for name, t, _ in group.measures if name == attack})
        for threat in threats:
            panels.append((attack, threat, [(t, e) for name, t, e in group.measures if name == attack and t == threat]))
    rows = []
    for row_index, fraction in enumerate(fractions):
        members = [r for r in summary.itertuples() if r.fraction == fraction]
        members += [r for r in full.itertuples() if r.fraction != fraction]
        svgs = []
        for panel_index, (attack, threat, eps_values) in enumerate(panels):
            xs = [0.0] + [e * 255 if threat == "Linf" else e for _, e in eps_values]
            with matplotlib.rc_context(_RC):
                figure = Figure(figsize=(3.3, 2.9), layout="constrained")
                FigureCanvasAgg(figure)
                ax = figure.subplots()
                for row in sorted(members, key=lambda r: order.index(r.label)):
                    mean, std = _curve(row, attack, eps_values)
                    color, style = colors[row.label]
                    index = order.index(row.label)
                    line, = ax.plot(range(len(xs)), mean, style, marker="o", markersize=2.5, linewidth=1.2,
                                    color=color, label=_plot_label(row.label))
                    line.set_gid(f"m{index}-line")
                    if std:
                        band = ax.fill_between(range(len(xs)), [m - s for m, s in zip(mean, std)],
                                               [m + s for m, s in zip(mean, std)], color=color, alpha=0.12,
                                               linewidth=0)
                        band.set_gid(f"m{index}-band")
                ax.set_xticks(range(len(xs)), ["0"] + [f"{x:g}" for x in xs[1:]])
                ax.set_ylim(0, 100 * max(max(r.clean_mean for r in members), 0.01) * 1.05)
                name = "worst case" if attack == WORST else attack
                ax.set_title(f"{name}, fraction {fraction:g}")
                ax.set_xlabel("eps (/255)" if threat == "Linf" else "eps (L2)")
                ax.set_ylabel("accuracy (%)")
                ax.grid(True, alpha=0.3)
                buffer = io.StringIO()
                figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
            svg = buffer.getvalue()
            svg = svg[svg.index("<svg"):]  # drop the XML declaration and doctype: the SVG is inlined in HTML
            svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)  # a global * rule; the page's CSS scopes it
            svg = svg.replace("<svg ", f'<svg class="plot" role="img" aria-label="{name} accuracy against eps at '
                              f'fraction {fraction:g}" ', 1)
            svgs.append(Markup(_prefix_ids(svg, f"{group.id}-f{row_index}-p{panel_index}-")))  # escaped labels
        rows.append({"fraction": fraction_text(fraction), "svgs": svgs})
    return rows


# --- adversarial examples -----------------------------------------------------------------------------------
def _png(pixels: np.ndarray) -> str:
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def load_gallery(path: Path) -> dict | None:
    """A run's gallery artifact, read without pickles and within bounds (it comes with untrusted records);
    None when it is missing, a link, too large or not as the harness writes it."""
    try:
        if path.is_symlink() or not path.is_file() or path.stat().st_size > GALLERY_MAX_BYTES:
            return None
        with zipfile.ZipFile(path) as archive:
            if sum(info.file_size for info in archive.infolist()) > 8 * GALLERY_MAX_BYTES:
                return None
        with np.load(path, allow_pickle=False) as stored:
            data = {name: stored[name] for name in stored.files}
        clean = data["clean"]
        if clean.dtype != np.uint8 or clean.ndim != 4 or clean.shape[0] > 16 or clean.shape[1] not in (1, 3) \
                or max(clean.shape[2:]) > 256:
            return None
        count = len(data["eps"])
        for i in range(count):
            if data[f"adversarial_{i}"].shape != clean.shape or data[f"adversarial_{i}"].dtype != np.uint8:
                return None
        names = [str(name) for name in data["class_names"]]
        for key in ["labels", "clean_predictions"] + [f"predictions_{i}" for i in range(count)]:
            if data[key].shape != (clean.shape[0],) or not ((0 <= data[key]) & (data[key] < len(names))).all():
                return None
        return {**data, "class_names": names}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError):
        return None


def _cells(data: dict, images: np.ndarray, predictions: np.ndarray) -> list[dict]:
    names = data["class_names"]
    return [{"src": _png(image.transpose(1, 2, 0)), "true": names[int(label)], "predicted": names[int(p)],
             "right": int(p) == int(label)} for image, label, p in zip(images, data["labels"], predictions)]


def gallery_view(row) -> dict | None:
    """The first seed's examples of one summary row, as rows of images with their labels."""
    for path in row.galleries:
        data = load_gallery(path)
        if data is None:
            continue
        versions = [{"title": "clean", "cells": _cells(data, data["clean"], data["clean_predictions"])}]
        for i, eps in enumerate(data["eps"]):
            versions.append({"title": f"{str(data['attack'])} at {eps_text(float(eps))}",
                             "cells": _cells(data, data[f"adversarial_{i}"], data[f"predictions_{i}"])})
        return {"label": row.label, "fraction": fraction_text(row.fraction), "versions": versions}
    return None


# --- view model ------------------------------------------------------------------------------------------
def _record_links(paths: list[Path], hrefs: dict[Path, str], seeds: list[int]) -> list[dict]:
    return [{"text": f"s{seed}", "href": hrefs[path]} for seed, path in zip(seeds, paths)]


def _cell(mean, std, digits: int = 2, scale: float = 100) -> dict:
    return {"text": pm(mean, std, digits, scale), "value": _value(mean, scale)}


def _comparison(paired: Paired | None) -> dict:
    return {"text": paired_text(paired), "holm": holm_text(paired),
            "value": "" if paired is None or paired.n == 0 else _value(paired.mean),
            "significant": bool(paired is not None and paired.significant_adjusted),
            "up": bool(paired is not None and _finite(paired.mean) and paired.mean > 0)}


def caveats(group: Group) -> list[str]:
    """What a reader must know before trusting the section's numbers, stated where the numbers are."""
    facts = group.facts
    seeds = len(facts["seeds"])
    test_set = (f"a test set of {', '.join(map(str, facts['test_size']))} images" if facts["test_size"] else
                "a test set whose size the records do not state (version 1)")
    lines = [f"Scale: {', '.join(map(str, facts['pool_size']))} pool images, {test_set}, {facts['epochs']} epochs of "
             f"{facts['model']}."]
    if _finite(facts["full_clean"]):
        lines.append(f"A model on the whole pool reaches {100 * facts['full_clean']:.1f} % clean accuracy here: "
                     f"these numbers compare methods at this scale and say little about full-scale training.")
    lines.append(f"Each cell is the mean ± sample std over the seeds of that row ({seeds} seed(s) at most); with "
                 f"three seeds, differences of a few points are within the noise, as the intervals show.")
    if group.schema.endswith("/1"):
        lines.append("Version 1 records: FGSM alone, and an image wrong when clean but classified correctly under "
                     "attack counts as robust, so robustness is overstated (and can rise with eps).")
    else:
        attacks = ", ".join(name for name in group.attacks if name != WORST)
        lines.append(f"Robust accuracy counts an image only if it is classified correctly both clean and under "
                     f"attack; the worst case is over {attacks}, image by image. Ranked by the worst case at "
                     f"{eps_text(group.headline_eps)}.")
        if facts.get("cross_check_images"):
            lines.append(f"Every attack was cross-checked against an independent implementation on "
                         f"{facts['cross_check_images']} images per eps in every run (a disagreement beyond its "
                         f"tolerance fails the run).")
    if facts["flagged"]:
        lines.append(f"{facts['flagged']} of {facts['records']} runs are flagged (near-chance model, too few "
                     f"training steps, or a failed sanity check of the attacks): see the flags column.")
    return lines


def views(groups: list[Group], hrefs: dict[Path, str]) -> list[dict]:
    """What the templates show, per group: formatted text next to the plain numbers (for sorting)."""
    return [_view(group, hrefs) for group in groups]


def _view(group: Group, hrefs: dict[Path, str]) -> dict:
    summary = group.summary
    table = table1(summary)
    order = table.index.tolist()
    methods = [summary[summary["label"] == label]["method"].iloc[0] for label in order]
    colors = method_colors(order, methods)
    rows = []
    for row in summary.itertuples():
        url = safe_url(row.url)
        rows.append({
            "label": row.label, "method": row.method, "params": row.params_text, "paper": row.paper, "url": url,
            "fraction": row.fraction, "budget": row.budget, "n": row.n, "index": order.index(row.label),
            "headline": _cell(row.headline_mean, row.headline_std),
            "clean": _cell(row.clean_mean, row.clean_std),
            "relative": {"text": pm(row.relative_mean, row.relative_std, digits=1)
                         + (" †" if row.relative_fallback else ""), "value": _value(row.relative_mean)},
            "worst_mean": _cell(row.worst_mean_mean, row.worst_mean_std),
            "vs_headline": _comparison(row.vs_random_headline), "vs_clean": _comparison(row.vs_random_clean),
            "seconds": _cell(row.select_seconds_mean, row.select_seconds_std, scale=1),
            "flags": row.flags, "flagged_runs": row.flagged_runs,
            "records": _record_links(row.paths, hrefs, row.seeds),
            "measures": row.measures,
        })
    ranked = []
    for fraction in group.fractions:
        members = [r for r in rows if r["fraction"] == fraction]
        if all(r["method"] == FULL for r in members):
            continue
        scored = [r for r in members if r["method"] != FULL]
        ranked.append({"fraction": fraction_text(fraction),
                       "rows": [{**r, "rank": i + 1} for i, r in enumerate(scored)]})
    full_rows = [r for r in rows if r["method"] == FULL]
    attack_tables = []
    for attack in group.attacks:
        for threat in sorted({t for name, t, _ in group.measures if name == attack}):
            eps_values = [e for name, t, e in group.measures if name == attack and t == threat]
            attack_tables.append({
                "name": "worst case" if attack == WORST else attack, "eps": [eps_text(e, threat) for e in eps_values],
                "rows": [{"label": r["label"], "url": r["url"], "fraction": r["fraction"],
                          "cells": [_cell(*r["measures"].get((attack, threat, e), (math.nan, math.nan)))
                                    for e in eps_values]} for r in rows]})
    table1_rows = []
    first = {row.label: (row.method, row.paper, row.url) for row in summary.itertuples()}
    for label, cells in table.iterrows():
        method, paper, url = first[label]
        table1_rows.append({"label": label, "method": method, "paper": paper, "url": safe_url(url),
                            "cells": [{"text": "—", "value": "", "n": 0} if cell is None else
                                      {"text": pm(cell[0], cell[1]), "value": _value(cell[0]), "n": cell[2]}
                                      for cell in cells]})
    galleries = [g for g in (gallery_view(row) for row in summary.itertuples()
                             if row.fraction == min(group.fractions)) if g is not None]
    legend = [{"index": i, "label": label, "color": matplotlib.colors.to_hex(colors[label][0]),
               "dashed": colors[label][1] != "-"} for i, label in enumerate(order)]
    return {"id": group.id, "title": group.title, "facts": group.facts, "schema": group.schema,
            "headline_eps": eps_text(group.headline_eps), "caveats": caveats(group),
            "fractions": [fraction_text(f) for f in table.columns], "table1": table1_rows, "ranked": ranked,
            "full_rows": full_rows, "attack_tables": attack_tables, "rows": rows, "legend": legend,
            "curves": robustness_svgs(group, order, colors), "galleries": galleries,
            "attacks": [a for a in group.attacks if a != WORST], "study": study_view(group),
            "protocol": json.dumps(group.protocol, sort_keys=True)}


# --- pages --------------------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True)
    environment.filters["fraction"] = fraction_text
    return environment


def render_html(views: list[dict], *, records: int) -> str:
    return _environment().get_template("index.html.j2").render(groups=views, version=benchmark.__version__,
                                                               records=records, published=PUBLISHED_PRESETS,
                                                               selection_time_note=SELECTION_TIME_NOTE)


def _facts_line(facts: dict) -> str:
    return (f"dataset {facts['dataset']}, pool size {', '.join(map(str, facts['pool_size']))}, test set "
            f"{', '.join(map(str, facts['test_size'])) or 'n/a'}, model {facts['model']}, preset {facts['preset']}, "
            f"{facts['epochs']} epochs, lr {', '.join(f'{x:g}' for x in facts['lrs'])}, batch {facts['batch_size']}, "
            f"proxy {facts['proxy_epochs']} epochs, eps grid {', '.join(f'{e:g}' for e in facts['eps_255'])} /255, "
            f"seeds {', '.join(map(str, facts['seeds']))}; records written by coreset-bench "
            f"{', '.join(facts['packages'])} on {', '.join(facts['devices'])}")


def _md_table(columns: list[str], rows: list[list]) -> str:
    return pd.DataFrame(rows, columns=columns).to_markdown(index=False, disable_numparse=True)


def render_markdown(groups: list[Group], views: list[dict], *, records: int) -> str:
    lines = ["# coreset-bench leaderboard", "",
             f"Built by coreset-bench {benchmark.__version__} from {records} record(s). Accuracies in %, "
             "mean ± sample std over seeds (n/a for one seed). Robust accuracy counts an image only if it is "
             "classified correctly clean and under attack; the worst case is over every attack of the suite. "
             "vs Random: paired by seed, mean difference in points [95 % t interval], * when that interval "
             "excludes zero; the verdict is Holm-adjusted over all comparisons of the section.", ""]
    for group, view in zip(groups, views):
        lines += [f"## {markdown_escape(group.title)}", "", markdown_escape(_facts_line(group.facts)), ""]
        lines += [f"- {markdown_escape(text)}" for text in view["caveats"]] + [""]
        for ranked in view["ranked"]:
            lines += [f"### Ranking at fraction {ranked['fraction']}: worst-case robust accuracy at "
                      f"{view['headline_eps']} (%)", ""]
            lines += [_md_table(["#", "method", "robust", "clean", "rel. to full", "robust vs Random", "verdict",
                                 "clean vs Random", "verdict", "seeds", "flags"],
                                [[r["rank"], _md_link(r["label"], r["url"]), r["headline"]["text"], r["clean"]["text"],
                                  r["relative"]["text"], markdown_escape(r["vs_headline"]["text"]),
                                  markdown_escape(r["vs_headline"]["holm"]), markdown_escape(r["vs_clean"]["text"]),
                                  markdown_escape(r["vs_clean"]["holm"]), r["n"],
                                  markdown_escape(", ".join(r["flags"])) or "-"] for r in ranked["rows"]]), ""]
        if view["full_rows"]:
            lines += [f"Reference: full pool, clean {', '.join(r['clean']['text'] for r in view['full_rows'])}, "
                      f"worst case at {view['headline_eps']} "
                      f"{', '.join(r['headline']['text'] for r in view['full_rows'])}.", ""]
        lines += ["### Clean accuracy (%) by fraction", ""]
        lines += [_md_table(["method"] + view["fractions"],
                            [[_md_link(row["label"], row["url"])] + [c["text"] for c in row["cells"]]
                             for row in view["table1"]]), ""]
        for attack in view["attack_tables"]:
            lines += [f"### {markdown_escape(attack['name'])}: robust accuracy (%)", ""]
            lines += [_md_table(["method", "fraction"] + attack["eps"],
                                [[_md_link(r["label"], r["url"]), fraction_text(r["fraction"])]
                                 + [c["text"] for c in r["cells"]] for r in attack["rows"]]), ""]
        lines += ["### Runs", "", SELECTION_TIME_NOTE, ""]
        lines += [_md_table(["method", "paper", "params", "fraction", "budget", "selection s", "records"],
                            [[_md_link(r["label"], r["url"]), markdown_escape(r["paper"]),
                              markdown_escape(r["params"]) or "-",
                              fraction_text(r["fraction"]), r["budget"], r["seconds"]["text"],
                              " ".join(f"[{x['text']}]({x['href']})" for x in r["records"])]
                             for r in view["rows"]]), ""]
        if view["study"]:
            lines += ["### The study, re-measured", ""] + [f"- {markdown_escape(c['text'])}: "
                                                           f"{markdown_escape(c['verdict'])}"
                                                           for c in view["study"]["conclusions"]] + [""]
    return "\n".join(lines)


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
    others = sorted({item.record["preset"] for item in records if item.record["preset"] not in PUBLISHED_PRESETS})
    if others:
        count = sum(1 for item in records if item.record["preset"] not in PUBLISHED_PRESETS)
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
    remove_stale_temporaries(out.parent)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.{WRITER}.", suffix=".tmp", dir=out.parent))
    try:
        shown = views(groups, _copy_records(records, staging))
        (staging / "index.html").write_text(render_html(shown, records=len(records)), encoding="utf-8")
        (staging / "leaderboard.md").write_text(render_markdown(groups, shown, records=len(records)),
                                                encoding="utf-8")
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
