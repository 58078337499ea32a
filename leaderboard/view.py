"""The view model: a section's tables (`aggregate.Group`) as what the pages show: formatted text beside the
plain numbers (for sorting), links checked, the caveats that go with the numbers, the curves and examples of
`figures`. Both templates (`templates/index.html.j2`, `templates/leaderboard.md.j2`) read only this."""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from pathlib import Path

import matplotlib
import numpy as np
from benchmark.leaderboard.aggregate import FULL, WORST, Group, machine_mismatches, params_text, table1
from benchmark.leaderboard.figures import beyond_accuracy_svgs, gallery_view, method_colors, robustness_svgs
from benchmark.leaderboard.statistics import (
    BETTER,
    EQUIVALENT,
    NO_COMPARISON,
    NOT_RESOLVED,
    WORSE,
    Verdict,
    beyond_scale,
    margin_text,
    required_seeds,
)
from benchmark.leaderboard.study import study_view

from benchmark.record import eps_text

FLAG_MEANINGS = {
    "chance-level": "the model's clean accuracy is within three binomial standard deviations of chance",
    "one-class": "90 % or more of its test predictions are one class",
    "few-steps": "its final training took fewer than 20 optimizer steps",
    "sanity-check": "an attack failed a check against gradient masking (in the record's checks)",
    "attack-failed": "an attack of the suite failed and was left out of the worst case (in attack_failures)",
    "catastrophic-overfitting": "during adversarial training, the guard's PGD-10 accuracy on held-out images "
                                "collapsed while its FGSM accuracy held (the epoch is in the record's flags)",
}
SELECTION_TIME_NOTE = ("Selection time is the selector's own, given its proxies' outputs; training the proxies (the "
                       "shared one, once per seed, and any a method trains for itself) is not counted in it.")


# --- text of numbers, shared by both pages ------------------------------------------------------
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


def _percent(mean) -> str:
    return f"{100 * mean:.2f}" if _finite(mean) else "n/a"


def fraction_text(fraction: float) -> str:
    return f"{fraction:g}"


def verdict_label(verdict: Verdict | None) -> str:
    """The verdict in a word or two, for the table's cell (its whole text is beside it)."""
    if verdict is None:
        return "(baseline)"
    if verdict.kind == EQUIVALENT:
        return f"no difference > {margin_text(verdict.margin)}"
    if verdict.kind == NOT_RESOLVED:
        if beyond_scale(verdict.margin):
            return "not resolved (could not detect even 100 points)"
        return f"not resolved (could detect {margin_text(verdict.margin)})"
    return verdict.kind


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


# --- the sections ------------------------------------------------------------------------------------------
def _record_links(paths: list[Path], hrefs: dict[Path, str], seeds: list[int]) -> list[dict]:
    return [{"text": f"s{seed}", "href": hrefs[path]} for seed, path in zip(seeds, paths)]


def _cell(mean, std, digits: int = 2, scale: float = 100) -> dict:
    return {"text": pm(mean, std, digits, scale), "value": _value(mean, scale)}


def interval_text(verdict: Verdict | None) -> str:
    """The paired mean difference with its 95 % interval, in points: what the verdict was decided on."""
    if verdict is None:
        return ""
    c = verdict.comparison
    if c.n < 2:
        return f"{100 * c.mean:+.2f} ({c.n} pair: no interval)" if c.n else "no Random run to pair with"
    return f"{100 * c.mean:+.2f} [{100 * c.low:+.2f}, {100 * c.high:+.2f}]"


def _comparison(verdict: Verdict | None) -> dict:
    mean = verdict.comparison.mean if verdict is not None else math.nan
    return {"text": interval_text(verdict), "verdict": "" if verdict is None else verdict.text,
            "holm": verdict_label(verdict),
            "value": "" if verdict is None or verdict.kind == NO_COMPARISON else _value(mean),
            "significant": bool(verdict is not None and verdict.kind in (BETTER, WORSE)),
            "up": bool(verdict is not None and verdict.kind == BETTER)}


