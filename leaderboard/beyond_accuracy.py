"""Robustness beyond accuracy: a more accurate model keeps more images robust, so a method whose models are more
robust may only be more accurate. Per fraction, each run is a point (clean accuracy, worst-case robust accuracy
at the headline eps), and one model is fitted across every method's runs (an ANCOVA, statsmodels OLS):

    robust = a + b * clean + (the method's offset; Random's is 0),

a common slope with one offset per method. A method's offset is how much more robust its runs are than Random's
at the same clean accuracy: a t interval, a p-value, Holm-corrected across the fraction's methods; the F-test of
the method term given clean accuracy (type II) says whether any method differs at all. The line drawn is the
pooled fit without offsets. `full` (the whole pool, at fraction 1) is not fitted with the coresets."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from benchmark.leaderboard.statistics import ALPHA, MINUS
from statsmodels.stats.multitest import multipletests

MORE, LESS, NOT_RESOLVED, UNTESTED = ("more robust than Random at the same clean accuracy",
                                      "less robust than Random at the same clean accuracy", "not resolved",
                                      "untested (fewer than two runs)")


@dataclass(frozen=True)
class MethodOffset:
    label: str
    method: str
    runs: int
    mean: float  # its offset from Random at equal clean accuracy, in accuracy units (0.01 = one point)
    low: float  # its 95 % t interval (NaN with one run)
    high: float
    p_holm: float
    verdict: str

    @property
    def text(self) -> str:
        if not math.isfinite(self.mean):
            return "n/a (fewer than two runs)"
        return f"{_points(self.mean)} [{_points(self.low)}, {_points(self.high)}]"


@dataclass(frozen=True)
class Fit:
    fraction: float
    runs: int
    intercept: float
    slope: float
    r_squared: float
    f_statistic: float  # the method term given clean accuracy (NaN when it cannot be tested)
    f_p: float
    offsets: tuple[MethodOffset, ...]
    points: tuple[tuple[str, float, float], ...]  # (label, clean, robust) per run

    @property
    def any_differs(self) -> bool:
        return math.isfinite(self.f_p) and self.f_p < ALPHA

    def summary(self) -> str:
        sign = "+" if self.slope >= 0 else MINUS
        line = (f"robust = {100 * self.intercept:.2f} {sign} {abs(self.slope):.3f} × clean (in points; R² "
                f"{self.r_squared:.2f}, {self.runs} runs)").replace("-", MINUS)
        if not math.isfinite(self.f_p):
            return line + "; whether any method differs cannot be tested (too few runs per method)"
        verdict = "some method differs" if self.any_differs else "no method is resolved as differing"
        return (line + f"; given clean accuracy, {verdict} in robustness (F = {self.f_statistic:.2f}, "
                f"p = {self.f_p:.3g})")


def _points(value: float) -> str:
    text = f"{100 * value:+.2f}"
    return text.replace("-", MINUS)


def fit_fraction(runs: pd.DataFrame, fraction: float, *, alpha: float = ALPHA) -> Fit | None:
    """The fit at one fraction from `runs` (columns label, method, fraction, clean, headline); None when there is
    no Random run to compare with, fewer than three runs with both numbers, or no spread in clean accuracy."""
    import statsmodels.api as sm
    from statsmodels.formula.api import ols

    part = runs[(runs["fraction"] == fraction) & (runs["method"] != "full")]
    part = part[np.isfinite(part["clean"].astype(float)) & np.isfinite(part["headline"].astype(float))]
    if len(part) < 3 or part["clean"].astype(float).std() == 0 or not (part["method"] == "random").any():
        return None
    clean = part["clean"].astype(float).to_numpy()
    robust = part["headline"].astype(float).to_numpy()
    line = sm.OLS(robust, sm.add_constant(clean)).fit()
    labels = part["label"].tolist()
    methods = dict(zip(part["label"], part["method"]))
    baseline = next(label for label in dict.fromkeys(labels) if methods[label] == "random")
    # codes instead of the labels in the formula: a label is a record's text, never formula syntax
    codes = {label: f"m{i}" for i, label in enumerate(dict.fromkeys(labels))}
    frame = pd.DataFrame({"robust": robust, "clean": clean, "method": [codes[x] for x in labels]})
    counts = frame["method"].value_counts()
    residual_df = len(frame) - frame["method"].nunique() - 1
    f_statistic = f_p = math.nan
    offsets = {}
    if residual_df >= 1:
        model = ols(f"robust ~ clean + C(method, Treatment('{codes[baseline]}'))", data=frame).fit()
        for label, code in codes.items():
            name = f"C(method, Treatment('{codes[baseline]}'))[T.{code}]"
            if label != baseline and counts[code] >= 2 and counts[codes[baseline]] >= 2:
                low, high = model.conf_int(alpha).loc[name]
                offsets[label] = (float(model.params[name]), float(low), float(high), float(model.pvalues[name]))
        if frame["method"].nunique() >= 2:
            table = sm.stats.anova_lm(model, typ=2)
            term = f"C(method, Treatment('{codes[baseline]}'))"
            f_statistic, f_p = float(table.loc[term, "F"]), float(table.loc[term, "PR(>F)"])
    tested = list(offsets)
    adjusted = dict(zip(tested, multipletests([offsets[x][3] for x in tested], method="holm")[1])) if tested else {}
    offsets_found = []
    for label in dict.fromkeys(labels):
        if label == baseline:
            continue
        if label not in offsets:
            offsets_found.append(MethodOffset(label, methods[label], int(counts[codes[label]]), math.nan, math.nan,
                                            math.nan, math.nan, UNTESTED))
            continue
        mean, low, high, _ = offsets[label]
        p = float(adjusted[label])
        verdict = NOT_RESOLVED if p >= alpha else (MORE if mean > 0 else LESS)
        offsets_found.append(MethodOffset(label, methods[label], int(counts[codes[label]]), mean, low, high, p,
                                        verdict))
    return Fit(fraction=fraction, runs=len(part), intercept=float(line.params[0]), slope=float(line.params[1]),
               r_squared=float(line.rsquared), f_statistic=f_statistic, f_p=f_p,
               offsets=tuple(sorted(offsets_found, key=lambda r: -r.mean if math.isfinite(r.mean) else math.inf)),
               points=tuple(zip(labels, clean.tolist(), robust.tolist())))
