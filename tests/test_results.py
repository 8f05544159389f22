"""Result files (che.result, che.results): what a results folder gives back and what it skips with a
warning, paths that stay inside it, and provenance."""

from __future__ import annotations

import json

import pytest


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
