"""`che sweep --executor slurm`: sweeps through submitit's local executor (SLURM's stand-in), and the
sbatch arrays, scancel calls and job states of a real cluster, with fake SLURM commands."""

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, as_in_a_terminal, run_alone
from test_sweep import FAILING_PLUGIN, snapshot, sweep

from che.config import make_config
from che.locks import is_locked
from che.results import checkpoint_path, failure_path, result_path

pytest.importorskip("submitit", reason="submitit is not installed (pip install 'che-bench[slurm]'); CI installs it")

# 2 tasks x 1 PE x 2 seeds: two packs of two runs, so two jobs
GRID = ("--tasks", "parity_check,reverse_string", "--pes", "alibi", "--seeds", 2, "--pack", 2, "--preset", "smoke",
        "--device", "cpu", "--executor", "slurm", "--set", "slurm.local=true", "--quiet")
CONFIGS = [make_config(task, "alibi", "smoke", seed=seed) for task in ("parity_check", "reverse_string")
           for seed in (0, 1)]


def outside_slurm_folder(folder):
    """Files other than results and failure records, but for submitit's own (`.slurm/`) and the
    empty lock files (`.locks/`, kept by design: see che.locks)."""
    files = [p for p in folder.rglob("*") if p.is_file() and ".slurm" not in p.parts]
    return [p for p in files if p.suffix == ".owner" or (".locks" not in p.parts and (
        not p.name.endswith((".json", ".model.safetensors")) or p.name.startswith(".")))]


@pytest.fixture(scope="module")
def slurm_swept(tmp_path_factory):
    results = tmp_path_factory.mktemp("slurm") / "runs"
    return results, sweep(*GRID, "--results", results)


def test_slurm_sweep_writes_each_run_as_che_run_would(slurm_swept, tmp_path):
    import torch

    results, outcome = slurm_swept
    assert outcome.exit_code == 0, outcome.stderr
    assert "done 4, skipped 0, failed 0, interrupted 0" in outcome.stdout
    assert ("slurm (local processes through submitit): up to 2 job(s) in flight, each 0 GPU(s), 1 CPU(s), "
            f"1440 min; logs in {results.absolute() / '.slurm'}") in outcome.stderr
    assert len(list((results / ".slurm").glob("*_submitted.pkl"))) == 2  # one job per pack
    assert not outside_slurm_folder(results)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the jobs (1 CPU each)
    try:
        for config in CONFIGS:
            record = json.loads(result_path(results, config).read_text())
            alone = run_alone(config, tmp_path, device="cpu").record
            assert record["status"] == "finished" and record["config"] == config.to_dict()
            assert record["pack"]["size"] == 2
            assert record["accuracy_by_length"] == pytest.approx(alone["accuracy_by_length"], abs=1e-6)
    finally:
        torch.set_num_threads(threads)


def test_second_slurm_sweep_skips_everything(slurm_swept):
    results, _ = slurm_swept
    before = snapshot(results)
    again = sweep(*GRID, "--results", results)
    assert again.exit_code == 0, again.stderr
    assert "done 0, skipped 4, failed 0, interrupted 0" in again.stdout
    assert "slurm (" not in again.stderr  # no job was submitted
    assert snapshot(results) == before


def test_failed_jobs_and_runs_are_recorded(tmp_path, monkeypatch):
    plugin = tmp_path / "failing_pe.py"
    plugin.write_text(FAILING_PLUGIN)
    for name in ("BOOM_FILE", "CRASH_FILE"):
        (tmp_path / name).touch()
        monkeypatch.setenv(name, str(tmp_path / name))  # the jobs inherit the environment
    results = tmp_path / "runs"
    result = sweep("--tasks", "parity_check", "--pes", "boom,crash", "--preset", "smoke", "--device", "cpu",
                   "--executor", "slurm", "--set", "slurm.local=true", "--plugin", plugin, "--results", results, "--quiet")
    assert result.exit_code == 1, result.stderr
    assert "done 0, skipped 0, failed 2, interrupted 0" in result.stdout
    boom = json.loads(failure_path(results, make_config("parity_check", "boom", "smoke")).read_text())
    assert boom["error_type"] == "RuntimeError" and boom["error"] == "boom: a deliberate failure"
    assert "bias_from_positions" in boom["traceback"] and boom["attempts"] == 1
    crash = json.loads(failure_path(results, make_config("parity_check", "crash", "smoke")).read_text())
    assert crash["error_type"] == "SlurmJobFailed"  # the job's process died: no outcome at all
    message, log = crash["error"].split("; its log: ")
    assert message.endswith("ended without a result (its process exited)")
    assert Path(log).parent == results.absolute() / ".slurm" and Path(log).is_file()
    assert not outside_slurm_folder(results)


