"""Tables -> pages: `leaderboard.md` (pandas + tabulate), `index.html` (Jinja2, autoescaped) with the
robustness curves drawn by matplotlib (Agg) as SVG inlined in the page, and `records/` (copies of the
record files each row links to, so the site is self-contained and can be published as it is).

Strings from records are untrusted: the HTML template autoescapes them, only http(s) URLs become links,
Markdown cells are escaped, and plot labels are escaped before matplotlib sees them (its SVG writer escapes
text again). The site is written into a temporary directory next to `out` and renamed into place, so a
failure leaves the previous site (or nothing) and never half a site."""

from __future__ import annotations

import io
import json
import math
import os
import re
import shutil
import tempfile
import urllib.parse
from collections.abc import Iterable, Mapping
from pathlib import Path

import jinja2
import matplotlib
import pandas as pd
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import benchmark
from benchmark.errors import UserError
from benchmark.records import slug
from benchmark.schema import RecordFile, load_records
from leaderboard.aggregate import FULL, RANDOM, Group, Paired, build_groups, table1

MARKER = ".coreset-bench-site"  # marks a directory this module wrote, so it may be replaced
TEMPLATES = Path(__file__).resolve().parent / "templates"
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


def eps_text(eps: float) -> str:
    return f"{eps * 255:.4g}/255"


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


def _markdown_escape(text: str) -> str:
    text = re.sub(r"([\\`*_\[\]|#])", r"\\\1", str(text))
    return text.replace("<", "&lt;").replace(">", "&gt;").replace("\n", " ")


def _value(value, scale: float = 100):
    """A number for data-value attributes (sortable), '' when missing."""
    return "" if not _finite(value) else repr(round(scale * value, 6))


# --- plots --------------------------------------------------------------------------------------------------
def _plot_label(text: str) -> str:
    text = text.replace("$", r"\$")  # no mathtext from a record's string
    return " " + text if text.startswith("_") else text  # labels starting with _ are hidden by matplotlib


def _colors(labels: list[str], methods: list[str]) -> dict[str, tuple]:
    palette = matplotlib.colormaps["tab10"].colors
    colors, others = {}, 0
    for label, method in zip(labels, methods):
        if method == RANDOM:
            colors[label] = (0.0, 0.0, 0.0)
        elif method == FULL:
            colors[label] = (0.5, 0.5, 0.5)
        else:
            colors[label] = palette[[1, 0, 2, 3, 4, 5, 6, 8, 9][others % 9]]
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


def robustness_svgs(group: Group) -> list[str]:
    """Accuracy against eps, one line per method (mean over seeds, band of ± 1 std), one panel per fraction
    (each its own SVG, so that panels sit side by side on a wide screen and stack on a phone), all on the
    same y range; the `full` run is drawn in every panel as the reference. Deterministic: fixed hash salt,
    no date, no pyplot state."""
    summary = group.summary
    eps = [e * 255 for e in group.eps]
    fractions = [f for f in group.fractions if not (summary[summary["fraction"] == f]["method"] == FULL).all()]
    fractions = fractions or group.fractions
    full = summary[summary["method"] == FULL]
    order = table1(summary).index.tolist()
    methods = [summary[summary["label"] == label]["method"].iloc[0] for label in order]
    colors = _colors(order, methods)
    curves = {}
    for row in summary.itertuples():
        mean = [100 * getattr(row, f"fgsm{i}_mean") for i in range(len(eps))]
        std = [100 * getattr(row, f"fgsm{i}_std") for i in range(len(eps))]
        curves[row.Index] = (mean, std if row.n > 1 and all(map(math.isfinite, std)) else None)
    low = min(min(m) - (max(s) if s else 0) for m, s in curves.values())
    high = max(max(m) + (max(s) if s else 0) for m, s in curves.values())
    pad = max(1.0, 0.05 * (high - low))
    svgs = []
    for panel, fraction in enumerate(fractions):
        rows = [row for row in summary.itertuples() if row.fraction == fraction]
        rows += [row for row in full.itertuples() if row.fraction != fraction]
        with matplotlib.rc_context(_RC):
            figure = Figure(figsize=(4.6, 3.9), layout="constrained")
            FigureCanvasAgg(figure)
            ax = figure.subplots()
            for row in sorted(rows, key=lambda r: order.index(r.label)):
                mean, std = curves[row.Index]
                label = row.label if row.method != FULL or row.fraction == fraction else f"{row.label} (1.0)"
                ax.plot(eps, mean, "--" if row.method == FULL else "-", marker="o", markersize=3.5, linewidth=1.4,
                        color=colors[row.label], label=_plot_label(label))
                if std:
                    ax.fill_between(eps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                                    color=colors[row.label], alpha=0.12, linewidth=0)
            if min(eps) > 0:
                ax.set_xscale("log", base=2)
            ax.set_xticks(eps, [f"{e:g}" for e in eps])
            ax.minorticks_off()
            ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
            ax.set_title(f"fraction {fraction:g}")
            ax.set_xlabel("FGSM eps (/255)")
            ax.set_ylabel("accuracy (%)")
            ax.grid(True, alpha=0.3)
            figure.legend(loc="outside lower center", ncol=min(len(rows), 3), frameon=False)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg"):]  # drop the XML declaration and doctype: the SVG is inlined in HTML
        svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)  # a global * rule; the page's CSS scopes it
        svg = svg.replace("<svg ", f'<svg class="plot" role="img" aria-label="robustness curves at fraction '
                          f'{fraction:g}" ', 1)
        svgs.append(_prefix_ids(svg, f"{group.id}-p{panel}-"))
    return svgs


