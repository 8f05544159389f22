"""Two grids of the same tasks x PEs x seeds, e.g. before and after a change to the PEs: per (task, PE),
`che.comparisons.compare` of the two grids' runs (difference of mean OOD accuracy, its 95% bootstrap
interval, an exact permutation test over the seeds), Holm-adjusted over all cells, as a markdown
table; then per PE, `che.comparisons.across_tasks` (mean difference, sign-flip test over tasks).

    python scripts/compare_grids.py BEFORE_RESULTS AFTER_RESULTS [--labels before,after]
"""

from __future__ import annotations

import argparse

import pandas as pd

import che
from che.comparisons import across_tasks, compare
from che.leaderboards import pe_sort_key, task_sort_key
from che.protocol import ANY_PROTOCOL
from che.stats import holm


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--labels", default="before,after")
    args = parser.parse_args()
    first, second = args.labels.split(",")
    old, new = che.load_results(args.before), che.load_results(args.after)
    tables = []
    for pe in sorted(set(old.pe) & set(new.pe), key=pe_sort_key):
        # the two grids' runs of this PE, labelled by grid: compare(after, before) per task
        runs = pd.concat([old[old.pe == pe].assign(pe=first), new[new.pe == pe].assign(pe=second)])
        # the two grids may differ in protocol (another version of the code): that is the comparison
        tables.append(compare(runs, second, first, protocol=ANY_PROTOCOL).assign(pe=pe))
    table = pd.concat(tables, ignore_index=True)
    table["p (Holm)"] = holm(table["p_value"])  # over every cell, not per PE
    levels = dict(zip(old.task, old.level))
    table = table.sort_values(["task", "pe"], key=lambda column: column.map(
        (lambda t: task_sort_key(t, levels[t])) if column.name == "task" else pe_sort_key), kind="stable")
    per_pe = []
    for pe, group in table.groupby("pe", sort=False):
        overall = across_tasks(group)
        per_pe.append({"pe": pe, "cells": overall["tasks"], "mean difference": f"{overall['difference']:+.1f}",
                       "p (sign flip over tasks)": f"{overall['p_value']:.2f}"})
    shown = pd.DataFrame({
        "task": table.task, "pe": table.pe,
        first: [f"{m:.1f} ({n})" for m, n in zip(table.mean_b, table.runs_b)],
        second: [f"{m:.1f} ({n})" for m, n in zip(table.mean_a, table.runs_a)],
        "difference": table.difference.map("{:+.1f}".format),
        "95% CI": [f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(table.ci_low, table.ci_high)],
        "p": table.p_value.map("{:.2f}".format), "p (Holm)": table["p (Holm)"].map("{:.2f}".format)})
    print(shown.to_markdown(index=False))
    print(f"\nOOD accuracy (%), mean over seeds (runs); difference = {second} - {first}, with its 95% bootstrap "
          f"interval; p: exact two-sided permutation test over the seeds.\n")
    print(pd.DataFrame(per_pe).to_markdown(index=False))
    print(f"\nPer PE: the mean over tasks of the difference ({second} - {first}), and an exact sign-flip test "
          f"with the tasks as units.")


if __name__ == "__main__":
    main()
