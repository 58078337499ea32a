"""What adversarial training changed, method by method (#25's question: which coresets serve robust training?).

An adversarially trained section is set beside its clean-training counterpart: the section whose settings are
the same but for the training (the preset's name, the training method, the proxy's training and the guard's
held-out images) and whose headline eps is the same. Each of its rows is paired, seed by seed, with the runs of
the same method variant at the same fraction and seed there; per seed, adversarially trained minus clean-trained,
for the worst case at the headline eps and for clean accuracy. The families and verdicts are those of the
comparisons with Random (`statistics.family_verdicts`): one Holm family per fraction and measure, the rows with
fewer paired seeds than the most at that fraction a family of their own.

A selector that reads the proxy sees a robustly trained one in the adversarially trained protocol, so its
coreset can differ between the two: a row measures the change of the whole protocol for that method, selection
included, not of the final training alone (Random's coresets are the same in both).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from benchmark.leaderboard.statistics import Verdict, family_verdicts

# the settings in which an adversarially trained protocol differs from its clean-training counterpart
TRAINING_SETTINGS = ("preset", "training", "adversarial_proxy", "monitor_images")
MEASURES = ("headline", "clean")


@dataclass(frozen=True)
class Gain:
    """One row: a method variant at one fraction, adversarially trained against clean-trained, paired by seed."""

    label: str
    method: str
    fraction: float
    seeds: tuple[int, ...]  # the seeds both sections have
    trained: dict  # measure -> mean over the paired seeds, adversarially trained (accuracy fraction)
    baseline: dict  # measure -> the same, clean-trained
    verdicts: dict  # measure -> Verdict (adversarially trained minus clean-trained)


def _settings(protocol) -> dict:
    return {key: value for key, value in protocol.to_json().items() if key not in TRAINING_SETTINGS}


def counterpart(group, groups):
    """The clean-training section `group` (an adversarially trained one) is compared with, or None: same
    settings but for the training, same headline eps; of several (records of other schema versions), the one
    with the most records."""
    if group.protocol.training is None:
        return None
    wanted = _settings(group.protocol)
    found = [other for other in groups if other.protocol.training is None and other.headline_eps == group.headline_eps
             and _settings(other.protocol) == wanted]
    return max(found, key=lambda other: (len(other.runs), other.id), default=None)


def gains(group, baseline, *, bound_of) -> list[Gain]:
    """Each row of `group` that `baseline` has at two or more of the same seeds, with its verdicts; rows ordered
    by fraction, the most paired seeds first, then by the worst-case gain. `bound_of(mean)`: the widest
    equivalence margin the page states, given the clean-trained mean (`aggregate.equivalence_bound`)."""
    keys = ["method", "params", "fraction", "seed"]
    theirs = baseline.runs.set_index(keys)[list(MEASURES)]
    theirs = theirs[~theirs.index.duplicated()]
    rows = []
    for (label, method, params, fraction), part in group.runs.groupby(["label", "method", "params", "fraction"],
                                                                        sort=True):
        part = part.sort_values("seed")
        seeds = [int(s) for s in part["seed"] if (method, params, fraction, s) in theirs.index]
        if len(seeds) < 2:
            continue
        mine = part.set_index("seed").loc[seeds]
        other = theirs.loc[[(method, params, fraction, s) for s in seeds]]
        pairs = {m: (mine[m].to_numpy(dtype=float), other[m].to_numpy(dtype=float)) for m in MEASURES}
        rows.append({"label": label, "method": method, "fraction": float(fraction), "seeds": tuple(seeds),
                     "pairs": pairs})
    fractions = [r["fraction"] for r in rows]
    most = {f: max(len(r["seeds"]) for r in rows if r["fraction"] == f) for f in fractions}
    complete = [len(r["seeds"]) == most[r["fraction"]] for r in rows]
    decided: list[dict] = [{} for _ in rows]
    for measure in MEASURES:
        per_row = family_verdicts(fractions, complete, [r["pairs"][measure] for r in rows], bound_of=bound_of)
        for chosen, verdict in zip(decided, per_row):
            chosen[measure] = verdict
    found = [Gain(label=r["label"], method=r["method"], fraction=r["fraction"], seeds=r["seeds"],
                  trained={m: _mean(r["pairs"][m][0]) for m in MEASURES},
                  baseline={m: _mean(r["pairs"][m][1]) for m in MEASURES}, verdicts=d)
             for r, d in zip(rows, decided)]
    return sorted(found, key=lambda g: (g.fraction, -len(g.seeds), -_gain(g.verdicts["headline"]), g.label))


def _mean(values: np.ndarray) -> float:
    """The mean of the finite values; NaN when there is none (a measure the runs do not have)."""
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else math.nan


def _gain(verdict: Verdict) -> float:
    mean = verdict.comparison.mean
    return mean if math.isfinite(mean) else -math.inf
