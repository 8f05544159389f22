"""Result files (che.result, che.results): what a results folder gives back and what it skips with a
warning, paths that stay inside it, results rescued when they cannot be written, and provenance."""

from __future__ import annotations

import json

import pytest
from conftest import run_alone, run_che


# -- reading a results folder: what is not a valid result is skipped with a warning ----------------
def test_corrupt_and_partial_result_files_are_skipped_with_a_warning(cli, tmp_path):
    assert cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path,
               "--quiet").exit_code == 0
    folder = tmp_path / "parity_check" / "none"
    (folder / "garbage.json").write_text("{not json")
    (folder / "partial.json").write_text(json.dumps({"task": "parity_check", "pe": "none"}))
    (folder / "list.json").write_text("[1, 2]")
    result = cli("leaderboard", "--results", tmp_path, "--format", "csv")
    assert result.exit_code == 0, result.stderr
    for name in ("garbage.json", "partial.json", "list.json"):
        assert f"skipping result file {folder / name}" in result.stderr
    assert result.stdout.count("parity_check") == 1


def test_empty_results_folder_is_a_clear_error(cli, tmp_path):
    result = cli("leaderboard", "--results", tmp_path)
    assert result.exit_code == 2 and f"no finished results in '{tmp_path}'" in result.stderr


@pytest.mark.parametrize("field, value, reason", [
    ("ood_accuracy", float("nan"), "finite"),
    ("ood_accuracy", float("inf"), "finite"),
    ("ood_accuracy", True, "valid number"),
    ("in_distribution_accuracy", 1.5, "less than or equal to 1"),
    ("seed", -3, "greater than or equal to 0"),
    ("accuracy_by_length", "0.5", "valid list"),
])
def test_the_leaderboard_skips_invalid_results_and_counts_a_run_once(cli, smoke_result, tmp_path, field, value, reason):
    folder = tmp_path / "runs" / "parity_check" / "alibi"
    folder.mkdir(parents=True)
    valid = json.loads(smoke_result.read_text())
    (folder / smoke_result.name).write_text(smoke_result.read_text())
    (folder / "copy.json").write_text(smoke_result.read_text())   # a byte-identical copy: the same run
    bad = dict(valid, run_id="seed9-lr0.0003-0000000000", **{field: value})
    (folder / "bad.json").write_text(json.dumps(bad))          # NaN / Infinity are written as such
    result = cli("leaderboard", "--results", tmp_path / "runs", "--format", "json")
    assert result.exit_code == 0, result.stderr
    cells = json.loads(result.stdout)["cells"]
    assert len(cells) == 1 and cells[0]["runs"] == 1
    assert cells[0]["ood_accuracy"] == pytest.approx(100 * valid["ood_accuracy"])
    assert "bad.json" in result.stderr and reason in result.stderr
    assert "copy.json" in result.stderr and "already read" in result.stderr


def test_unreadable_entries_in_the_results_folder_are_skipped_not_read(cli, smoke_result, tmp_path):
    import os

    folder = tmp_path / "runs" / "parity_check" / "alibi"
    folder.mkdir(parents=True)
    (folder / smoke_result.name).write_text(smoke_result.read_text())
    os.mkfifo(folder / "fifo.json")                             # reading it would block forever
    os.symlink("/dev/zero", folder / "zero.json")               # reading it would fill the memory
    result = run_che("leaderboard", "--results", tmp_path / "runs", "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cells"][0]["runs"] == 1
    assert "fifo.json: not a regular file" in result.stderr and "zero.json: not a regular file" in result.stderr


@pytest.mark.parametrize("field, value", [("n_layers", "5"), ("dropout", "0.1"), ("eval_dropout", 1)])
def test_a_result_with_wrongly_typed_settings_is_refused_or_skipped(cli, kept_run, tmp_path, field, value):
    record = json.loads(kept_run.read_text())
    record["config"][field] = value
    kept_run.write_text(json.dumps(record))
    result = cli("eval", kept_run, "--out-results", tmp_path / "evals")
    assert result.exit_code == 2 and f"{field} must be" in result.stderr
    board = cli("leaderboard", "--results", kept_run.parent.parent.parent, "--plot", tmp_path / "plot.png")
    assert board.exit_code == 2 and "no finished results" in board.stderr  # skipped with a warning
    assert f"{field} must be" in board.stderr and "Traceback" not in board.output


