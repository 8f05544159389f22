"""Dry runs (`che sweep --dry-run`): what SLURM or Ray would be given and what it would cost, planned
in seconds from a machine without a GPU, training nothing."""

from __future__ import annotations

import pytest


def test_a_slurm_dry_run_of_the_paper_grid_trains_nothing(cli, monkeypatch):
    from che.runners.train import Trainer

    def no_training(*args, **kwargs):
        raise AssertionError("a dry run trained a model")

    monkeypatch.setattr(Trainer, "step", no_training)
    result = cli("sweep", "dape_table2", "--executor", "slurm", "--set", "slurm.partition=gpu", "--set", "slurm.time=720",
                 "--pack", 9, "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "1260 pending" in result.stdout and "nodes like cuda: NVIDIA H200" in result.stdout
    assert "on SLURM: 140 job(s)" in result.stdout


def test_a_slurm_dry_run_with_pack_auto_plans_one_run_per_gpu_job(cli):
    """Nothing is measured where SLURM jobs are submitted, so `--pack auto` gives one run per GPU job:
    the note, the packs the sweep would submit and the estimate's jobs all say so."""
    from che.runners import launch

    result = cli("sweep", "dape_table2", "--executor", "slurm", "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "each trains one run" in result.stdout and "packs of up to" not in result.stdout
    assert "on SLURM: 1260 job(s) of 1 run(s), each asking 1 GPU(s)" in result.stdout
    assert launch.plan_sweep("dape_table2", executor="slurm").pack == 1  # what the sweep submits


@pytest.mark.parametrize("device", ["auto", "cuda"])
def test_a_ray_dry_run_from_a_machine_without_a_gpu_estimates_the_clusters_gpus(cli, monkeypatch, device):
    """As for SLURM, the GPUs of a cluster are estimated from a shipped calibration; `--device cuda`
    is not refused for want of a GPU on the machine that submits the runs."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    result = cli("sweep", "dape_table2", "--executor", "ray", "--ray-address", "HOST:6379", "--device", device,
                 "--results", "/nonexistent/che-dry-run", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "estimated cost of the 1260 runs left: " in result.stdout
    assert "of device time on GPUs like cuda: NVIDIA H200" in result.stdout
    if device == "auto":  # the cluster's devices are unknown here: both estimates, each with its condition
        assert "if the Ray cluster has GPUs" in result.stdout and "on CPUs like cpu" in result.stdout
    else:
        assert "each trains one run" in result.stdout and "on CPUs" not in result.stdout


def test_the_readmes_slurm_and_ray_dry_runs_agree_with_themselves(cli, monkeypatch):
    """The README's SLURM and Ray examples, as written, with --dry-run: the packs the note announces
    are the jobs the estimate plans, and a cluster's GPUs are estimated from a machine without one."""
    import re

    import torch
    from conftest import REPO

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    sweeps = REPO.joinpath("README.md").read_text().split("## Sweeps", 1)[1].split("\n## ", 1)[0]
    commands = dict(re.findall(r"`(slurm|ray)`<br>`che (sweep [^`]+)`", sweeps))
    for executor, command in commands.items():
        result = cli(*command.split(), "--results", "/nonexistent/che-dry-run", "--dry-run")
        assert result.exit_code == 0, (command, result.stderr)
        assert "GPUs like cuda: NVIDIA H200" in result.stdout or "nodes like cuda: NVIDIA H200" in result.stdout
        announced = re.search(r"here (\d+) pack\(s\) of (\d+) run\(s\)", result.stdout)
        if executor == "slurm":
            jobs = re.search(r"on SLURM: (\d+) job\(s\) of (\d+) run\(s\)", result.stdout)
            assert announced and jobs and announced.groups() == jobs.groups(), result.stdout
            assert int(jobs[1]) * int(jobs[2]) == 1260
    assert set(commands) == {"slurm", "ray"}