def _rank_text(low: float, high: float) -> str:
    """A 95 % rank interval as the table shows it, widened to whole ranks (ties share half ranks): "3" when
    certain, "2–7" when not."""
    if not (_finite(low) and _finite(high)):
        return "—"
    low_text, high_text = f"{math.floor(low):d}", f"{math.ceil(high):d}"
    return low_text if low_text == high_text else f"{low_text}–{high_text}"


def resolution(group: Group) -> list[str]:
    """What the section can resolve: per measure, the median smallest difference against Random its comparisons
    detect (80 % power, Holm's family level), the verdicts' tally, and the seeds a 2-point difference needs."""
    lines = []
    summary = group.summary
    for name, words in (("headline", f"worst case at {eps_text(group.headline_eps)}"), ("clean", "clean accuracy")):
        found = [(v, full) for v, full in zip(summary[f"vs_random_{name}"], summary["complete"])
                 if v is not None and v.comparison.n >= 2]
        ranked = [v for v, full in found if full]
        fewer = [v for v, full in found if not full]
        if ranked:
            sd = float(np.median([v.comparison.sd for v in ranked]))
            needed = required_seeds(sd, 0.02, family_size=ranked[0].comparison.family_size) if sd > 0 else 2
            power = "; 80 % power after Holm's correction"
            lines.append(f"{words[0].upper() + words[1:]} against Random: {_detectable(ranked, power)}, so of "
                         f"{len(ranked)} comparisons {_tally(ranked)}; a 2-point difference would need about {needed} "
                         f"seeds per method at this spread ({100 * sd:.1f} points between seeds).")
        if fewer:
            lines.append(f"{words[0].upper() + words[1:]}, rows with fewer seeds (shown, not ranked; a family of their "
                         f"own): {_detectable(fewer)}, so of {len(fewer)} comparisons {_tally(fewer)}.")
    return lines


def _detectable(found: list[Verdict], power: str = "") -> str:
    """The comparisons' median smallest detectable difference, in words; beyond 100 points, that none could be."""
    median = float(np.median([v.comparison.detectable for v in found]))
    if beyond_scale(median):
        return (f"the comparisons could not detect even a 100-point difference (median smallest detectable "
                f"{100 * median:.1f} points{power})")
    return f"the comparisons detect differences of {100 * median:.1f} points or more (median{power})"


def _tally(found: list[Verdict]) -> str:
    kinds = {kind: sum(1 for v in found if v.kind == kind) for kind in (BETTER, WORSE, EQUIVALENT, NOT_RESOLVED)}
    return ", ".join(f"{count} {kind if kind != EQUIVALENT else 'bounded'}" for kind, count in kinds.items() if count)


def fgsm_rises(group: Group) -> int:
    """Runs in which FGSM's accuracy rises (by more than 0.1 point) from one eps of the grid to the next."""
    count = 0
    for found in group.runs["measures"]:
        grid = sorted((eps, accuracy) for (name, threat, eps), accuracy in found.items()
                      if name == "fgsm" and threat == "Linf")
        count += any(b[1] > a[1] + 0.001 for a, b in zip(grid, grid[1:]))
    return count


def suite(group: Group) -> list[str]:
    """The attacks of the suite as the protocol states them, each once with its settings: a cascade's later attacks
    have no columns of their own, yet the worst case is theirs too."""
    return ([f"{spec.name} ({params_text(spec.params)})" if spec.params else spec.name
             for spec in group.protocol.attacks or ()] or [n for n in group.attacks if n != WORST])


