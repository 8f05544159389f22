"""Estimates before a run: a range that says how far the machine's load may move the run's time,
and one number for the CPU leaderboard, the one its dry run prints; a device is calibrated once."""

from __future__ import annotations

import re

import torch
from conftest import REPO

from che.config import make_config
from che.registry import TASKS


def test_a_packs_cpu_estimate_is_a_range_up_to_a_shared_machines_time():
    """A pack of 2 on a CPU: the range is not one value; its top is at least 2.6x the estimate (what
    one more busy process on the cores did to a run on this project's machine)."""
    from che.runners.estimate import estimate_seconds

    configs = [make_config("parity_check", "alibi", "smoke", seed=seed) for seed in (0, 1)]
    estimate = estimate_seconds(configs, TASKS.get("parity_check"), torch.device("cpu"))
    for what in ("train", "eval"):
        low, high = estimate[f"{what}_range_s"]
        assert low <= estimate[f"{what}_s"] and high >= 2.6 * estimate[f"{what}_s"] > 0


def test_che_run_and_che_eval_say_what_their_range_means(cli, tmp_path):
    run = cli("run", "--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--seeds", 2,
              "--results", tmp_path / "runs")
    assert run.exit_code == 0, run.stderr
    line = next(line for line in run.stderr.splitlines() if line.startswith("estimated cost"))  # a log line
    assert re.search(r"training ~\S+ s \(\S+ s-\S+ s\), evaluation ~\S+ s \(\S+ s-\S+ s\)", line), line
    assert "each range: from the fastest step timed now to 3x the estimate, as when another busy process" in line
    kept = next((tmp_path / "runs").rglob("seed0-*.json"))
    evaluated = cli("eval", kept, "--out-results", tmp_path / "evals", "--max-test-length", 10)
    assert evaluated.exit_code == 0, evaluated.stderr
    assert re.search(r"estimated cost ~[^(]+\([^-]+-[^:]+: 3x either way, as the machine's load now differs "
                     r"from when it was calibrated\)", evaluated.stderr), evaluated.stderr


def test_the_readme_gives_the_cpu_leaderboard_the_time_its_dry_run_prints(tmp_path, monkeypatch):
    """On this project's 2-core machine (its shipped calibration) the dry run prints one number; every
    paragraph of the README about the CPU leaderboard's duration gives that one."""
    from che.runners import cost, launch, planning

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # the shipped calibrations only
    shipped = cost.cpu_calibration(1)
    assert shipped is not None and "this project's 2-core development machine" in shipped.source
    monkeypatch.setattr(cost, "for_device", lambda device, threads=None, measure=True: shipped)
    plan = launch.plan_sweep("cpu_leaderboard", results=tmp_path / "runs", device="cpu")
    report = planning.dry_run(plan.configs, tmp_path / "runs", "local", device="cpu", jobs=2, pack=plan.pack)
    hours = re.search(r"about ([\d.]+) h here with 2 parallel", "\n".join(report.estimate)).group(1)
    paragraphs = [p for p in (REPO / "README.md").read_text().split("\n\n") if "cpu_leaderboard" in p]
    said = [figure for p in paragraphs for figure in re.findall(r"([\d.]+) (?:h|hours)\b", p)]
    assert said and set(said) == {hours}, (hours, said)


def test_a_local_dry_run_calibrates_once_then_only_counts(cli, monkeypatch, tmp_path):
    """The first dry run on a device measures four small probe steps and caches them; the next one
    (of the paper-size grid, 1,260 runs) trains nothing."""
    from che.runners import cost
    from che.runners.train import Trainer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(cost, "SHIPPED", tmp_path / "none.json")
    first = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--device", "cpu",
                "--results", tmp_path / "runs", "--dry-run")
    assert first.exit_code == 0, first.stderr
    assert "measured on this machine" in first.stdout and cost.cache_file().exists()
    monkeypatch.setattr(Trainer, "step", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    second = cli("sweep", "dape_table2", "--device", "cpu", "--results", tmp_path / "runs", "--dry-run",
                 "--jobs", 1)
    assert second.exit_code == 0, second.stderr
    assert "estimated cost of the 1260 runs left" in second.stdout
    assert cli("sweep", "dape_table2", "--results", tmp_path / "runs", "--dry-run", "--no-estimate").exit_code == 0
