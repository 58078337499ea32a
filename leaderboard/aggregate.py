"""Records -> tables (pandas). Everything the pages show is computed here from the records; nothing is typed
by hand, and nothing here imports torch or any selector. Definitions (also stated on the page):

- Sections: runs are compared only within one protocol (dataset, model, preset and every setting) measured by
  one attack suite (a record re-attacked with more attacks forms a section with the others like it).
- Rows: a method with its typed parameters (never a rendered string), at one fraction.
- Over seeds: mean and sample standard deviation (ddof=1); with one seed the std is undefined (NaN, shown
  "n/a"), not 0, so a single run never looks perfectly stable.
- Robust accuracy (version 2 records): an image counts only if classified correctly both clean and under
  attack. Worst case: per eps, robust only if no attack of the suite fooled it. The headline is the worst case
  at the protocol's `headline_eps`. Version 1 records have FGSM only, counted without the clean condition.
- Relative accuracy: per seed, clean accuracy over the `full` run's of the same seed (the mean of the `full`
  runs for a seed without one; the row is then flagged); then the mean over seeds.
- Against Random: per seed, method minus `random` at the same fraction (paired by seed), in a family per
  fraction and measure (clean; worst case at the headline eps), the rows with fewer seeds than the most at that
  fraction (shown, not ranked) in a second one: the mean difference with its 95 % t interval;
  Holm's correction over the family; each comparison's smallest detectable difference (80 % power at the
  family's Bonferroni level) and an equivalence test (TOST) at that margin. The verdict is "better" or "worse"
  (significant after Holm), "no difference larger than X" (equivalent within X after Holm, where X is at most
  5 points and at most Random's own mean: `equivalence_bound`), or "not resolved", with what it could detect
  (`benchmark.leaderboard.statistics`).
- Adversarially trained sections: each row against the same method at the same fraction and seed in the
  clean-training section with the same settings but the training, the same families and verdicts
  (`benchmark.leaderboard.training_gain`).
- Ranks: a bootstrap over seeds of each rankable method's mean gives its 95 % rank interval; methods whose
  intervals overlap are tied. A row is not ranked when it has fewer than two seeds, fewer seeds than the most
  any method has at that fraction, or a majority of chance-level runs (it is shown, with the reason).
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from benchmark.leaderboard.beyond_accuracy import fit_fraction
from benchmark.leaderboard.statistics import family_verdicts, rank_intervals, tied_groups
from benchmark.leaderboard.training_gain import Gain, counterpart, gains

from benchmark.record import ProtocolSettings, Record, eps_text
from benchmark.schema import RecordFile

FULL = "full"
RANDOM = "random"
WORST = "worst case"
CHANCE = "chance-level"
MAX_BOUND, MIN_BOUND = 0.05, 0.005  # of the widest equivalence bound the page states (points / 100)
V1_HEADLINE_EPS = 2 / 255


def mean_std(values) -> tuple[float, float]:
    """Mean and sample std (ddof=1); std is NaN for fewer than two values."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return math.nan, math.nan
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else math.nan


def canonical(value) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def params_text(params: dict) -> str:
    return ", ".join(f"{key}={json.dumps(value) if isinstance(value, str) else value}"
                     for key, value in sorted(params.items()))


def _same_value(given, recorded) -> bool:
    """A suite parameter as the protocol states it (maybe text from the command line) against the value an
    attack entry recorded: 20, 20.0 and "20" are the same setting."""
    if given == recorded:
        return True
    try:
        return float(given) == float(recorded)
    except (TypeError, ValueError):
        return str(given).strip().lower() == str(recorded).strip().lower()


def measure_name(record: Record, attack) -> str:
    """The column an attack entry belongs to: its name when it ran with the suite's settings for that attack,
    else its name with every parameter (an `attack` call with other settings, e.g. PGD-50 beside the suite's
    PGD-20): one column never mixes settings."""
    spec = next((s for s in record.protocol.attacks or () if s.name == attack.name), None)
    params = attack.params or {}
    if spec is None:  # records without a stated suite (version 1) name their attacks alone
        same = not record.protocol.attacks
    else:
        same = all(key in params and _same_value(value, params[key]) for key, value in spec.params.items())
    if same:
        return attack.name
    return f"{attack.name} ({params_text(params)})" if params else attack.name


