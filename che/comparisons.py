"""Is PE A better than PE B? Per task, over runs: the difference of mean OOD accuracy with a 95%
bootstrap confidence interval, an exact permutation test of equal means (two-sided, or one-sided
for a claim stated before the runs were made: `alternative`), and the p-values adjusted for testing
every task at once (Holm). Across tasks: the mean of the per-task differences and a sign-flip test
over tasks. See che.stats for the tests and their limits (3 runs against 3 cannot reach p < 0.1 on
one task)."""

from __future__ import annotations

import pandas as pd

from che.errors import CheError
from che.results import select_runs
from che.stats import (ALTERNATIVES, CONFIDENCE, bootstrap_difference_ci, holm, permutation_p_value,
                       sign_flip_p_value, smallest_p_value)

ALPHA = 1 - CONFIDENCE
COLUMNS = ["task", "difference", "ci_low", "ci_high", "p_value", "p_adjusted", "runs_a", "runs_b",
           "mean_a", "mean_b", "significant"]


def compare(runs: pd.DataFrame, a: str, b: str, tasks: list[str] | None = None,
            protocol: str | None = None, alternative: str = "two-sided", seeds: list[int] | None = None) -> pd.DataFrame:
    """One row per task where both PEs have runs: difference = mean(A) - mean(B) in percentage
    points, its confidence interval, p_value (`alternative`: two-sided, or `greater` for the claim
    that A is better, `less` that B is), p_adjusted (Holm over the tasks compared) and whether it is
    significant at 5% after the adjustment. Runs of one protocol only (`protocol` chooses one where
    `runs` hold several, see che.protocol); `seeds`: only the runs of these seeds (to test a claim
    on runs other than those that suggested it)."""
    if alternative not in ALTERNATIVES:
        from che.errors import unknown_name_error

        raise unknown_name_error("alternative", alternative, ALTERNATIVES)
    runs = select_runs(runs, seeds=seeds)
    from che.leaderboards import task_sort_key
    from che.protocol import plumbing_check, select_protocol

    chosen_protocol = select_protocol(runs, protocol)
    runs, where = chosen_protocol.runs, f"the runs of protocol {chosen_protocol.label}"
    for pe in (a, b):
        if pe not in set(runs.pe):
            raise not_in_results("PE", pe, runs.pe, where)
    for task in tasks or []:
        if task not in set(runs.task):
            raise not_in_results("task", task, runs.task, where)
    chosen = runs if tasks is None else runs[runs.task.isin(tasks)]
    rows = []
    levels = dict(zip(runs.task, runs.level))
    for task in sorted(set(chosen.task), key=lambda t: task_sort_key(t, levels[t])):
        scores_a = 100 * chosen[(chosen.task == task) & (chosen.pe == a)]["ood_accuracy"].to_numpy()
        scores_b = 100 * chosen[(chosen.task == task) & (chosen.pe == b)]["ood_accuracy"].to_numpy()
        if not len(scores_a) or not len(scores_b):
            continue
        low, high = bootstrap_difference_ci(scores_a, scores_b)
        rows.append({"task": task, "difference": scores_a.mean() - scores_b.mean(), "ci_low": low, "ci_high": high,
                     "p_value": permutation_p_value(scores_a, scores_b, alternative=alternative), "runs_a": len(scores_a),
                     "runs_b": len(scores_b), "mean_a": scores_a.mean(), "mean_b": scores_b.mean()})
    if not rows:
        raise CheError(f"no task has runs of both '{a}' and '{b}'")
    table = pd.DataFrame(rows)
    table["p_adjusted"] = holm(table["p_value"])
    table["significant"] = table["p_adjusted"] < ALPHA  # False where there is no test (nan)
    table = table[COLUMNS]
    table.attrs["plumbing"] = plumbing_check(runs)
    table.attrs["alternative"] = alternative
    return table


def pe_in_results(runs: pd.DataFrame, name: str) -> str:
    """The PE of `runs` that `name` means: itself, or its canonical form (`dape-kerple` means
    `dape-kerple-log`). The names come from the results, so a plugin's PE needs no plugin loaded."""
    present = set(runs.pe)
    if name in present:
        return name
    from che.models.positional import canonical_pe_name

    try:
        canonical = canonical_pe_name(name)
    except CheError:  # not a name che knows (a plugin's, not loaded): only the results can have it
        canonical = None
    if canonical in present:
        return canonical
    raise not_in_results("PE", name, runs.pe)


def not_in_results(kind: str, name: str, found, where: str = "these results") -> CheError:
    """`no runs of PE 'x' in these results; did you mean 'y'? (PEs there: ...)`."""
    from che.errors import closest

    names = sorted(set(found))
    close = closest(name, names)
    hint = "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?" if close else ""
    return CheError(f"no runs of {kind} '{name}' in {where}{hint} ({kind}s there: {', '.join(names)})")


def plumbing_note(table: pd.DataFrame) -> str | None:
    """A line saying that smoke runs were compared (`che.protocol.plumbing_check`), else None."""
    from che.protocol import PLUMBING

    return f"note: these are {PLUMBING}" if table.attrs.get("plumbing") else None


