"""Traps in messages: an error must say what the user typed and how to give it, and a setting given
twice (by two --set, or by an option and --set) is refused instead of one value silently winning.
Each test failed before its fix."""

from __future__ import annotations

import pytest

SMOKE_RUN = ("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--quiet")


def one_error_line(result) -> str:
    """The command refused in one line, `error: ...`, exit code 2, and trained nothing."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "step 1/" not in result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


# -- an option that names a setting says how to give it -------------------------------------------
@pytest.mark.parametrize("typed, pointer", [
    (["--seed", "3"], "--set seed=3"),
    (["--seed=3"], "--set seed=3"),
    (["--batch-size", "64"], "--set batch_size=64"),
    (["--train-length", "20"], "--set train_length=20"),
    (["--train_length", "20"], "--set train_length=20"),
    (["--eval-dropout"], "--set eval_dropout=true"),
])
def test_an_option_that_names_a_setting_points_to_set(cli, tmp_path, typed, pointer):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))
    assert f"no such option {typed[0].split('=')[0]}" in line and pointer in line
    if "seed" in typed[0]:  # not a bare suggestion of --seeds, which would train seeds 0, 1, 2
        assert "--seeds N trains N seeds, 0..N-1" in line
    assert not list(tmp_path.rglob("*.json"))


def test_an_option_that_names_no_setting_keeps_clicks_suggestion(cli):
    line = one_error_line(cli("sweep", "--task", "parity_check", "--dry-run"))
    assert "No such option: --task" in line and "--tasks" in line and "--set" not in line


# -- one setting, one value ------------------------------------------------------------------------
@pytest.mark.parametrize("typed, message", [
    (["--steps", "5", "--set", "steps=-1"], "give --steps or --set steps=..., not both"),
    (["--steps", "3", "--set", "steps=7"], "give --steps or --set steps=..., not both"),
    (["--set", "seed=1", "--set", "seed=2"], "--set seed is given twice (1 and 2); give it once"),
    (["--set", "batch-size=16", "--set", "batch_size=32"], "--set batch_size is given twice (16 and 32)"),
])
def test_a_setting_given_twice_is_refused(cli, tmp_path, typed, message):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))
    assert message in line


def test_a_sweep_refuses_steps_given_twice(cli, tmp_path):
    line = one_error_line(cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke",
                              "--steps", 3, "--set", "steps=7", "--results", tmp_path, "--dry-run"))
    assert "give --steps or --set steps=..., not both" in line


def test_che_eval_refuses_a_setting_given_twice(cli, tmp_path, smoke_result):
    line = one_error_line(cli("eval", smoke_result, "--max-test-length", 10, "--set", "max_test_length=12",
                              "--out-results", tmp_path))
    assert "give --max-test-length or --set max_test_length=..., not both" in line


def test_slurm_settings_are_refused_by_che_run(cli, tmp_path):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, "--set", "slurm.partition=x"))
    assert "slurm settings (partition) are for `che sweep --executor slurm`, not che run" in line


@pytest.mark.parametrize("typed, message", [
    ("lr=nan", "--set lr: a learning rate must be in (0, 1), got nan"),
    ("seed=-1", "--set seed: seeds must be in [0, 2^32), got -1"),
])
def test_a_bad_seed_or_lr_given_with_set_is_named_as_typed(cli, tmp_path, typed, message):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, "--set", typed))
    assert message in line and "--lrs" not in line and "--seeds" not in line


# -- a long name is not echoed whole ----------------------------------------------------------------
LONG = "x" * 10_000


@pytest.mark.parametrize("typed", [
    ["--task", LONG], ["--pe", LONG], ["--pe", f"dape-{LONG}+causal"], ["--set", f"{LONG}=1"],
    ["--set", f"d_model={LONG}"], ["--set", f"rand_mode={LONG}"], ["--seeds", LONG], ["--preset", LONG],
    [f"--{LONG}", "1"], ["--set", f"slurm.{LONG}=1"],
], ids=["task", "pe", "pe-grammar", "setting", "int-value", "choice-value", "seeds", "preset", "option", "slurm"])
def test_a_long_name_is_shortened_in_the_error(cli, tmp_path, typed):
    line = one_error_line(cli(*SMOKE_RUN, "--results", tmp_path, *typed))  # the last --task or --pe wins
    assert "xxx..." in line and len(line) < 400, len(line)
