"""The table `run` prints at the end: one row per record, accuracies in percent: clean, then the worst case
over the suite's attacks at each L-infinity eps (FGSM for version-1 records)."""

from tabulate import tabulate

from benchmark.record import Record, eps_text


def markdown_table(records: list[Record]) -> str:
    if not records:
        return "(no runs)"
    eps_values = sorted({eps for record in records for eps in record.worst_linf()})
    headers = ["method", "fraction", "seed", "budget", "clean %"]
    headers += [f"worst {eps_text(eps)} %" for eps in eps_values] + ["flags", "select s", "train s"]
    rows = []
    for record in records:
        worst = record.worst_linf()
        rows.append([record.method, record.fraction, record.seed, record.budget, 100 * record.clean_accuracy]
                    + [100 * worst.get(eps, float("nan")) for eps in eps_values]
                    + [",".join(record.flag_codes) or "-", record.selection.seconds, record.training.seconds])
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f")