def test_ctrl_c_stops_the_jobs_with_a_checkpoint_and_the_next_sweep_resumes(tmp_path):
    results = tmp_path / "runs"
    args = ("--tasks", "parity_check", "--pes", "alibi", "--preset", "smoke", "--steps", 300, "--device", "cpu",
            "--executor", "slurm", "--set", "slurm.local=true", "--quiet", "--results", results)
    config = make_config("parity_check", "alibi", "smoke", steps=300)
    # a new session, as a terminal's: Ctrl-C signals every process of its group, local jobs included
    process = subprocess.Popen([sys.executable, "-m", "che", "sweep", *map(str, args)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=REPO, start_new_session=True,
                               preexec_fn=as_in_a_terminal)
    deadline = time.monotonic() + 120
    while not checkpoint_path(results, config).exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGINT)
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the sweep finished before the signal arrived")  # a very fast machine
    assert process.returncode == 130, err
    assert "done 0, skipped 0, failed 0, interrupted 1" in out and "(checkpoint saved)" in err
    assert not result_path(results, config).exists() and is_locked(results, config) is None

    again = sweep(*args)
    assert again.exit_code == 0 and "done 1, skipped 0, failed 0, interrupted 0" in again.stdout
    assert json.loads(result_path(results, config).read_text())["resumed_from_step"] > 0


def test_missing_submitit_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "submitit", None)  # `import submitit` now fails as if not installed
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke",
                 "--results", tmp_path / "runs", "--executor", "slurm", "--set", "slurm.local=true", "--device", "cpu")
    assert result.exit_code == 2
    assert result.stderr == "error: the slurm executor needs submitit: pip install 'che-bench[slurm]'\n"
    assert not (tmp_path / "runs").exists()


# SLURM's commands as the executor uses them: sbatch submits (and says the job id), sacct reports
# states (from the file `states`), scancel stops (logged); srun need only exist.
FAKE_SLURM = {
    "sbatch": 'cp "$1" "$FAKE_SLURM/script.sh"\necho "Submitted batch job 4242"\n',
    "sacct": 'echo "JobID|State|NodeList"\ncat "$FAKE_SLURM/states"\n',
    "scancel": 'echo "$@" >> "$FAKE_SLURM/scancel.log"\n',
    "srun": "",
}


