"""Do two folders of records of one protocol differ? Pairs their runs by method, parameters, fraction and seed and
prints, per row, each folder's mean and the per-seed difference (first folder minus second) with its 95 % t
interval and spread, for the worst case at the headline eps and for clean accuracy, with the machines each folder
was made on. Made for the same runs on two machines: on a CPU the same seed on another model is another draw of
the training, and whether the two draws differ systematically is what the interval says.

    python scripts/paired_folders.py results/amd-check submissions/cifar10-cpu-at

Reads records with the pages' dependencies (no torch); prints numbers, writes nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd
from benchmark.leaderboard.aggregate import runs_frame
from benchmark.leaderboard.statistics import compare_paired

from benchmark.errors import UserError
from benchmark.schema import load_records

KEYS = ["method", "params", "fraction", "seed"]
MEASURES = {"headline": "worst case at the headline eps", "clean": "clean accuracy"}


def table(first: pd.DataFrame, second: pd.DataFrame) -> pd.DataFrame:
    both = first.merge(second, on=KEYS, suffixes=("_1", "_2"))
    variants = both.groupby("method")["params"].nunique()  # parameters are shown where a method has several
    rows = []
    for (method, params, fraction), part in both.groupby(KEYS[:3], sort=True):
        part = part.sort_values("seed")
        row = {"method": method + (f" {params}" if variants[method] > 1 else ""), "fraction": f"{fraction:g}",
               "pairs": len(part), "machines": f"{_names(part['device_1'])} / {_names(part['device_2'])}"}
        for name in MEASURES:
            c = compare_paired(part[f"{name}_1"], part[f"{name}_2"])
            row[f"{name}: means"] = f"{100 * part[f'{name}_1'].mean():.2f} / {100 * part[f'{name}_2'].mean():.2f}"
            row[f"{name}: difference"] = (f"{100 * c.mean:+.2f} [{100 * c.low:+.2f}, {100 * c.high:+.2f}] "
                                          f"sd {100 * c.sd:.2f}" if c.has_interval else "one pair: no interval")
        rows.append(row)
    return pd.DataFrame(rows)


def _names(devices: pd.Series) -> str:
    return ", ".join(sorted(set(devices)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("first", type=Path, help="a folder of records")
    parser.add_argument("second", type=Path, help="a folder of records of the same protocol")
    args = parser.parse_args(argv)
    frames = []
    for folder in (args.first, args.second):
        if not folder.is_dir():
            print(f"error: {folder} is not a folder; give two folders of records", file=sys.stderr)
            return 2
        try:
            frames.append(runs_frame(load_records([folder])))
        except UserError as error:  # unreadable or invalid records
            print(f"error: {folder}: {error}", file=sys.stderr)
            return 2
    found = table(*frames)
    if found.empty:
        print("no runs in common (same method, parameters, fraction and seed)", file=sys.stderr)
        return 1
    print(f"first: {args.first}; second: {args.second}; difference per seed: first - second, points, "
          f"95 % t interval")
    print(found.to_markdown(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