def single_run_note(table: pd.DataFrame) -> str | None:
    """A line about the tasks where a PE has a single run, whose interval and test are n/a; None
    when every task has at least two runs of each PE."""
    single = table[(table.runs_a < 2) | (table.runs_b < 2)]
    if single.empty:
        return None
    names = ", ".join(single.task[:5]) + (f" and {len(single) - 5} more" if len(single) > 5 else "")
    return (f"note: {len(single)} task(s) have a single run of a PE ({names}): no interval and no test there "
            f"(n/a), which need two runs a side; train more seeds (--seeds 3) for them")


def summary(table: pd.DataFrame, a: str, b: str) -> str:
    wins = int((table.significant & (table.difference > 0)).sum())
    losses = int((table.significant & (table.difference < 0)).sum())
    alternative = table.attrs.get("alternative", "two-sided")
    tested = table[table.p_value.notna()]
    floor = min((smallest_p_value(int(r.runs_a), int(r.runs_b), alternative) for r in tested.itertuples()), default=1.0)
    text = (f"{a} vs {b}: {a} better on {int((table.difference > 0).sum())} of {len(table)} tasks, significantly "
            f"(Holm-adjusted p < {ALPHA:.2f}) on {wins}; {b} significantly better on {losses}.")
    if alternative != "two-sided":
        text += (f" One-sided tests of the claim that {a if alternative == 'greater' else b} is better: only a claim "
                 f"stated before these runs were made may be tested so.")
    if tested.empty:
        text += " No task has two runs of each PE, so none was tested."
    elif floor >= ALPHA:
        text += (f" With these runs per PE the permutation test cannot give p below {floor:.2g}: no task can be "
                 f"significant; use more seeds (5 against 5 reach p = 0.008).")
    apart = tested[((tested.ci_low > 0) | (tested.ci_high < 0)) & (tested.p_value >= ALPHA)]
    if not apart.empty:
        text += (f" On {len(apart)} task(s) the 95% interval excludes 0 while p >= {ALPHA:.2g}: the interval (a "
                 f"bootstrap over runs) estimates the difference's size and is too narrow with few runs; p (an exact "
                 f"permutation test) tests whether there is a difference at all: trust p.")
    if len(table) > 1:
        overall = across_tasks(table, alternative)
        text += (f" Across the {overall['tasks']} tasks (each task one unit): mean difference "
                 f"{overall['difference']:+.1f} points, sign-flip test p = {overall['p_value']:.2g}.")
    return text


def across_tasks(table: pd.DataFrame, alternative: str = "two-sided") -> dict:
    """Does A beat B on average over the benchmark? The tasks are the units (Demšar, JMLR 2006): the
    mean of the per-task differences of means, and an exact sign-flip test of it (two-sided, or in
    the direction of `alternative`)."""
    return {"tasks": len(table), "difference": float(table.difference.mean()),
            "p_value": sign_flip_p_value(table.difference.to_numpy(), alternative=alternative)}


def render(table: pd.DataFrame, a: str, b: str, fmt: str):
    """The comparison as text (md, csv, json) or a rich Table and its summary line (table); a
    statistic that needs two runs a side and has one is n/a."""
    from che.leaderboards import csv_safe, md_escape

    if fmt == "json":
        return table.to_json(orient="records", indent=2)
    if fmt == "csv":
        return csv_safe(table).to_csv(index=False, float_format="%.4g")

    def number(value, spec):
        return "n/a" if value != value else f"{value:{spec}}"  # nan: no statistic

    shown = table.assign(**{
        "A - B (pp)": table.difference.map("{:+.1f}".format),
        "95% CI": ["n/a" if lo != lo else f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(table.ci_low, table.ci_high)],
        "p": [number(v, ".3g") for v in table.p_value], "p (Holm)": [number(v, ".3g") for v in table.p_adjusted],
        "runs": [f"{x}/{y}" for x, y in zip(table.runs_a, table.runs_b)],
        "significant": table.significant.map({True: "yes", False: ""})})
    shown = shown[["task", "A - B (pp)", "95% CI", "p", "p (Holm)", "runs", "significant"]]
    text = summary(table, a, b)
    if fmt == "md":
        return (shown.assign(task=shown.task.map(md_escape)).to_markdown(index=False)
                + md_escape(f"\n\nA = {a}, B = {b}. {text}"))
    from rich.table import Table
    from rich.text import Text

    # No outer edge and short headers, so that the table fits an 80-column terminal with task names whole
    rich = Table(title=Text(f"{a} (A) vs {b} (B): OOD accuracy over runs, A - B in points"), show_edge=False,
                 pad_edge=False)
    short = {"A - B (pp)": "A - B", "p (Holm)": "Holm p", "significant": "sig."}
    for column in shown.columns:
        rich.add_column(short.get(column, column), justify="left" if column == "task" else "right",
                        overflow="fold", no_wrap=column == "task")  # wrap, never cut
    for row in shown.itertuples(index=False):
        rich.add_row(*[Text(str(v)) for v in row])
    return rich, text
