"""The study this benchmark grew from, re-measured: each of its conclusions checked against a section's numbers
(with the interval or comparison that decides it), and, where its reported Table 1 is given in `study.json`
beside this file, its numbers beside ours with their rank correlation."""

from __future__ import annotations

import json
import math
from pathlib import Path

from benchmark.leaderboard.aggregate import FULL, RANDOM, WORST, Group
from scipy.stats import spearmanr

from benchmark.study import STUDY_METHODS

REPORTED = Path(__file__).resolve().parent / "study.json"
COLLAPSE_EPS = 8 / 255
COLLAPSE_RATIO = 0.1


def _interval(paired) -> str:
    if paired is None or not paired.has_interval:
        return "no interval (fewer than two seeds)"
    return f"{100 * paired.mean:+.2f} [{100 * paired.low:+.2f}, {100 * paired.high:+.2f}] points"


def _verdict(paired, claim_negative: bool) -> str:
    if paired is None or not paired.has_interval:
        return "undecided"
    below, above = paired.high < 0, paired.low > 0
    if claim_negative:
        return "holds" if below else "contradicted" if above else "not shown (the interval includes 0)"
    return "holds" if not above else "contradicted"


def study_view(group: Group) -> dict | None:
    summary = group.summary
    present = set(summary["method"])
    if len(present & set(STUDY_METHODS)) < 5 or not {0.1, 0.5} <= set(group.fractions) or WORST not in \
            {name for name, _, _ in group.measures}:
        return None
    rows = {(r.method, r.fraction): r for r in summary.itertuples() if r.params == min(
        summary[summary["method"] == r.method]["params"])}
    conclusions = []
    beaters = [f"{m} at {f:g}" for (m, f), r in rows.items() if m not in (RANDOM, FULL)
               and r.vs_random_clean is not None and r.vs_random_clean.significant_adjusted
               and r.vs_random_clean.mean > 0]
    conclusions.append({"text": "Random is a strong baseline: no method beats it on clean accuracy at 10 % or 50 %",
                        "verdict": "holds (no Holm-adjusted comparison above Random)" if not beaters else
                        f"contradicted by {', '.join(beaters)}"})
    grand = rows.get(("grand", 0.1))
    if grand is not None:
        conclusions.append({"text": "GraNd is weak at 10 %: below Random on clean accuracy",
                            "verdict": f"{_verdict(grand.vs_random_clean, True)}; grand − random "
                                       f"{_interval(grand.vs_random_clean)}"})
    grid = sorted({eps for name, threat, eps in group.measures if name == WORST and threat == "Linf"})
    at = max([e for e in grid if e <= COLLAPSE_EPS + 1e-12], default=None)
    if at is not None:
        ratios = [(r.measures.get((WORST, "Linf", at), (math.nan,))[0] / r.clean_mean, r.label, r.fraction)
                  for r in summary.itertuples() if r.method != FULL and r.clean_mean > 0]
        worst = max(ratios) if ratios else (math.nan, "", 0)
        conclusions.append({"text": f"Every method collapses under attack: at {at * 255:g}/255 the worst case keeps "
                                    f"less than {COLLAPSE_RATIO:.0%} of its clean accuracy",
                            "verdict": ("holds" if worst[0] < COLLAPSE_RATIO else "contradicted")
                            + f"; the most robust keeps {100 * worst[0]:.1f} % ({worst[1]} at {worst[2]:g})"})
    for fraction in (0.1, 0.5):
        moderate = rows.get(("moderate_ds", fraction))
        if moderate is not None:
            conclusions.append({"text": f"Moderate DS is no more robust than Random at {fraction:.0%} (worst case "
                                        f"at the headline eps)",
                                "verdict": f"{_verdict(moderate.vs_random_headline, False)}; moderate_ds − random "
                                           f"{_interval(moderate.vs_random_headline)}"})
    view = {"conclusions": conclusions, "table": None,
            "note": f"The study's own Table 1 numbers are not in this repository ({REPORTED.name} is absent), so only "
                    f"its conclusions are checked here."}
    if REPORTED.is_file():
        view.update(_compare(json.loads(REPORTED.read_text()), rows))
    return view


def _compare(reported: dict, rows: dict) -> dict:
    """Reported clean accuracies (method -> fraction -> %) beside ours, and Spearman's rank correlation."""
    table, correlations = [], []
    for fraction in (0.1, 0.5):
        theirs, ours = [], []
        for method in STUDY_METHODS:
            value = reported.get("table1", {}).get(method, {}).get(f"{fraction:g}")
            row = rows.get((method, fraction))
            table.append({"method": method, "fraction": f"{fraction:g}", "reported": value,
                          "ours": None if row is None else 100 * row.clean_mean})
            if value is not None and row is not None:
                theirs.append(value)
                ours.append(row.clean_mean)
        if len(theirs) >= 3:
            correlations.append(f"{fraction:g}: Spearman ρ = {spearmanr(theirs, ours).statistic:.2f} "
                                f"({len(theirs)} methods)")
    return {"table": table, "note": f"Reported numbers from {reported.get('source', 'the study')}; rank correlation "
                                    f"with ours at fraction {'; '.join(correlations) or 'n/a'}."}
