"""Defects a new user met (trying che end to end as the README says): each test failed before its fix."""

from __future__ import annotations

import json
import math

import pytest

from conftest import write_results


# -- a first comparison with one run of a PE ------------------------------------------------------
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


def test_holm_leaves_untested_tasks_out_of_the_family():
    from che.stats import holm

    adjusted = holm([0.01, float("nan"), 0.04])
    assert adjusted[0] == pytest.approx(0.02) and math.isnan(adjusted[1]) and adjusted[2] == pytest.approx(0.04)
