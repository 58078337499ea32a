"""Records -> tables (pandas). Everything the pages show is computed here from the records; nothing is typed
by hand. Definitions (also stated on the page):

- Groups: runs are compared only within one (dataset, model, preset) with identical protocol settings.
- Over seeds: mean and sample standard deviation (ddof=1); with one seed the std is undefined (NaN, shown
  "n/a"), not 0, so a single run never looks perfectly stable.
- Relative accuracy: per seed, the method's clean accuracy over the `full` run's clean accuracy of the same
  seed; for a seed with no `full` run, over the mean of the `full` runs (the row is then flagged); then the
  mean over seeds, in %. No `full` run in the group: not available.
- Robustness: FGSM accuracy at each eps, and its mean over the eps grid (the area under the robustness
  curve divided by the number of eps values, per run, then averaged over seeds).
- Against Random: per seed, method minus `random` at the same fraction (pairs are matched by seed); the
  mean difference with a 95 % t interval, mean +- t(0.975, n-1) * sd / sqrt(n) with the sample sd. The
  difference is significant when the interval excludes zero. Fewer than two pairs: no interval.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.special import stdtrit

from benchmark.schema import RecordFile

FULL = "full"
RANDOM = "random"
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Paired:
    """A paired comparison with Random over `n` seeds; `low`/`high` are NaN when n < 2."""

    n: int
    mean: float
    low: float
    high: float

    @property
    def has_interval(self) -> bool:
        return self.n >= 2 and math.isfinite(self.low)

    @property
    def significant(self) -> bool:
        return self.has_interval and (self.low > 0 or self.high < 0)


def paired_difference(differences) -> Paired:
    """Mean of paired differences with a two-sided 95 % t interval (n - 1 degrees of freedom)."""
    values = np.asarray(differences, dtype=float)
    n = len(values)
    if n == 0:
        return Paired(0, math.nan, math.nan, math.nan)
    mean = float(values.mean())
    if n < 2:
        return Paired(n, mean, math.nan, math.nan)
    quantile = float(stdtrit(n - 1, 0.5 + CONFIDENCE / 2))  # t(0.975, n - 1), as scipy.stats.t.ppf gives it
    half = quantile * float(values.std(ddof=1)) / math.sqrt(n)
    return Paired(n, mean, mean - half, mean + half)


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def _canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _params_text(params: dict) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(params.items()))


def runs_frame(records: list[RecordFile]) -> pd.DataFrame:
    """One row per record, with the columns the tables are built from."""
    rows = []
    for item in records:
        record = item.record
        attacks = record["attacks"]
        rows.append({
            "group": _canonical(record["protocol"]),
            "dataset": record["dataset"], "model": record["model"], "preset": record["preset"],
            "method": record["method"], "params": _canonical(record["method_params"]),
            "params_text": _params_text(record["method_params"]), "paper": record["paper"],
            "fraction": float(record["fraction"]), "seed": int(record["seed"]),
            "budget": record["budget"], "pool_size": record["pool_size"],
            "clean": float(record["clean_accuracy"]),
            "eps": tuple(float(a["eps"]) for a in attacks),
            "fgsm": tuple(float(a["accuracy"]) for a in attacks),
            "fgsm_mean": float(np.mean([a["accuracy"] for a in attacks])),
            "select_seconds": float(record["selection"]["seconds"]),
            "train_seconds": float(record["training"]["seconds"]),
            "package": record["environment"]["package"],
            "device": str(record["environment"].get("device", "")),
            "path": item.path,
        })
    return pd.DataFrame(rows)


@dataclass
class Group:
    """One section of the leaderboard: runs with identical protocol settings."""

    id: str
    title: str
    protocol: dict
    runs: pd.DataFrame
    summary: pd.DataFrame
    eps: tuple[float, ...]
    fractions: list[float]
    facts: dict = field(default_factory=dict)


def _labels(runs: pd.DataFrame) -> pd.Series:
    """The row label of a method: its name, plus its parameters when the group holds several settings of it."""
    variants = runs.groupby("method")["params"].nunique()
    return runs.apply(lambda row: row["method"] if variants[row["method"]] == 1 or not row["params_text"]
                      else f"{row['method']} ({row['params_text']})", axis=1)


def _method_order(label: str, method: str) -> tuple:
    return (0 if method == RANDOM else 2 if method == FULL else 1, label)


def summarize(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per (method variant, fraction) of one group: statistics over seeds and paired comparisons."""
    runs = runs.copy()
    runs["label"] = _labels(runs)
    full = runs[runs["method"] == FULL].groupby("seed")["clean"].mean()
    full_mean = float(full.mean()) if len(full) else math.nan
    runs["relative"] = runs.apply(lambda row: row["clean"] / full.get(row["seed"], full_mean), axis=1)
    runs["relative_fallback"] = ~runs["seed"].isin(full.index) & bool(len(full))
    random_runs = runs[runs["method"] == RANDOM]
    if random_runs["params"].nunique() > 1:  # several Random settings: pair with the parameterless one, if any
        random_runs = random_runs[random_runs["params"] == random_runs["params"].min()]
    random_by = random_runs.set_index(["fraction", "seed"])

    rows = []
    eps = runs["eps"].iloc[0]
    for (label, fraction), part in runs.groupby(["label", "fraction"], sort=False):
        part = part.sort_values("seed")
        first = part.iloc[0]
        row = {"label": label, "method": first["method"], "params_text": first["params_text"],
               "paper": first["paper"], "fraction": fraction, "n": len(part), "seeds": part["seed"].tolist(),
               "budget": int(round(part["budget"].mean())),
               "paths": part["path"].tolist()}
        for name in ("clean", "fgsm_mean", "select_seconds", "relative"):
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(part[name])
        row["relative_fallback"] = bool(part["relative_fallback"].any())
        fgsm = np.array(part["fgsm"].tolist(), dtype=float)  # seeds x eps
        for i in range(len(eps)):
            row[f"fgsm{i}_mean"], row[f"fgsm{i}_std"] = mean_std(fgsm[:, i])
        for name in ("clean", "fgsm_mean"):
            if first["method"] == RANDOM and first["params"] in set(random_runs["params"]):
                row[f"vs_random_{name}"] = None  # Random against itself: not a comparison
                continue
            keys = [(fraction, seed) for seed in part["seed"] if (fraction, seed) in random_by.index]
            differences = [part.set_index("seed").loc[seed, name] - random_by.loc[(fraction, seed), name]
                           for fraction, seed in keys]
            row[f"vs_random_{name}"] = paired_difference(differences)
        rows.append(row)
    summary = pd.DataFrame(rows)
    order = sorted(range(len(summary)), key=lambda i: (summary.loc[i, "fraction"],
                                                       -summary.loc[i, "clean_mean"], summary.loc[i, "label"]))
    return summary.loc[order].reset_index(drop=True)


