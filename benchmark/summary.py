"""The table `run` prints at the end: one row per record, accuracies in percent."""

from tabulate import tabulate


def markdown_table(records: list[dict]) -> str:
    if not records:
        return "(no runs)"
    eps_values = [attack["eps"] for attack in records[0]["attacks"]]
    headers = ["method", "fraction", "seed", "budget", "clean %"]
    headers += [f"FGSM {eps * 255:g}/255 %" for eps in eps_values] + ["select s", "train s"]
    rows = []
    for record in records:
        by_eps = {attack["eps"]: attack["accuracy"] for attack in record["attacks"]}
        rows.append([record["method"], record["fraction"], record["seed"], record["budget"],
                     100 * record["clean_accuracy"]] + [100 * by_eps.get(eps, float("nan")) for eps in eps_values]
                    + [record["selection"]["seconds"], record["training"]["seconds"]])
    return tabulate(rows, headers=headers, tablefmt="github", floatfmt=".2f")