@pytest.fixture
def fake_slurm(tmp_path, monkeypatch):
    commands = tmp_path / "bin"
    commands.mkdir()
    for name, body in FAKE_SLURM.items():
        (commands / name).write_text("#!/bin/sh\n" + body)
        (commands / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{commands}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_SLURM", str(tmp_path))
    (tmp_path / "states").write_text("")
    (tmp_path / "scancel.log").write_text("")
    return tmp_path


def test_a_dispatch_round_is_one_sbatch_array_and_job_states_become_outcomes(fake_slurm, monkeypatch):
    import submitit
    from che.runners import executors
    from che.runners.executors import slurm

    monkeypatch.setattr(slurm, "SLURM_CHECK_S", 0.0)  # look at the jobs at every poll
    options = slurm.slurm_options("auto", partition="gpu", time_min=90, mem_gb=32, array_parallelism=2)
    results = fake_slurm / "runs"
    executor = executors.make_executor("slurm", results, [], "auto", None, 1, slurm=options)(3)
    packs = [[make_config("parity_check", "alibi", "smoke", seed=seed)] for seed in range(3)]
    keys = [executor.submit(pack) for pack in packs]
    assert executor.slots == 3 and executor.poll(0) == []
    script = (fake_slurm / "script.sh").read_text()  # one sbatch: the three jobs as one array
    for flag in ("array=0-2%2", "partition=gpu", "gpus-per-node=1", "cpus-per-task=4", "time=90", "mem=32GB",
                 "job-name=che-sweep", "signal=USR2@90"):
        assert f"#SBATCH --{flag}\n" in script, flag

    # job 0 was killed at its time limit; job 1 stopped (preempted, say) after saving a checkpoint
    (fake_slurm / "states").write_text("4242_0|TIMEOUT|n1\n4242_1|COMPLETED|n2\n4242_2|RUNNING|n3\n")
    stopped = {"runs": [{"status": "interrupted", "step": 7, "run_id": packs[1][0].run_id}]}
    with open(results / ".slurm" / "4242_1_0_result.pkl", "wb") as f:
        pickle.dump(("success", stopped), f)
    submitit.SlurmJob.watcher.update()  # sacct now, not when submitit would next look
    ended = dict(executor.poll(0))
    assert ended[keys[0]]["status"] == "failed" and ended[keys[0]]["error_type"] == "SlurmJobFailed"
    assert ended[keys[0]]["error"].startswith("job 4242_0 ended without a result (SLURM state TIMEOUT); its log: ")
    run = ended[keys[1]]["runs"][0]
    assert run["status"] == "failed" and run["error_type"] == "SlurmJobStopped"
    assert run["error"].startswith("SLURM stopped job 4242_1 at step 7 (its time limit of 90 min")
    assert keys[2] not in ended

    executor.interrupt()  # the running job is told to stop (SIGTERM: save and stop), a queued one cancelled
    assert (fake_slurm / "scancel.log").read_text().splitlines() == [
        "--state=PENDING 4242_2", "--state=RUNNING --signal=TERM 4242_2"]
    (fake_slurm / "states").write_text("4242_2|CANCELLED by 1000|n3\n")
    assert executor.poll(0) == [(keys[2], {"status": "interrupted"})]
    executor.close()
    assert len((fake_slurm / "scancel.log").read_text().splitlines()) == 2  # nothing was left to cancel


@pytest.mark.parametrize("args, message", [
    (("--set", "slurm.gpus_per_job=-1"), "slurm.gpus_per_job must be between 0 and 64, got -1"),
    (("--set", "slurm.time=0"), "slurm.time must be between 1 and 527040, got 0"),
    (("--set", "slurm.array_parallelism=0"), "slurm.array_parallelism must be between 1 and 100000, got 0"),
    (("--device", "cpu", "--set", "slurm.gpus_per_job=1"), "--device cpu: the jobs would hold 1 GPU(s) they do not use"),
    (("--device", "cuda", "--set", "slurm.gpus_per_job=0"), "--device cuda needs GPUs"),
    (("--device", "cpu"), "the slurm executor submits jobs with sbatch, which this machine does not have"),
])
def test_slurm_options_are_checked(cli, tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch, whatever this machine has
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--executor", "slurm",
                 *args, "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()


def test_slurm_options_need_the_slurm_executor(cli, tmp_path):
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--set", "slurm.partition=gpu",
                 "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr == "error: slurm settings (partition) are for the slurm executor (add --executor slurm)\n"


def test_dry_run_needs_no_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    result = sweep("--tasks", "parity_check", "--pes", "alibi", "--seeds", 2, "--pack", 2, "--preset", "smoke",
                   "--steps", 20, "--device", "cpu", "--executor", "slurm", "--set", "slurm.time=30",
                   "--results", tmp_path / "runs", "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "2 pending" in result.stdout and "estimated cost of the 2 runs left:" in result.stdout
    assert "on SLURM: 1 job(s) of 2 run(s), each asking 0 GPU(s), 1 CPU(s), 30 min; the longest about " in result.stdout
    assert " if 1 run at once" in result.stdout
    assert not (tmp_path / "runs").exists()


def test_a_sweep_files_slurm_table_sets_the_jobs(tmp_path, monkeypatch):
    """The README's `[slurm]` table of a sweep file: read as `--set slurm.KEY=VALUE` would be (it was
    refused as an unknown sweep-file key)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    spec = tmp_path / "grid.toml"
    spec.write_text('preset = "smoke"\ntasks = ["parity_check"]\npes = ["alibi"]\nseeds = 2\n\n'
                    '[slurm]\ntime = 45\npartition = "short"\n')
    result = sweep(spec, "--pack", 2, "--device", "cpu", "--executor", "slurm", "--results", tmp_path / "runs",
                   "--dry-run")
    assert result.exit_code == 0, result.stderr
    assert "1 job(s) of 2 run(s), each asking 0 GPU(s), 1 CPU(s), 45 min, partition short" in result.stdout