def measures(record: Record) -> dict[tuple[str, str, float], float]:
    """(attack, threat, eps) -> accuracy for every attack entry, and (WORST, threat, eps) for the worst case;
    the attack is named by `measure_name`."""
    found = {(measure_name(record, attack), attack.threat_model, float(attack.eps)): float(attack.accuracy)
             for attack in record.attacks if not attack.cascaded}  # a cascaded entry is no attack's own number
    for worst in record.worst():
        found[(WORST, worst.threat, float(worst.eps))] = float(worst.accuracy)
    return found


def _run_seconds(record: Record) -> float:
    """What a run cost, in seconds of its device: selection (with its proxies' training), training and
    evaluation, as the record states them (NaN where a part is not stated), divided by the runs that shared the
    device with it (a job's runs on one GPU: each record's seconds are wall-clock, the device's are shared)."""
    evaluation = record.evaluation.seconds.total if record.evaluation and record.evaluation.seconds else None
    if evaluation is None:
        return math.nan
    return float(record.selection.seconds + (record.selection.proxy_training_seconds or 0.0)
                 + record.training.seconds + evaluation) / _sharing(record)


def _sharing(record: Record) -> int:
    return (record.environment.runs_per_device or 1) if record.environment else 1


def machine(record: Record) -> str:
    """The device a run's seconds are of, as the page names it: the GPU's or the CPU's model without its trademark
    marks ("Intel Xeon", "AMD EPYC"), or the device type where the record names no model. Runs of one board can
    come from different machines; their seconds are not comparable across them."""
    name = record.environment.device_name
    if not name:
        return str(record.environment.device or "")
    return " ".join(re.sub(r"\((R|TM)\)|\b(Processor|CPU)\b", " ", name).split()) or name


def _machines(column: pd.Series) -> list[str]:
    """The machines of some runs: one name, or each with its number of runs where they differ."""
    counts = column.value_counts()
    if len(counts) == 1:
        return [str(counts.index[0])]
    return [f"{name} ×{count}" for name, count in sorted(counts.items())]


def runs_frame(records: list[RecordFile]) -> pd.DataFrame:
    """One row per record, with the columns the tables are built from."""
    rows = []
    for item in records:
        record = item.record
        found = measures(record)
        suite = sorted({(name, threat, eps) for name, threat, eps in found if name != WORST})
        headline = record.headline_eps(V1_HEADLINE_EPS)
        worst_linf = [acc for (name, threat, eps), acc in found.items() if name == WORST and threat == "Linf"]
        rows.append({
            "group": canonical({"protocol": record.protocol.to_json(), "schema": record.schema, "suite": suite}),
            "record_schema": record.schema, "dataset": record.dataset, "model": record.model,
            "preset": record.preset, "method": record.method, "params": canonical(record.method_params),
            "params_text": params_text(record.method_params), "paper": record.paper,
            "url": record.paper_url or "", "fraction": float(record.fraction), "seed": int(record.seed),
            "budget": record.budget, "pool_size": record.pool_size, "test_size": record.test_size,
            "clean_test_size": record.board_clean_test_size, "clean": float(record.board_clean_accuracy),
            "measures": found, "headline_eps": headline,
            "headline": found.get((WORST, "Linf", headline), math.nan),
            "worst_mean": float(np.mean(worst_linf)) if worst_linf else math.nan,
            "select_seconds": float(record.selection.seconds),
            "train_seconds": float(record.training.seconds),
            "run_seconds": _run_seconds(record), "day": record.created[:10],
            "flags": record.flag_codes,
            "package": record.environment.package, "device": machine(record), "sharing": _sharing(record),
            "commit": record.environment.git_commit or "",
            "gallery": record.artifact(item.path, "gallery"),
            "path": item.path, "settings": record.protocol,
        })
    return pd.DataFrame(rows)


@dataclass
class Group:
    """One section of the leaderboard: runs with identical protocol settings and attack suite."""

    id: str
    title: str
    protocol: ProtocolSettings
    schema: str
    runs: pd.DataFrame
    summary: pd.DataFrame
    measures: list[tuple[str, str, float]]  # every (attack, threat, eps) the section measured, WORST included
    headline_eps: float
    fractions: list[float]
    facts: dict = field(default_factory=dict)
    beyond_accuracy: list = field(default_factory=list)  # a `beyond_accuracy.Fit` per fraction that has one
    baseline: Group | None = None  # adversarially trained: the clean-training section it is compared with
    training_gains: list[Gain] = field(default_factory=list)  # adversarially trained: each row against `baseline`

    @property
    def attacks(self) -> list[str]:
        """The attack names of the suite, in the protocol's order, then the worst case."""
        names = [spec.name for spec in self.protocol.attacks or ()] or ["fgsm"]
        present = {name for name, _, _ in self.measures}
        return [n for n in names if n in present] + sorted(present - set(names) - {WORST}) + [WORST]