# --- view model ------------------------------------------------------------------------------------------
def _record_links(paths: list[Path], hrefs: Mapping[Path, str], seeds: list[int]) -> list[dict]:
    return [{"text": f"s{seed}", "href": hrefs[path]} for seed, path in zip(seeds, paths)]


def views(groups: list[Group], urls: Mapping[str, str], hrefs: Mapping[Path, str]) -> list[dict]:
    """What the templates show, per group: formatted text next to the plain numbers (for sorting)."""
    return [_view(group, urls, hrefs) for group in groups]


def _view(group: Group, urls: Mapping[str, str], hrefs: Mapping[Path, str]) -> dict:
    rows = []
    for row in group.summary.itertuples():
        fgsm = [{"text": pm(getattr(row, f"fgsm{i}_mean"), getattr(row, f"fgsm{i}_std")),
                 "value": _value(getattr(row, f"fgsm{i}_mean"))} for i in range(len(group.eps))]
        comparisons = []
        for name in ("clean", "fgsm_mean"):
            paired = getattr(row, f"vs_random_{name}")
            comparisons.append({"text": paired_text(paired),
                                "value": "" if paired is None or paired.n == 0 else _value(paired.mean),
                                "significant": bool(paired is not None and paired.significant)})
        rows.append({
            "label": row.label, "method": row.method, "params": row.params_text, "paper": row.paper,
            "url": safe_url(urls.get(row.method)), "fraction": row.fraction, "budget": row.budget, "n": row.n,
            "clean": {"text": pm(row.clean_mean, row.clean_std), "value": _value(row.clean_mean)},
            "relative": {"text": pm(row.relative_mean, row.relative_std, digits=1)
                         + (" †" if row.relative_fallback else ""), "value": _value(row.relative_mean)},
            "fgsm": fgsm,
            "fgsm_mean": {"text": pm(row.fgsm_mean_mean, row.fgsm_mean_std), "value": _value(row.fgsm_mean_mean)},
            "comparisons": comparisons,
            "seconds": {"text": pm(row.select_seconds_mean, row.select_seconds_std, digits=2, scale=1),
                        "value": _value(row.select_seconds_mean, scale=1)},
            "records": _record_links(row.paths, hrefs, row.seeds),
        })
    table = table1(group.summary)
    first_method = {row.label: (row.method, row.paper) for row in group.summary.itertuples()}
    table1_rows = []
    for label, cells in table.iterrows():
        method, paper = first_method[label]
        table1_rows.append({"label": label, "method": method, "paper": paper, "url": safe_url(urls.get(method)),
                            "cells": [{"text": "—", "value": "", "n": 0} if cell is None else
                                      {"text": pm(cell[0], cell[1]), "value": _value(cell[0]), "n": cell[2]}
                                      for cell in cells]})
    return {"id": group.id, "title": group.title, "facts": group.facts, "eps": [eps_text(e) for e in group.eps],
            "fractions": [fraction_text(f) for f in table.columns], "table1": table1_rows, "rows": rows,
            "protocol": json.dumps(group.protocol, sort_keys=True),
            "svgs": [Markup(svg) for svg in robustness_svgs(group)]}  # ours: matplotlib escaped the labels