def caveats(group: Group) -> list[str]:
    """What a reader must know before trusting the section's numbers, stated where the numbers are."""
    facts = group.facts
    seeds = len(facts["seeds"])
    test_set = (f"a test set of {', '.join(map(str, facts['test_size']))} images" if facts["test_size"] else
                "a test set whose size the records do not state (version 1)")
    if facts["clean_test_size"] and facts["clean_test_size"] != facts["test_size"]:
        test_set += (f" attacked (a seeded class-balanced subset), clean accuracy on all "
                     f"{', '.join(map(str, facts['clean_test_size']))} test images")
    lines = [f"Scale: {', '.join(map(str, facts['pool_size']))} pool images, {test_set}, {facts['epochs']} epochs of "
             f"{facts['model']}."]
    if _finite(facts["full_clean"]):
        lines.append(f"A model on the whole pool reaches {100 * facts['full_clean']:.1f} % clean accuracy here: "
                     f"these numbers compare methods at this scale and say little about full-scale training.")
    lines.append(f"Each cell is the mean ± sample std over the seeds of that row ({seeds} seed(s) at most).")
    lines += resolution(group)
    if group.protocol.training is not None:
        if group.baseline is not None:
            lines.append(f"The models were adversarially trained ({group.protocol.training.name}). What that changed, "
                         f"method by method, against the clean-training section \"{group.baseline.title}\" (same "
                         f"settings but the training, paired by fraction and seed) is in the table below the "
                         f"ranking. The study's Table 1 is not set beside this section: its models were trained on "
                         f"clean images.")
        else:
            lines.append(f"The models were adversarially trained ({group.protocol.training.name}); no clean-training "
                         f"section with the same settings is on this board, so what the training changed is not "
                         f"shown.")
    if group.schema.endswith("/1"):
        lines.append("Version 1 records: FGSM alone, and an image wrong when clean but classified correctly under "
                     "attack counts as robust, so robustness is overstated (and can rise with eps).")
    else:
        attacks = ", ".join(suite(group))
        lines.append(f"Robust accuracy counts an image only if it is classified correctly both clean and under "
                     f"attack; the worst case is over {attacks}, image by image. Ranked by the worst case at "
                     f"{eps_text(group.headline_eps)}.")
        if facts.get("cross_check_images"):
            where = ("per eps" if not group.protocol.cross_check_eps else
                     "at " + ", ".join(eps_text(e) for e in group.protocol.cross_check_eps))
            if group.protocol.cross_check_eps and any(threat != "Linf" for _, threat, _ in group.measures):
                where += " (L-infinity attacks; the others at each of their eps)"
            lines.append(f"Every attack was cross-checked against an independent implementation on "
                         f"{facts['cross_check_images']} images {where} in every run (a disagreement beyond its "
                         f"tolerance fails the run).")
    if len(facts["packages"]) > 1 or len([c for c in facts["commits"] if c]) > 1:
        commits = [c[:8] for c in facts["commits"] if c]
        lines.append(f"These records come from {len(facts['packages'])} package version(s) "
                     f"({', '.join(facts['packages'])})" + (f" and {len(commits)} commits ({', '.join(commits)})"
                                                            if len(commits) > 1 else "")
                     + ": the same settings, but a harness change between them can move the numbers; compare "
                     "runs of one version where it matters.")
    shared = [k for k in facts["sharing"] if k > 1]
    if shared:
        lines.append(f"Runs shared their device: the job that made them ran {' or '.join(map(str, shared))} at once "
                     f"on it. A run's cost is its wall-clock seconds divided by that number, its share of the device "
                     f"(its record's seconds are wall-clock, taken while sharing it).")
    if len(facts["devices"]) > 1:
        lines.append(f"These records were made on {len(facts['devices'])} machines ({', '.join(facts['devices'])} "
                     f"runs): a run's seconds are its machine's, so costs compare only between runs of one machine; "
                     f"on a CPU the same seed gives the same numbers on one model, not across models.")
        mismatches = machine_mismatches(group)
        mixed = [f"{count} of {total} pairs of runs {words}" for (count, total), words in
                 ((mismatches["random"], "compared with Random"),
                  (mismatches.get("twin", (0, 0)), "compared with the clean-training section")) if count]
        if mixed:
            lines.append(f"Runs made on different machines are paired in {' and '.join(mixed)} (same fraction and "
                         f"seed): a seed on another CPU model is another draw of the training, and a systematic "
                         f"difference between the machines, if there is one, would move those comparisons with it.")
    if group.protocol.cascade:
        lines.append("The suite ran as a cascade: each attack after the first of its threat model attacked only the "
                      "images the earlier ones left robust, so the worst case is the whole suite's, image by image, "
                      "but those attacks' own accuracies were not measured and are not shown.")
    rising = fgsm_rises(group)
    if rising:
        lines.append(f"FGSM's accuracy rises with eps (by more than 0.1 point) in {rising} of {facts['records']} "
                     f"runs: a known sign of a "
                     f"weak single-step attack on these models (its one step overshoots), not a failure; the "
                     f"iterative attacks of the suite are what the worst case rests on.")
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
            "cost": {"text": f"{row.run_seconds_mean:,.0f} s ({', '.join(row.devices)})"
                     if _finite(row.run_seconds_mean) else "n/a", "value": _value(row.run_seconds_mean, scale=1)},
            "date": row.date,
            "flags": row.flags, "flagged_runs": row.flagged_runs, "unranked": row.unranked,
            "rank": _rank_text(row.rank_low, row.rank_high), "rank_value": _value(row.rank_low, scale=1),
            "tie": int(row.tie),
            "records": _record_links(row.paths, hrefs, row.seeds),
            "measures": row.measures,
        })
    ranked = []
    for fraction in group.fractions:
        members = [r for r in rows if r["fraction"] == fraction]
        if all(r["method"] == FULL for r in members):
            continue
        scored = [r for r in members if r["method"] != FULL and not r["unranked"]]
        ranked.append({"fraction": fraction_text(fraction), "rows": scored,
                       "unranked": [r for r in members if r["method"] != FULL and r["unranked"]]})
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
    legend = [{"index": i, "label": label, "method": method, "color": matplotlib.colors.to_hex(colors[label][0]),
               "dashed": colors[label][1] != "-"} for i, (label, method) in enumerate(zip(order, methods))]
    flags = sorted({code for codes in summary["flags"] for code in codes})
    flag_legend = [{"code": code, "meaning": FLAG_MEANINGS.get(code, "see the record")} for code in flags]
    return {"id": group.id, "title": group.title, "facts": group.facts, "facts_line": facts_line(group.facts),
            "schema": group.schema,
            "headline_eps": eps_text(group.headline_eps), "caveats": caveats(group),
            "fractions": [fraction_text(f) for f in table.columns], "table1": table1_rows, "ranked": ranked,
            "full_rows": full_rows, "attack_tables": attack_tables, "rows": rows, "legend": legend,
            "curves": robustness_svgs(group, order, colors), "galleries": galleries,
            "beyond": [{"fraction": fraction_text(fit.fraction), "summary": fit.summary(), "svg": svg,
                        "rows": [{"label": r.label, "offset": r.text, "verdict": r.verdict, "runs": r.runs}
                                 for r in fit.offsets]}
                       for fit, svg in zip(group.beyond_accuracy, beyond_accuracy_svgs(group, order, colors))],
            "suite": suite(group), "study": study_view(group) if group.protocol.training is None else None,
            "training_gain": training_gain_view(group),
            "flag_legend": flag_legend,
            "protocol": json.dumps(group.protocol.to_json(), sort_keys=True)}