def table1(summary: pd.DataFrame) -> pd.DataFrame:
    """The study's Table 1: rows are methods, columns fractions, cells (mean, std, n) of clean accuracy or
    None where a method has no run at that fraction. Random first, `full` last, the others by name."""
    fractions = sorted(summary["fraction"].unique())
    labels = sorted({(row.label, row.method) for row in summary.itertuples()}, key=lambda lm: _method_order(*lm))
    cells = {(row.label, row.fraction): (row.clean_mean, row.clean_std, row.n) for row in summary.itertuples()}
    data = [[cells.get((label, fraction)) for fraction in fractions] for label, _ in labels]
    return pd.DataFrame(data, index=[label for label, _ in labels], columns=fractions)


def _group_title(runs: pd.DataFrame) -> str:
    first = runs.iloc[0]
    return f"{first['dataset']} · {first['model']} · {first['preset']}"


def _distinct(values) -> list:
    return sorted({value for value in values})


def build_groups(records: list[RecordFile]) -> list[Group]:
    """Groups (sorted by dataset, model, preset), each with its runs and summary."""
    frame = runs_frame(records)
    groups = []
    for protocol_text, runs in frame.groupby("group", sort=True):
        protocol = json.loads(protocol_text)
        runs = runs.reset_index(drop=True)
        summary = summarize(runs)
        facts = {
            "dataset": protocol["dataset"], "model": protocol["model"], "preset": protocol["preset"],
            "pool_size": _distinct(runs["pool_size"]), "epochs": protocol["epochs"],
            "proxy_epochs": protocol["proxy_epochs"], "batch_size": protocol["batch_size"],
            "lrs": protocol["lrs"], "eps_255": [round(e * 255, 4) for e in protocol["eps"]],
            "fractions": _distinct(runs["fraction"]), "seeds": _distinct(runs["seed"]),
            "packages": _distinct(runs["package"]), "devices": _distinct(runs["device"]),
            "records": len(runs),
        }
        groups.append(Group(id="", title=_group_title(runs), protocol=protocol, runs=runs, summary=summary,
                            eps=tuple(runs["eps"].iloc[0]), fractions=facts["fractions"], facts=facts))
    groups.sort(key=lambda g: (g.facts["dataset"], g.facts["model"], g.facts["preset"], _canonical(g.protocol)))
    titles = [g.title for g in groups]
    for index, group in enumerate(groups):
        if titles.count(group.title) > 1:  # same preset name, different settings: say which settings
            digest = hashlib.sha256(_canonical(group.protocol).encode()).hexdigest()[:8]
            group.title = f"{group.title} (settings {digest})"
        group.id = f"g{index}"
    return groups
