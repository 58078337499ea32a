"""`python -m benchmark export`: the records as one table for people's own notebooks (pandas; CSV or Parquet by
the file name). One row per run for clean accuracy, one per attack x eps, and one per worst case x eps.

Text that starts with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to a spreadsheet (CSV
injection): such cells are written with a leading apostrophe, which spreadsheets show as text."""

from __future__ import annotations

import json
from pathlib import Path

from benchmark.errors import UserError
from benchmark.schema import load_records
from benchmark.storage import atomic_write

COLUMNS = ["record", "schema", "method", "method_params", "dataset", "model", "preset", "fraction", "seed", "budget",
           "pool_size", "measure", "attack", "attack_params", "threat", "eps", "eps_255", "accuracy",
           "cross_check_accuracy", "cross_check_reference_accuracy", "cross_check_images", "selection_seconds",
           "training_seconds", "flags", "package", "device", "runs_per_device", "created"]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value):
    """A cell a spreadsheet shows as it is: text that could start a formula gets a leading apostrophe."""
    return f"'{value}" if isinstance(value, str) and value.startswith(FORMULA_STARTS) else value


def rows(paths: list[Path]) -> list[dict]:
    table = []
    for item in load_records(paths):
        record = item.record
        environment = record.environment
        base = {"record": item.path.name, "schema": record.schema, "method": record.method,
                "method_params": json.dumps(record.method_params, sort_keys=True), "dataset": record.dataset,
                "model": record.model, "preset": record.preset, "fraction": record.fraction, "seed": record.seed,
                "budget": record.budget, "pool_size": record.pool_size, "selection_seconds": record.selection.seconds,
                "training_seconds": record.training.seconds, "flags": ",".join(record.flag_codes),
                "package": environment.package, "device": environment.device or "",
                "runs_per_device": environment.runs_per_device, "created": record.created}
        table.append({**base, "measure": "clean", "accuracy": record.clean_accuracy})
        for attack in record.attacks:
            check = attack.cross_check
            threat = attack.threat_model
            table.append({**base, "measure": "attack", "attack": attack.name,
                          "attack_params": json.dumps(attack.params or {}, sort_keys=True), "threat": threat,
                          "eps": attack.eps, "eps_255": attack.eps * 255 if threat == "Linf" else None,
                          "accuracy": attack.accuracy,
                          "cross_check_accuracy": check.accuracy if check else attack.inhouse_accuracy,
                          "cross_check_reference_accuracy": check.reference_accuracy if check else None,
                          "cross_check_images": check.images if check else None})
        for worst in record.worst_case or ():
            table.append({**base, "measure": "worst_case", "attack": "+".join(worst.attacks),
                          "threat": worst.threat, "eps": worst.eps,
                          "eps_255": worst.eps * 255 if worst.threat == "Linf" else None,
                          "accuracy": worst.accuracy})
    return [{key: inert(value) for key, value in row.items()} for row in table]


def export(paths: list[Path], out: Path) -> int:
    """Writes the table to `out` (atomically); returns the number of rows."""
    import io

    import pandas as pd

    suffix = Path(out).suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise UserError(f"--out {out}: name a .csv or .parquet file")
    frame = pd.DataFrame(rows(paths), columns=COLUMNS)
    buffer = io.BytesIO()
    if suffix == ".csv":
        buffer.write(frame.to_csv(index=False).encode("utf-8"))
    else:
        try:
            frame.to_parquet(buffer, index=False)
        except ImportError:
            raise UserError("Parquet needs pyarrow: pip install pyarrow (or write a .csv)") from None
    atomic_write(Path(out), buffer.getvalue())
    return len(frame)
