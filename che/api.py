"""The Python API: what the `che` commands do, as functions (`import che`; che/__init__.py exports
them). Runs go through the same plan as `che run` (`che.runners.launch`); results are read as the
leaderboard reads them."""

from __future__ import annotations


def run(task: str, pe: str, preset: str = "cpu", *, seeds=None, lrs=None, results="results/runs",
        device: str = "auto", force: bool = False, resume: bool = False, **settings):
    """Train and evaluate `task` x `pe` as `che run` does (`settings`: any setting, `che settings`,
    e.g. steps=100), store the result, and return it: the `Outcome` (status, path, record) of the
    run, or a list of them with several `seeds` / `lrs` (trained together as one pack)."""
    from pathlib import Path

    from che.runners import launch

    plan = launch.plan_run(task, pe, preset=preset, seeds=None if seeds is None else list(seeds),
                           lrs=None if lrs is None else list(lrs), device=device, results=Path(results),
                           settings=settings, force=force, resume=resume)
    outcomes = launch.execute(plan, force=force, resume=resume)
    return outcomes[0] if len(outcomes) == 1 else outcomes


def load_results(path="results/runs"):
    """Every finished, valid result under a folder (or a list of folders) as a pandas DataFrame: one row per run, its
    configuration's settings as columns, its scores and its accuracy by length (a list). Scores are
    fractions in [0, 1] as result files store them (ood_accuracy, in_distribution_accuracy,
    chance_accuracy), and in percent, the unit of `che`'s output and of `leaderboard` and `compare`,
    as ood_accuracy_percent, in_distribution_accuracy_percent and chance_accuracy_percent."""
    from che.results import load_results as load, results_frame

    return results_frame(load(path))


def leaderboard(runs, agg: str = "max", reference: str | None = None, strict: bool = False,
                protocol: str | None = None):
    """The tasks x PEs leaderboard of a table of runs (`load_results`): `.cells` holds, per (task,
    PE), the aggregate in %, the mean with its 95% bootstrap interval, and the number of runs;
    `.to_markdown()` is what `che leaderboard --format md` prints, `.to_frame()` that table as a
    DataFrame of its printed cells. Runs
    of different protocols (steps, lengths, model, ...) are never aggregated together: with several
    in `runs`, name one (`protocol`, see `protocols`)."""
    from che.leaderboards import build

    return build(runs, agg, reference, strict, protocol)


def protocols(runs):
    """The protocols of a table of runs (`load_results`), the most common first: each has a `label`
    (its preset's name, made unique), the `settings` its runs share, `differs` (the settings that
    tell it from the others) and its `runs`."""
    from che.protocol import protocols as find

    return find(runs)


def compare(runs, a: str, b: str, tasks=None, protocol: str | None = None, alternative: str = "two-sided",
            seeds=None):
    """Per task, PE `a` against PE `b` over their runs of one protocol (see che.comparisons):
    difference, interval, p_value (two-sided, or one-sided: `alternative="greater"` tests that `a` is
    better), p_adjusted (Holm), runs_a, runs_b; `seeds` keeps only those seeds' runs. The PEs are
    those of the runs (a plugin's PE needs no plugin loaded); an alias names its PE (`dape-kerple`)."""
    from che.comparisons import compare as compare_pes, pe_in_results
    from che.errors import CheError

    a, b = pe_in_results(runs, a), pe_in_results(runs, b)
    if a == b:
        raise CheError(f"compare two different PEs, not {a} with itself")
    table = compare_pes(runs, a, b, tasks, protocol, alternative=alternative, seeds=seeds)
    table.attrs["pes"] = (a, b)
    return table
