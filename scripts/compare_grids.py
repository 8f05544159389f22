"""Two grids of the same tasks x PEs x seeds, e.g. before and after a change to the PEs: per (task, PE),
the mean OOD accuracy of each with its 95% bootstrap interval, the difference, and an exact
permutation test over the seeds (Holm-adjusted over all cells), as a markdown table; then per PE, the
mean difference over tasks with a sign-flip test (tasks as units).

    python scripts/compare_grids.py BEFORE_RESULTS AFTER_RESULTS [--labels before,after]
"""

from __future__ import annotations

import argparse

import pandas as pd

import che
from che.leaderboards import pe_sort_key, task_sort_key
from che.stats import bootstrap_mean_ci, holm, permutation_p_value, sign_flip_p_value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--labels", default="before,after")
    args = parser.parse_args()
    first, second = args.labels.split(",")
    old, new = che.load_results(args.before), che.load_results(args.after)
    rows = []
    cells = sorted(set(zip(old.task, old.pe)) & set(zip(new.task, new.pe)),
                   key=lambda c: (task_sort_key(c[0], dict(zip(old.task, old.level))[c[0]]), pe_sort_key(c[1])))
    for task, pe in cells:
        a = 100 * old[(old.task == task) & (old.pe == pe)].ood_accuracy.to_numpy()
        b = 100 * new[(new.task == task) & (new.pe == pe)].ood_accuracy.to_numpy()
        (la, ha), (lb, hb) = bootstrap_mean_ci(a), bootstrap_mean_ci(b)
        rows.append({"task": task, "pe": pe, first: f"{a.mean():.1f} [{la:.1f}, {ha:.1f}] ({len(a)})",
                     second: f"{b.mean():.1f} [{lb:.1f}, {hb:.1f}] ({len(b)})",
                     "difference": b.mean() - a.mean(), "p": permutation_p_value(b, a)})
    table = pd.DataFrame(rows)
    table["p (Holm)"] = holm(table["p"])
    per_pe = [{"pe": pe, "cells": len(group), "mean difference": f"{group.difference.mean():+.1f}",
               "p (sign flip over tasks)": f"{sign_flip_p_value(group.difference.to_numpy()):.2f}"}
              for pe, group in table.groupby("pe", sort=False)]
    table["difference"] = table["difference"].map("{:+.1f}".format)
    table["p"] = table["p"].map("{:.2f}".format)
    table["p (Holm)"] = table["p (Holm)"].map("{:.2f}".format)
    print(table.to_markdown(index=False))
    print(f"\nOOD accuracy (%), mean over seeds [95% bootstrap interval] (runs); difference = {second} - {first}; "
          f"p: exact two-sided permutation test over the seeds.\n")
    print(pd.DataFrame(per_pe).to_markdown(index=False))
    print(f"\nPer PE: the mean over tasks of the difference ({second} - {first}), and an exact sign-flip test "
          f"with the tasks as units.")


if __name__ == "__main__":
    main()
