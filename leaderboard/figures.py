"""The figures of a section: robustness curves (matplotlib, Agg, as deterministic SVG) and the adversarial
examples of a gallery artifact (read within bounds, without pickles, as PNG data URIs). Plot labels come from
records and are escaped before matplotlib sees them."""

from __future__ import annotations

import base64
import io
import math
import re
from pathlib import Path

import matplotlib
import numpy as np
from benchmark.leaderboard.aggregate import FULL, RANDOM, WORST, Group
from markupsafe import Markup
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from benchmark.record import eps_text
from benchmark.storage import read_npz, read_regular

GALLERY_MAX_BYTES = 1 << 20
_RC = {"svg.hashsalt": "coreset-bench", "svg.fonttype": "none", "font.size": 9, "axes.titlesize": 10,
       "font.family": "DejaVu Sans", "path.simplify": False}


def _finite(value) -> bool:
    return value is not None and isinstance(value, (int, float)) and math.isfinite(value)


# --- curves --------------------------------------------------------------------------------------------------
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
        rows.append({"fraction": f"{fraction:g}", "svgs": svgs})
    return rows


# --- robustness against accuracy -----------------------------------------------------------------------------
def beyond_accuracy_svgs(group: Group, order: list[str], colors: dict) -> list[dict]:
    """Per fitted fraction, one point per run (clean accuracy, worst case at the headline eps), coloured as the
    curves are (ids end in -m<index>, so the page's checkboxes show and hide them too), and the pooled line."""
    rows = []
    for index, fit in enumerate(group.beyond_accuracy):
        with matplotlib.rc_context(_RC):
            figure = Figure(figsize=(3.6, 3.0), layout="constrained")
            FigureCanvasAgg(figure)
            ax = figure.subplots()
            for label in order:
                points = [(c, r) for name, c, r in fit.points if name == label]
                if not points:
                    continue
                color, _ = colors[label]
                dots = ax.scatter([100 * c for c, _ in points], [100 * r for _, r in points], s=12, color=color,
                                  label=_plot_label(label), edgecolors="none")
                dots.set_gid(f"m{order.index(label)}-dots")
            xs = np.linspace(min(c for _, c, _ in fit.points), max(c for _, c, _ in fit.points), 2)
            ax.plot(100 * xs, 100 * (fit.intercept + fit.slope * xs), "-", color="#555555", linewidth=1)
            ax.set_title(f"fraction {fit.fraction:g}")
            ax.set_xlabel("clean accuracy (%)")
            ax.set_ylabel(f"worst case at {eps_text(group.headline_eps)} (%)")
            ax.grid(True, alpha=0.3)
            buffer = io.StringIO()
            figure.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
        svg = buffer.getvalue()
        svg = svg[svg.index("<svg"):]
        svg = re.sub(r"<style[^>]*>.*?</style>", "", svg, flags=re.S)
        svg = svg.replace("<svg ", f'<svg class="plot" role="img" aria-label="robust against clean accuracy at '
                          f'fraction {fit.fraction:g}" ', 1)
        rows.append(Markup(_prefix_ids(svg, f"{group.id}-ba{index}-")))
    return rows


# --- adversarial examples -----------------------------------------------------------------------------------
def _png(pixels: np.ndarray) -> str:
    import matplotlib.image

    buffer = io.BytesIO()
    matplotlib.image.imsave(buffer, pixels, format="png", metadata={"Software": None})
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def load_gallery(path: Path) -> dict | None:
    """A run's gallery artifact, read without pickles and within bounds (it comes with untrusted records): its
    array headers are checked before any array is allocated, then every array's type and shape. None when it is
    missing, not a regular file, too large or not as the harness writes it."""
    try:
        data = read_npz(read_regular(path, GALLERY_MAX_BYTES), 8 * GALLERY_MAX_BYTES)
        clean, eps = data["clean"], data["eps"]
        if clean.dtype != np.uint8 or clean.ndim != 4 or clean.shape[0] > 16 or clean.shape[1] != 3 \
                or max(clean.shape[2:]) > 256 or eps.ndim != 1 or eps.dtype.kind != "f" or len(eps) > 4 \
                or not np.isfinite(eps).all() or data["class_names"].dtype.kind not in "U" \
                or data["class_names"].ndim != 1 or data["attack"].dtype.kind != "U" or data["attack"].ndim != 0:
            return None
        for i in range(len(eps)):
            if data[f"adversarial_{i}"].shape != clean.shape or data[f"adversarial_{i}"].dtype != np.uint8:
                return None
        names = [str(name) for name in data["class_names"]]
        for key in ["labels", "clean_predictions"] + [f"predictions_{i}" for i in range(len(eps))]:
            if data[key].dtype.kind not in "iu" or data[key].shape != (clean.shape[0],) \
                    or not ((0 <= data[key]) & (data[key] < len(names))).all():
                return None
        return {**data, "class_names": names}
    except (OSError, ValueError, KeyError):
        return None


def _cells(data: dict, images: np.ndarray, predictions: np.ndarray) -> list[dict]:
    names = data["class_names"]
    return [{"src": _png(image.transpose(1, 2, 0)), "true": names[int(label)], "predicted": names[int(p)],
             "right": int(p) == int(label)} for image, label, p in zip(images, data["labels"], predictions)]


def magnification(eps: float) -> int:
    """How much a perturbation of eps is magnified to be seen: up to about a quarter of the pixel range."""
    return int(min(32, max(1, round(0.25 / eps)))) if eps > 0 else 1


def gallery_view(row) -> dict | None:
    """The first seed's examples of one summary row, as rows of images with their labels."""
    for path in row.galleries:
        data = load_gallery(path)
        if data is None:
            continue
        versions = [{"title": "clean", "cells": _cells(data, data["clean"], data["clean_predictions"])}]
        for i, eps in enumerate(data["eps"]):
            adversarial = data[f"adversarial_{i}"]
            versions.append({"title": f"{str(data['attack'])} at {eps_text(float(eps))}",
                             "cells": _cells(data, adversarial, data[f"predictions_{i}"])})
            scale = magnification(float(eps))
            change = (128 + scale * (adversarial.astype(np.int32) - data["clean"].astype(np.int32))).clip(0, 255)
            versions.append({"title": f"its perturbation ×{scale} (grey is none)",
                             "cells": [{**cell, "true": "", "predicted": ""} for cell in
                                       _cells(data, change.astype(np.uint8), data[f"predictions_{i}"])]})
        return {"label": row.label, "fraction": f"{row.fraction:g}", "versions": versions}
    return None


