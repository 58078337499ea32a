"""The table `run` prints at the end: one row per record, accuracies in percent: clean, then the worst case
over the suite's attacks at each L-infinity eps (FGSM for version-1 records)."""

from tabulate import tabulate


def _worst(record: dict) -> dict[float, float]:
    worst = {w["eps"]: w["accuracy"] for w in record.get("worst_case", []) if w["threat"] == "Linf"}
    return worst or {a["eps"]: a["accuracy"] for a in record["attacks"]}


def markdown_table(records: list[dict]) -> str:
    if not records:
        return "(no runs)"
    eps_values = sorted({eps for record in records for eps in _worst(record)})
    headers = ["method", "fraction", "seed", "budget", "clean %"]
    headers += [f"worst {eps * 255:g}/255 %" for eps in eps_values] + ["flags", "select s", "train s"]
    rows = []
    for record in records:
        worst = _worst(record)
        rows.append([record["method"], record["fraction"], record["seed"], record["budget"],
                     100 * record["clean_accuracy"]] + [100 * worst.get(eps, float("nan")) for eps in eps_values]
                    + [",".join(f["code"] for f in record.get("flags", [])) or "-",
                       record["selection"]["seconds"], record["training"]["seconds"]])
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f")
