"""One-sided tests and a seed filter in che.stats and che compare: a claim stated before the runs
were made (A is better) is tested in its direction, on the runs that did not suggest it."""

from __future__ import annotations

import json

import pytest

from che.stats import permutation_p_value, sign_flip_p_value, smallest_p_value


def test_one_sided_permutation_p_by_hand():
    """3 runs against 3, every run of A above every run of B: 1 of the 20 splits is as extreme in
    A's favour (p = 0.05); two-sided the mirror split counts too (0.1); against B, p = 1."""
    a, b = [3.0, 4.0, 5.0], [0.0, 1.0, 2.0]
    assert permutation_p_value(a, b, alternative="greater") == pytest.approx(1 / 20)
    assert permutation_p_value(a, b) == pytest.approx(2 / 20)
    assert permutation_p_value(a, b, alternative="less") == pytest.approx(1.0)
    assert smallest_p_value(3, 3, "greater") == pytest.approx(1 / 20) and smallest_p_value(3, 3) == pytest.approx(0.1)


def test_one_sided_sign_flip_p_by_hand():
    """Three positive per-task differences: 1 of the 8 sign patterns has a mean as large (p = 1/8);
    two-sided, the all-negative one as well (2/8)."""
    assert sign_flip_p_value([1.0, 2.0, 3.0], alternative="greater") == pytest.approx(1 / 8)
    assert sign_flip_p_value([1.0, 2.0, 3.0]) == pytest.approx(2 / 8)
    assert sign_flip_p_value([1.0, 2.0, 3.0], alternative="less") == pytest.approx(1.0)


def test_che_compare_tests_a_claim_one_sided_on_chosen_seeds(cli, smoke_result, tmp_path):
    from conftest import write_results

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