def _labels(runs: pd.DataFrame) -> pd.Series:
    """A distinct row label per (method, typed parameters): the name, plus the parameters when the section holds
    several settings of it, plus a number if two labels still read the same."""
    variants = runs.groupby("method")["params"].nunique()
    keys = runs[["method", "params", "params_text"]].drop_duplicates().sort_values(["method", "params"])
    labels, used = {}, {}
    for row in keys.itertuples():
        label = row.method if variants[row.method] == 1 or not row.params_text else f"{row.method} ({row.params_text})"
        used[label] = used.get(label, 0) + 1
        labels[(row.method, row.params)] = label if used[label] == 1 else f"{label} #{used[label]}"
    return runs.apply(lambda row: labels[(row["method"], row["params"])], axis=1)


def _method_order(label: str, method: str) -> tuple:
    return (0 if method == RANDOM else 2 if method == FULL else 1, label)


def _random_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs every other row is compared with: Random's (with several settings, the parameterless one)."""
    random_runs = runs[runs["method"] == RANDOM]
    if random_runs["params"].nunique() > 1:
        random_runs = random_runs[random_runs["params"] == random_runs["params"].min()]
    return random_runs


def machine_mismatches(group: Group) -> dict[str, tuple[int, int]]:
    """Of the section's pairs of runs, how many were made on different machines, of how many: "random" (each row's
    run against Random's of the same fraction and seed) and "twin" (an adversarially trained run against the clean
    twin's run of the same method, parameters, fraction and seed). On a CPU the same seed on another model is
    another draw of the training, and a difference between the machines would be in those pairs' differences."""
    runs = group.runs
    random_by = _random_runs(runs).drop_duplicates(["fraction", "seed"]).set_index(["fraction", "seed"])["device"]
    others = runs[runs["method"] != RANDOM]
    found = {"random": [device != random_by[(fraction, seed)] for fraction, seed, device
                        in zip(others["fraction"], others["seed"], others["device"])
                        if (fraction, seed) in random_by.index]}
    if group.baseline is not None:
        keys = ["method", "params", "fraction", "seed"]
        theirs = group.baseline.runs.drop_duplicates(keys).set_index(keys)["device"]
        found["twin"] = [device != theirs[key] for key, device in zip(runs[keys].itertuples(index=False, name=None),
                                                                       runs["device"]) if key in theirs.index]
    return {name: (sum(mixed), len(mixed)) for name, mixed in found.items()}