# --- pages --------------------------------------------------------------------------------------------------
def _environment() -> jinja2.Environment:
    environment = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), autoescape=True,
                                      undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                                      keep_trailing_newline=True)
    environment.filters["fraction"] = fraction_text
    return environment


def render_html(views: list[dict], *, records: int) -> str:
    return _environment().get_template("index.html.j2").render(groups=views, version=benchmark.__version__,
                                                               records=records)


def _facts_line(facts: dict) -> str:
    return (f"dataset {facts['dataset']}, pool size {', '.join(map(str, facts['pool_size']))}, model {facts['model']}, "
            f"preset {facts['preset']}, {facts['epochs']} epochs, lr {', '.join(f'{x:g}' for x in facts['lrs'])}, "
            f"batch {facts['batch_size']}, proxy {facts['proxy_epochs']} epochs, "
            f"FGSM eps {', '.join(f'{e:g}' for e in facts['eps_255'])} /255, "
            f"seeds {', '.join(map(str, facts['seeds']))}; records written by coreset-bench "
            f"{', '.join(facts['packages'])}")


def render_markdown(groups: list[Group], views: list[dict], *, records: int) -> str:
    lines = ["# coreset-bench leaderboard", "",
             f"Built by coreset-bench {benchmark.__version__} from {records} record(s). Accuracies in %, "
             "mean ± sample std over seeds (n/a for one seed). † relative to the mean `full` run for a seed "
             "without its own. vs Random: paired by seed, mean difference in points [95 % t interval], "
             "* when the interval excludes zero.", ""]
    for group, view in zip(groups, views):
        lines += [f"## {_markdown_escape(group.title)}", "", _markdown_escape(_facts_line(group.facts)), "",
                  "### Clean accuracy (%) by fraction", ""]
        table = pd.DataFrame([[_markdown_link(row["label"], row["url"])] + [c["text"] for c in row["cells"]]
                              for row in view["table1"]], columns=["method"] + view["fractions"])
        lines += [table.to_markdown(index=False, disable_numparse=True), "", "### All results", ""]
        columns = (["method", "params", "fraction", "seeds", "clean", "rel. to full"]
                   + [f"FGSM {e}" for e in view["eps"]]
                   + ["FGSM mean", "clean vs Random", "FGSM mean vs Random", "selection s", "records"])
        data = [[_markdown_link(row["label"], row["url"]), _markdown_escape(row["params"]),
                 fraction_text(row["fraction"]), row["n"], row["clean"]["text"], row["relative"]["text"]]
                + [cell["text"] for cell in row["fgsm"]]
                + [row["fgsm_mean"]["text"]] + [_markdown_escape(c["text"]) for c in row["comparisons"]]
                + [row["seconds"]["text"], " ".join(f"[{r['text']}]({r['href']})" for r in row["records"])]
                for row in view["rows"]]
        lines += [pd.DataFrame(data, columns=columns).to_markdown(index=False, disable_numparse=True), ""]
    return "\n".join(lines)


def _markdown_link(text: str, url: str | None) -> str:
    return f"[{_markdown_escape(text)}]({url})" if url else _markdown_escape(text)


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
        shutil.copyfile(item.path, target / candidate)
        hrefs[item.path] = "records/" + urllib.parse.quote(candidate)
    return hrefs


def default_urls() -> dict[str, str]:
    """Paper links of the registered selectors (`url` of each class)."""
    from benchmark.selection import available_selectors

    return {name: cls.url for name, cls in available_selectors().items() if getattr(cls, "url", "")}


def build_site(inputs: Iterable[Path], out: Path, *, urls: Mapping[str, str] | None = None) -> list[Group]:
    """Validates every record under `inputs` (raises `SchemaError`, writing nothing, when any is invalid),
    then writes `out/index.html`, `out/leaderboard.md` and `out/records/`. `out` must be new, empty, or a
    site this function wrote before (it is then replaced as a whole)."""
    records = load_records(inputs)
    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).exists())):
        raise UserError(f"{out} exists and is not a leaderboard site written by coreset-bench; choose a new or "
                        "empty directory for --out")
    groups = build_groups(records)
    urls = default_urls() if urls is None else urls
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        shown = views(groups, urls, _copy_records(records, staging))
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
    old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
    os.replace(out, old / "site")
    try:
        os.replace(staging, out)
    except BaseException:
        os.replace(old / "site", out)
        raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
