"""How much do coresets agree? Reads the selections that records name (`<record>.selection.npz`) and prints, per
method and fraction, the share of one coreset that another holds: between seeds of one folder of records, and,
given a second folder (another protocol, e.g. the adversarially trained one), between the two folders at the same
seed. Two random subsets of the same size share the fraction itself on average: that is the "chance" column.

    python scripts/selection_overlap.py submissions/cifar10-cpu
    python scripts/selection_overlap.py submissions/cifar10-cpu submissions/cifar10-cpu-at

Reads JSON and numpy only (no torch); prints numbers, writes nothing.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def selections(folder: Path) -> dict:
    """(method, params as JSON, fraction) -> {seed: set of pool indices}, for the records in `folder` whose
    selection artifact is there (the full pool has none)."""
    found: dict = {}
    for path in sorted(folder.glob("*.json")):
        record = json.loads(path.read_text())
        artifact = (record.get("selection") or {}).get("artifact")
        if not artifact or not (folder / artifact).is_file():
            continue
        key = (record["method"], json.dumps(record.get("method_params") or {}, sort_keys=True),
               float(record["fraction"]))
        with np.load(folder / artifact) as data:
            found.setdefault(key, {})[int(record["seed"])] = set(data["pool_indices"].tolist())
    return found


def shared(a: set, b: set) -> float:
    return len(a & b) / max(len(a), 1)


def table(first: dict, second: dict | None) -> pd.DataFrame:
    rows = []
    variants: dict = {}  # a method's parameters are shown only where the folder has more than one variant of it
    for method, params, _ in first:
        variants.setdefault(method, set()).add(params)
    for (method, params, fraction), by_seed in sorted(first.items()):
        pairs = [shared(by_seed[s], by_seed[t]) for s, t in itertools.combinations(sorted(by_seed), 2)]
        row = {"method": method + (f" {params}" if len(variants[method]) > 1 else ""), "fraction": f"{fraction:g}",
               "chance": f"{fraction:.2f}", "seeds": len(by_seed),
               "seed to seed": _summary(pairs)}
        if second is not None:
            theirs = second.get((method, params, fraction), {})
            same_seed = [shared(by_seed[s], theirs[s]) for s in sorted(by_seed) if s in theirs]
            row["same seed, other folder"] = _summary(same_seed)
        rows.append(row)
    return pd.DataFrame(rows)


def _summary(values: list[float]) -> str:
    if not values:
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{np.mean(values):.2f} [{min(values):.2f}, {max(values):.2f}] ({len(values)} pairs)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("records", type=Path, help="a folder of records with their .selection.npz files")
    parser.add_argument("other", type=Path, nargs="?", help="a second folder, compared seed by seed")
    args = parser.parse_args(argv)
    for folder in filter(None, (args.records, args.other)):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder; give a folder of records (e.g. submissions/cifar10-cpu)",
                  file=sys.stderr)
            return 2
    first = selections(args.records)
    if not first:
        print(f"error: no record in {args.records} names a selection file that is there", file=sys.stderr)
        return 2
    frame = table(first, selections(args.other) if args.other else None)
    print(frame.to_markdown(index=False, disable_numparse=True))  # "0.20" stays as written
    return 0


if __name__ == "__main__":
    sys.exit(main())