def summarize(runs: pd.DataFrame, measure_keys: list) -> pd.DataFrame:
    """One row per (method variant, fraction) of one group: statistics over seeds and paired comparisons."""
    runs = runs.copy()
    runs["label"] = _labels(runs)
    full = runs[runs["method"] == FULL].groupby("seed")["clean"].mean()
    full_mean = float(full.mean()) if len(full) else math.nan
    runs["relative"] = runs.apply(lambda row: row["clean"] / full.get(row["seed"], full_mean), axis=1)
    runs["relative_fallback"] = ~runs["seed"].isin(full.index) & bool(len(full))
    random_runs = _random_runs(runs)
    random_by = random_runs.set_index(["fraction", "seed"])

    rows = []
    for (label, fraction), part in runs.groupby(["label", "fraction"], sort=False):
        part = part.sort_values("seed")
        first = part.iloc[0]
        row = {"label": label, "method": first["method"], "params": first["params"],
               "params_text": first["params_text"], "paper": first["paper"], "url": first["url"],
               "fraction": fraction, "n": len(part), "seeds": part["seed"].tolist(),
               "budget": int(round(part["budget"].mean())), "paths": part["path"].tolist(),
               "galleries": [g for g in part["gallery"].tolist() if g is not None],
               "flags": sorted({code for codes in part["flags"] for code in codes}),
               "flagged_runs": int(sum(1 for codes in part["flags"] if codes))}
        row["date"] = max(part["day"])
        row["devices"] = _machines(part["device"])
        for name in ("clean", "select_seconds", "run_seconds", "relative", "headline", "worst_mean"):
            row[f"{name}_mean"], row[f"{name}_std"] = mean_std(part[name])
        row["relative_fallback"] = bool(part["relative_fallback"].any())
        row["measures"] = {key: mean_std([m.get(key, math.nan) for m in part["measures"]]) for key in measure_keys}
        part_by_seed = part.set_index("seed")
        for name in ("clean", "headline"):
            if first["method"] == RANDOM and first["params"] in set(random_runs["params"]):
                row[f"pairs_{name}"] = None  # Random against itself: not a comparison
                continue
            seeds = [seed for seed in part["seed"] if (fraction, seed) in random_by.index]
            row[f"pairs_{name}"] = (np.array([part_by_seed.loc[seed, name] for seed in seeds], dtype=float),
                                    np.array([random_by.loc[(fraction, seed), name] for seed in seeds], dtype=float))
        row["chance_runs"] = int(sum(1 for codes in part["flags"] if CHANCE in codes))
        row["values_headline"] = dict(zip(part["seed"], part["headline"]))
        rows.append(row)
    summary = pd.DataFrame(rows)
    # a row with as many seeds as the most at its fraction: rankable, and in the ranking's Holm family
    summary["complete"] = summary["n"] == summary.groupby("fraction")["n"].transform("max")
    for name in ("clean", "headline"):
        summary[f"vs_random_{name}"] = family_verdicts(list(summary["fraction"]), list(summary["complete"]),
                                                       list(summary[f"pairs_{name}"]), bound_of=equivalence_bound)
    summary = _ranks(summary)
    order = sorted(range(len(summary)), key=lambda i: (summary.loc[i, "fraction"],
                                                       -_number(summary.loc[i, "headline_mean"]),
                                                       -summary.loc[i, "clean_mean"], summary.loc[i, "label"]))
    return summary.loc[order].reset_index(drop=True).drop(columns=["pairs_clean", "pairs_headline",
                                                                   "values_headline"])


def equivalence_bound(baseline_mean: float) -> float:
    """The widest "no difference larger than X" the page states: 5 points, and never wider than Random's own
    mean accuracy (a bound of 8 points on a robust accuracy of 0.5 % says nothing), nor narrower than half a
    point."""
    if not math.isfinite(baseline_mean):
        return MAX_BOUND
    return max(MIN_BOUND, min(MAX_BOUND, baseline_mean))


def _ranks(summary: pd.DataFrame) -> pd.DataFrame:
    """Rank intervals (worst case at the headline eps, bootstrap over seeds) and ties, per fraction; the reason a
    row is not ranked, where it is not."""
    summary = summary.copy()
    summary["rank_low"], summary["rank_high"], summary["tie"] = math.nan, math.nan, -1
    summary["unranked"] = ""
    for _, members in summary.groupby("fraction"):
        most = int(members["n"].max())
        rankable = []
        for i in members.index:
            n, chance = int(summary.loc[i, "n"]), int(summary.loc[i, "chance_runs"])
            if summary.loc[i, "method"] == FULL:
                reason = "the reference (the whole pool)"
            elif n < 2:
                reason = "one seed: no interval"
            elif not summary.loc[i, "complete"]:
                reason = f"{n} of {most} seeds: incomplete"
            elif 2 * chance > n:
                reason = f"{chance} of {n} runs at chance level"
            elif not math.isfinite(_number_or_nan(summary.loc[i, "headline_mean"])):
                reason = "no worst case at the headline eps"
            else:
                rankable.append(i)
                continue
            summary.loc[i, "unranked"] = reason
        if not rankable:
            continue
        seeds = sorted({seed for i in rankable for seed in summary.loc[i, "values_headline"]})
        matrix = np.array([[summary.loc[i, "values_headline"].get(seed, math.nan) for seed in seeds]
                           for i in rankable], dtype=float)
        intervals = rank_intervals(matrix)
        for i, interval in zip(rankable, intervals):
            summary.loc[i, "rank_low"], summary.loc[i, "rank_high"] = interval if interval else (math.nan, math.nan)
        for group, members_of in enumerate(tied_groups(intervals)):
            for position in members_of:
                summary.loc[rankable[position], "tie"] = group
    return summary


