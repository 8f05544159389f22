"""`che compare` and che.compare: PE A against PE B per task (an interval, an exact test, Holm) and
across tasks, over the runs of one protocol."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from conftest import write_results

import che
from che.comparisons import across_tasks, summary
from che.stats import smallest_p_value


def test_che_compare_json_has_one_record_per_task(cli, runs_folder):
    result = cli("compare", "--pes", "alibi,none", "--results", runs_folder, "--format", "json")
    assert result.exit_code == 0, result.stderr
    records = json.loads(result.stdout)
    assert len(records) == 1
    record = records[0]
    for key in ("task", "difference", "ci_low", "ci_high", "p_value", "p_adjusted", "runs_a", "runs_b"):
        assert key in record, key
    runs = che.load_results(runs_folder)
    a, b = (100 * runs[runs.pe == pe].ood_accuracy for pe in ("alibi", "none"))
    assert record["difference"] == pytest.approx(a.mean() - b.mean()) and record["runs_a"] == 3
    assert record["p_value"] >= smallest_p_value(3, 3) == pytest.approx(0.1)
    table = cli("compare", "--pes", "alibi,none", "--results", runs_folder)
    assert "cannot give p below 0.1" in table.stdout
    assert cli("compare", "--pes", "alibi,alibi", "--results", runs_folder).exit_code == 2


def test_compare_reports_the_across_task_test():
    rows = [{"task": task, "level": "regular", "pe": pe, "ood_accuracy": 0.5 + (0.1 if pe == "alibi" else 0) + 0.01 * seed}
            for task in ("even_pairs", "parity_check", "cycle_navigation", "modular_arithmetic", "reverse_string")
            for pe in ("alibi", "none") for seed in range(3)]
    table = che.compare(pd.DataFrame(rows), "alibi", "none")
    assert table.difference.to_numpy() == pytest.approx([10.0] * 5)
    assert across_tasks(table) == {"tasks": 5, "difference": pytest.approx(10.0), "p_value": pytest.approx(2 / 32)}
    assert "Across the 5 tasks (each task one unit): mean difference +10.0 points, sign-flip test p = 0.062" \
        in summary(table, "alibi", "none")


def test_compare_with_a_single_run_of_a_pe_gives_n_a_and_a_note(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": "none", "ood": 0.5}, {"pe": "alibi", "ood": 0.6}, {"pe": "alibi", "ood": 0.7},
        {"pe": "alibi", "ood": 0.65}])
    result = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert result.exit_code == 0, result.stderr
    assert "Traceback" not in result.output and "+15.0" in result.stdout and "n/a" in result.stdout
    assert "single run" in result.stderr and "--seeds" in result.stderr
    records = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json").stdout)
    assert records[0]["difference"] == pytest.approx(15.0)
    assert records[0]["ci_low"] is None and records[0]["p_value"] is None and records[0]["significant"] is False

    import che

    table = che.compare(che.load_results(folder), "alibi", "none")
    assert math.isnan(table.p_value[0]) and math.isnan(table.ci_low[0])


def test_compare_takes_the_runs_of_one_protocol(cli, tmp_path, smoke_result):
    folder = write_results(tmp_path / "runs", smoke_result, [
        {"pe": pe, "ood": ood, "config": {"steps": steps}}
        for pe, ood, steps in [("alibi", 0.6, 10), ("alibi", 0.7, 10), ("none", 0.5, 10), ("none", 0.5, 10),
                               ("alibi", 0.9, 20), ("none", 0.1, 20)]])
    mixed = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert mixed.exit_code == 2 and "2 protocols" in mixed.stderr and "--protocol" in mixed.stderr
    one = cli("compare", "--pes", "alibi,none", "--results", folder, "--protocol", "smoke", "--format", "json")
    assert json.loads(one.stdout)[0]["difference"] == pytest.approx(15.0)


def test_compare_says_why_an_interval_excludes_0_beside_a_large_p(cli, tmp_path, smoke_result):
    """3 runs against 3, all of A above all of B: the bootstrap interval excludes 0, and the exact
    permutation test cannot go below p = 0.1."""
    runs = [{"pe": "alibi", "ood": v, "config": {"steps": 100}} for v in (0.60, 0.62, 0.64)]
    runs += [{"pe": "none", "ood": v, "config": {"steps": 100}} for v in (0.50, 0.52, 0.54)]
    folder = write_results(tmp_path / "runs", smoke_result, runs)
    result = cli("compare", "--pes", "alibi,none", "--results", folder)
    assert result.exit_code == 0, result.stderr
    record = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json").stdout)[0]
    assert record["ci_low"] > 0 and record["p_value"] == pytest.approx(0.1)
    text = " ".join(result.stdout.split())
    assert ("On 1 task(s) the 95% interval excludes 0 while p >= 0.05: the interval (a bootstrap over runs) "
            "estimates the difference's size and is too narrow with few runs; p (an exact permutation test) tests "
            "whether there is a difference at all: trust p.") in text
    overlapping = write_results(tmp_path / "overlap", smoke_result, [
        {"pe": "alibi", "ood": v, "config": {"steps": 100}} for v in (0.5, 0.6, 0.7)] + [
        {"pe": "none", "ood": v, "config": {"steps": 100}} for v in (0.45, 0.55, 0.65)])
    assert "excludes 0" not in cli("compare", "--pes", "alibi,none", "--results", overlapping).stdout


def test_compare_and_leaderboard_take_a_plugin_pe_from_the_results_without_the_plugin(cli, tmp_path, smoke_result):
    """`che compare --pes gaussian,alibi --results results/cpu/runs --results results/mine` said
    "unknown positional encoding 'gaussian'" unless the plugin was loaded (and --plugin is no option
    of che compare). "gauss-window" is no PE any test registers."""
    import che

    base = write_results(tmp_path / "base", smoke_result, [{"pe": "alibi", "ood": v} for v in (0.5, 0.52, 0.54)]
                         + [{"pe": "kerple-log", "ood": v, "seed": 3 + i} for i, v in enumerate((0.5, 0.5, 0.5))])
    mine = write_results(tmp_path / "mine", smoke_result, [{"pe": "gauss-window", "ood": v, "seed": 10 + i}
                                                           for i, v in enumerate((0.6, 0.62, 0.64))])
    folders = ["--results", base, "--results", mine]
    compared = cli("compare", "--pes", "gauss-window,alibi", *folders, "--format", "json")
    assert compared.exit_code == 0, compared.stderr
    assert json.loads(compared.stdout)[0]["difference"] == pytest.approx(10.0)
    board = cli("leaderboard", *folders, "--agg", "mean", "--format", "json")
    assert board.exit_code == 0 and {"gauss-window", "alibi"} <= {c["pe"] for c in json.loads(board.stdout)["cells"]}
    alias = che.compare(che.load_results([base, mine]), "kerple", "gauss-window")  # an alias still names its PE
    assert alias.attrs["pes"] == ("kerple-log", "gauss-window")

    typo = cli("compare", "--pes", "gauss-windw,alibi", *folders)
    assert typo.exit_code == 2 and typo.stderr == (
        "error: no runs of PE 'gauss-windw' in these results; did you mean 'gauss-window'? "
        "(PEs there: alibi, gauss-window, kerple-log)\n")
    task = cli("compare", "--pes", "gauss-window,alibi", "--tasks", "parity_chek", *folders)
    assert task.exit_code == 2 and "no runs of task 'parity_chek' in the runs of protocol smoke; did you mean " \
        "'parity_check'?" in task.stderr


def test_che_compare_tests_a_claim_one_sided_on_chosen_seeds(cli, smoke_result, tmp_path):
    runs = [{"pe": "alibi", "seed": s, "ood": 0.6 + 0.01 * s} for s in range(6)]
    runs += [{"pe": "none", "seed": s, "ood": 0.5 + 0.01 * s} for s in range(6)]
    folder = write_results(tmp_path / "runs", smoke_result, runs)
    both = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json").stdout)
    one = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json",
                         "--alternative", "greater").stdout)
    assert one[0]["p_value"] == pytest.approx(both[0]["p_value"] / 2)
    later = json.loads(cli("compare", "--pes", "alibi,none", "--results", folder, "--format", "json",
                           "--alternative", "greater", "--seeds", "3..5").stdout)
    assert later[0]["runs_a"] == later[0]["runs_b"] == 3 and later[0]["p_value"] == pytest.approx(1 / 20)
    text = cli("compare", "--pes", "alibi,none", "--results", folder, "--alternative", "greater").stdout
    assert "One-sided tests of the claim that alibi is better" in " ".join(text.split())
    bad = cli("compare", "--pes", "alibi,none", "--results", folder, "--seeds", "3-5")
    assert bad.exit_code == 2 and "range (3..9)" in bad.stderr


def test_the_terminal_table_fits_80_columns_with_task_names_whole():
    """In an 80-column terminal each row is one line: task names whole, no column folded."""
    import io

    import pandas as pd
    from rich.console import Console

    from che.comparisons import render

    rows = [dict(task=task, difference=-17.7, ci_low=-26.8, ci_high=-8.7, p_value=0.0236, p_adjusted=0.141,
                 runs_a=10, runs_b=10, significant=False) for task in ("stack_manipulation", "binary_multiplication")]
    table, _ = render(pd.DataFrame(rows), "fox+causal", "alibi", "table")
    out = io.StringIO()
    Console(file=out, width=80).print(table)
    lines = out.getvalue().splitlines()
    assert max(map(len, lines)) <= 80
    body = [line for line in lines if "stack_manipulation" in line or "binary_multiplication" in line]
    assert len(body) == 2 and all("[-26.8, -8.7]" in line and "10/10" in line for line in body)