def test_a_result_of_an_unknown_schema_is_skipped(cli, kept_run):
    record = json.loads(kept_run.read_text())
    kept_run.with_name("copy.json").write_text(json.dumps(record | {"schema": 999, "run_id": "other"}))
    result = cli("leaderboard", "--results", kept_run.parent, "--format", "json")
    assert result.exit_code == 0 and json.loads(result.stdout)["cells"][0]["runs"] == 1
    assert "schema 999 is not one this che reads" in result.stderr


def test_symlinked_subfolders_of_a_results_folder_are_read(cli, kept_run, tmp_path):
    combined = tmp_path / "combined"
    combined.mkdir()
    (combined / "mine").symlink_to(kept_run.parent.parent.parent, target_is_directory=True)
    (combined / "loop").symlink_to(combined, target_is_directory=True)  # a cycle ends
    result = cli("leaderboard", "--results", combined, "--format", "json")
    assert result.exit_code == 0, result.stderr
    assert json.loads(result.stdout)["cells"][0]["runs"] == 1


def test_leaderboard_results_given_a_file_says_so(cli, kept_run):
    result = cli("leaderboard", "--results", kept_run)
    assert result.exit_code == 2 and "is a file; --results takes the folder" in result.stderr


# -- paths, rescue, provenance ---------------------------------------------------------------------
def test_result_paths_stay_inside_the_results_folder(tmp_path):
    """The second line of defence, for names that come from a result file rather than a registry."""
    from types import SimpleNamespace

    from che.errors import CheError
    from che.locks import lock_path
    from che.results import checkpoint_path, result_path

    for task, pe in [("parity_check", "../../x"), ("..", "alibi"), ("parity_check", "a/b"), ("parity_check", "")]:
        config = SimpleNamespace(task=task, pe=pe, run_id="seed0")
        for path_of in (result_path, checkpoint_path, lock_path):
            with pytest.raises(CheError, match="outside the results folder"):
                path_of(tmp_path, config)
    assert result_path(tmp_path, SimpleNamespace(task="parity_check", pe="alibi", run_id="r")) == \
        tmp_path / "parity_check" / "alibi" / "r.json"


def test_a_result_that_cannot_be_written_is_kept_somewhere_safe(tmp_path, monkeypatch):
    from che.runners import run as run_module

    from che.config import make_config
    from che.errors import CheError

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    real = run_module.write_json_atomic

    def full_disk(path, data):
        if "cache" not in str(path):
            raise OSError(28, "No space left on device")
        real(path, data)

    monkeypatch.setattr(run_module, "write_json_atomic", full_disk)
    config = make_config("parity_check", "none", "smoke")
    with pytest.raises(CheError, match="the disk is full.*saved in .*cache/che/rescued"):
        run_alone(config, tmp_path / "runs", device="cpu")
    rescued = json.loads((tmp_path / "cache" / "che" / "rescued" / f"parity_check--none--{config.run_id}.json")
                         .read_text())
    assert rescued["status"] == "finished" and rescued["run_id"] == config.run_id
    assert list((tmp_path / "runs").rglob("*.ckpt"))             # the trained model is kept too
    assert not list((tmp_path / "runs").rglob("*.tmp"))


def test_a_tree_without_git_records_the_revision_it_is_told(monkeypatch):
    """A copied tree (a cluster node, a GPU box) has no .git: the revision comes from CHE_GIT_REVISION
    and the result says where it came from; without it, the revision is unknown, not invented."""
    import subprocess

    from che import results

    def no_git(*args, **kwargs):
        raise subprocess.CalledProcessError(128, args[0])

    monkeypatch.setattr(results.subprocess, "run", no_git)
    monkeypatch.delenv("CHE_GIT_REVISION", raising=False)
    assert results.git_revision() == {"revision": None, "dirty": None}
    monkeypatch.setenv("CHE_GIT_REVISION", "05a6653")
    assert results.git_revision() == {"revision": "05a6653", "dirty": None, "from": "CHE_GIT_REVISION",
                                      "detected": {"revision": None, "dirty": None}}


def test_a_named_revision_wins_over_a_stale_git_and_keeps_what_git_said(monkeypatch):
    from che import results

    monkeypatch.delenv("CHE_GIT_REVISION", raising=False)
    detected = results.git_revision()
    monkeypatch.setenv("CHE_GIT_REVISION", "19ae522")
    named = results.git_revision()
    assert named["revision"] == "19ae522" and named["from"] == "CHE_GIT_REVISION"
    assert named["detected"] == detected