def _number_or_nan(value) -> float:
    return float(value) if isinstance(value, (int, float)) else math.nan


def _number(value) -> float:
    return value if isinstance(value, float) and math.isfinite(value) else -math.inf


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
    training = first["settings"].training
    kind = f" · adversarially trained ({training.name})" if training is not None else ""
    return f"{first['dataset']} · {first['model']} · {first['preset']}{kind}"


def training_text(protocol: ProtocolSettings) -> str:
    """How the group's models were trained, in words (records before version 4: standard)."""
    spec = protocol.training
    if spec is None:
        return "standard (cross-entropy on clean images)"
    params = dict(spec.params)
    eps = params.pop("eps", None)
    text = spec.name + (f" at {eps_text(eps)}" if eps is not None else "")
    text += "".join(f", {key} {value:g}" if isinstance(value, float) else f", {key} {value}"
                    for key, value in sorted(params.items()))
    proxy = "; the selection proxy trained the same way" if protocol.adversarial_proxy else \
        "; the selection proxy trained on clean images"
    return (f"{text}{proxy}; lr chosen by robust accuracy (PGD-10) on {protocol.monitor_images} held-out "
            f"validation images, which are also attacked after every epoch to catch catastrophic overfitting")


def _distinct(values) -> list:
    return sorted({value for value in values if value is not None and value == value})


def build_groups(records: list[RecordFile]) -> list[Group]:
    """Groups (sorted by dataset, model, preset), each with its runs and summary."""
    frame = runs_frame(records)
    groups = []
    for _, runs in frame.groupby("group", sort=True):
        runs = runs.reset_index(drop=True)
        runs["label"] = _labels(runs)
        protocol: ProtocolSettings = runs["settings"].iloc[0]
        measure_keys = sorted({k for m in runs["measures"] for k in m}, key=lambda k: (k[0] == WORST, k))
        summary = summarize(runs, measure_keys)
        facts = {
            "dataset": protocol.dataset, "model": protocol.model, "preset": protocol.preset,
            "pool_size": _distinct(runs["pool_size"]), "test_size": _distinct(runs["test_size"]),
            "clean_test_size": _distinct(runs["clean_test_size"]), "epochs": protocol.epochs,
            "proxy_epochs": protocol.proxy_epochs,
            "batch_size": protocol.batch_size, "lrs": list(protocol.lrs),
            "eps_255": [round(e * 255, 4) for e in protocol.eps],
            "eps_text": ", ".join(f"{e * 255:.4g}" for e in protocol.eps),
            "fractions": _distinct(runs["fraction"]), "seeds": _distinct(runs["seed"]),
            "packages": _distinct(runs["package"]), "devices": _machines(runs["device"]),
            "commits": _distinct(runs["commit"]), "sharing": _distinct(runs["sharing"]),
            "records": len(runs), "flagged": int(sum(1 for codes in runs["flags"] if codes)),
            "full_clean": mean_std(runs[runs["method"] == FULL]["clean"])[0],
            "cross_check_images": protocol.cross_check_images,
            "training": training_text(protocol),
        }
        fits = [fit_fraction(runs, fraction) for fraction in facts["fractions"]]
        groups.append(Group(id="", title=_group_title(runs), protocol=protocol, schema=runs["record_schema"].iloc[0],
                            runs=runs,
                            summary=summary, measures=measure_keys, headline_eps=float(runs["headline_eps"].iloc[0]),
                            fractions=facts["fractions"], facts=facts,
                            beyond_accuracy=[fit for fit in fits if fit is not None]))
    groups.sort(key=lambda g: (g.facts["dataset"], g.facts["model"], g.facts["preset"], g.schema,
                               canonical(g.protocol.to_json())))
    titles = [g.title for g in groups]
    for index, group in enumerate(groups):
        if titles.count(group.title) > 1:  # same preset name, different settings or suites: say which
            digest = hashlib.sha256(canonical([group.protocol.to_json(), group.measures]).encode()).hexdigest()[:8]
            group.title = f"{group.title} (settings {digest})"
        group.id = f"g{index}"
    for group in groups:
        group.baseline = counterpart(group, groups)
        if group.baseline is not None:
            group.training_gains = gains(group, group.baseline, bound_of=equivalence_bound)
    return groups