def training_gain_view(group: Group) -> dict | None:
    """The "what adversarial training changed" table of an adversarially trained section, or None."""
    if group.protocol.training is None:
        return None
    if group.baseline is None:
        return {"baseline": None, "rows": []}
    rows = []
    for gain in group.training_gains:
        cells = {}
        for measure in ("headline", "clean"):
            verdict = gain.verdicts[measure]
            cells[measure] = {**_comparison(verdict), "trained": _percent(gain.trained[measure]),
                              "baseline": _percent(gain.baseline[measure])}
        rows.append({"label": gain.label, "method": gain.method, "fraction": fraction_text(gain.fraction),
                     "n": len(gain.seeds), **cells})
    return {"baseline": {"id": group.baseline.id, "title": group.baseline.title}, "rows": rows}


def facts_line(facts: dict) -> str:
    return (f"dataset {facts['dataset']}, pool size {', '.join(map(str, facts['pool_size']))}, test set "
            f"{', '.join(map(str, facts['test_size'])) or 'n/a'}, model {facts['model']}, preset {facts['preset']}, "
            f"{facts['epochs']} epochs, lr {', '.join(f'{x:g}' for x in facts['lrs'])}, batch {facts['batch_size']}, "
            f"proxy {facts['proxy_epochs']} epochs, eps grid {', '.join(f'{e:g}' for e in facts['eps_255'])} /255, "
            f"seeds {', '.join(map(str, facts['seeds']))}; records written by coreset-bench "
            f"{', '.join(facts['packages'])} on {', '.join(facts['devices'])}")
