"""`che sweep`: grids run locally and on Ray, skipping, failure records, locks, Ctrl-C, errors."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, as_in_a_terminal, run_alone, run_che
from typer.testing import CliRunner

from che.config import make_config
from che.locks import is_locked, lock_path
from che.results import checkpoint_path, failure_path, result_path
from che.threads import usable_cores

SMOKE_GRID = ("--tasks", "parity_check,reverse_string", "--pes", "none,alibi", "--preset", "smoke", "--device", "cpu")
SMOKE_CONFIGS = [("parity_check", "none"), ("parity_check", "alibi"), ("reverse_string", "none"),
                 ("reverse_string", "alibi")]

# A PE plugin for failures: `boom` raises in its forward pass while the file named by BOOM_FILE
# exists; `crash` kills its worker process outright while the file named by CRASH_FILE exists.
FAILING_PLUGIN = '''
import os
import torch
from che import register_pe
from che.models.positional import BiasPE


class _Zero(BiasPE):
    family = "additive bias"
    citation = "che tests"

    def bias_from_positions(self, positions):
        t = positions.shape[-1]
        return torch.zeros(self.config.n_heads, t, t, device=positions.device)


@register_pe
class Boom(_Zero):
    name = "boom"

    def bias_from_positions(self, positions):
        if os.path.exists(os.environ.get("BOOM_FILE", "")):
            raise RuntimeError("boom: a deliberate failure")
        return super().bias_from_positions(positions)


@register_pe
class Crash(_Zero):
    name = "crash"

    def bias_from_positions(self, positions):
        if os.path.exists(os.environ.get("CRASH_FILE", "")):
            os._exit(3)
        return super().bias_from_positions(positions)
'''


def sweep(*args):
    return CliRunner().invoke(_app(), ["sweep", *map(str, args)])


def _app():
    from che.cli import app

    return app


def snapshot(folder):
    return {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in sorted(folder.rglob("*")) if p.is_file()}


def leftovers(folder):
    """Files other than finished results and failure records: temporaries, checkpoints, lock owner
    notes (the empty lock files under .locks/ stay by design: see che.locks)."""
    files = [p for p in folder.rglob("*") if p.is_file()]
    return [p for p in files if p.suffix == ".owner" or (".locks" not in p.parts and (
        not p.name.endswith((".json", ".model.safetensors")) or p.name.startswith(".")))]


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A local smoke sweep (2 tasks x 2 PEs, 2 workers) and its folder."""
    results = tmp_path_factory.mktemp("swept") / "runs"
    return results, sweep(*SMOKE_GRID, "--results", results, "--jobs", 2, "--quiet")


def test_local_sweep_writes_every_result_exactly_as_che_run(swept, tmp_path):
    import torch

    results, outcome = swept
    assert outcome.exit_code == 0, outcome.stderr
    assert "done 4, skipped 0, failed 0, interrupted 0" in outcome.stdout
    workers_threads = max(1, usable_cores() // 2)
    assert f"local: 2 parallel run(s) x {workers_threads} torch thread(s) on cpu" in outcome.stderr
    assert not leftovers(results)
    threads = torch.get_num_threads()
    torch.set_num_threads(workers_threads)  # as in the sweep's workers: sums in the same order
    try:
        for task, pe in SMOKE_CONFIGS:
            config = make_config(task, pe, "smoke")
            record = json.loads(result_path(results, config).read_text())
            direct = run_alone(config, tmp_path, device="cpu").record
            assert record["status"] == "finished" and record["config"] == config.to_dict()
            for key in ("accuracy_by_length", "train_curve", "final_loss", "ood_accuracy", "parameters"):
                assert record[key] == direct[key], (task, pe, key)
    finally:
        torch.set_num_threads(threads)


def test_rerun_skips_everything_and_rewrites_nothing(swept):
    results, _ = swept
    before = snapshot(results)
    again = sweep(*SMOKE_GRID, "--results", results, "--jobs", 2, "--quiet")
    assert again.exit_code == 0, again.stderr
    assert "done 0, skipped 4, failed 0, interrupted 0" in again.stdout
    assert "local:" not in again.stderr  # no worker was even started
    assert snapshot(results) == before


def test_dry_run_lists_runs_and_a_cost_and_runs_nothing(swept, tmp_path):
    results = tmp_path / "runs"
    result = sweep(*SMOKE_GRID, "--results", results, "--dry-run")
    assert result.exit_code == 0, result.stderr
    for task, pe in SMOKE_CONFIGS:
        run_id = make_config(task, pe, "smoke").run_id
        assert any(task in line and f" {pe} " in line and run_id in line and "pending" in line
                   for line in result.stdout.splitlines()), (task, pe)
    assert "4 pending" in result.stdout
    assert "estimated cost of the 4 runs left:" in result.stdout and "of device time on cpu" in result.stdout
    assert "about " in result.stdout
    assert not results.exists()

    done = sweep(*SMOKE_GRID, "--results", swept[0], "--dry-run")
    assert done.exit_code == 0 and "4 finished" in done.stdout and "nothing to run" in done.stdout


def test_failing_runs_are_recorded_the_rest_finish_and_the_next_sweep_retries(tmp_path, monkeypatch):
    plugin = tmp_path / "failing_pe.py"
    plugin.write_text(FAILING_PLUGIN)
    boom, crash = tmp_path / "boom-on", tmp_path / "crash-on"
    boom.touch()
    crash.touch()
    monkeypatch.setenv("BOOM_FILE", str(boom))  # the workers inherit the environment
    monkeypatch.setenv("CRASH_FILE", str(crash))
    results = tmp_path / "runs"
    args = ("--tasks", "parity_check", "--pes", "boom,none,crash,alibi", "--preset", "smoke", "--results", results,
            "--plugin", plugin, "--jobs", 2, "--quiet", "--device", "cpu")
    first = sweep(*args)
    assert first.exit_code == 1, first.stderr
    assert "done 2, skipped 0, failed 2, interrupted 0" in first.stdout
    boom_config = make_config("parity_check", "boom", "smoke")
    crash_config = make_config("parity_check", "crash", "smoke")
    for config in (boom_config, crash_config):
        assert str(failure_path(results, config)) in first.stdout
        assert not result_path(results, config).exists()
    for pe in ("none", "alibi"):
        assert result_path(results, make_config("parity_check", pe, "smoke")).exists()
    record = json.loads(failure_path(results, boom_config).read_text())
    assert record["error_type"] == "RuntimeError" and record["error"] == "boom: a deliberate failure"
    assert "Traceback" in record["traceback"] and "bias_from_positions" in record["traceback"]
    assert record["config"] == boom_config.to_dict() and record["host"] == socket.gethostname()
    assert record["attempts"] == 1 and record["failed_at"]
    crashed = json.loads(failure_path(results, crash_config).read_text())
    assert crashed["error_type"] == "WorkerDied" and "exit code 3" in crashed["error"]
    assert not [p for p in leftovers(results) if p.suffix != ".ckpt"]

    boom.unlink()
    retried = sweep(*args)
    assert retried.exit_code == 1 and "done 1, skipped 2, failed 1, interrupted 0" in retried.stdout
    assert result_path(results, boom_config).exists() and not failure_path(results, boom_config).exists()
    assert json.loads(failure_path(results, crash_config).read_text())["attempts"] == 2


def test_two_sweeps_over_one_folder_at_once_share_the_work(tmp_path):
    results = tmp_path / "runs"
    args = [sys.executable, "-m", "che", "sweep", "--tasks", "parity_check,reverse_string,even_pairs",
            "--pes", "none,alibi", "--preset", "smoke", "--results", str(results), "--jobs", "1", "--quiet",
            "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k != "CHE_PLUGINS"}
    sweeps = [subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO, env=env)
              for _ in range(2)]
    outputs = [p.communicate(timeout=300) for p in sweeps]
    for process, (_out, err) in zip(sweeps, outputs):
        assert process.returncode == 0, err
    files = sorted(p for p in results.rglob("*") if ".locks" not in p.parts and not p.name.endswith(".safetensors"))
    finished = [p for p in files if p.is_file()]
    assert len(finished) == 6 and all(p.suffix == ".json" and not p.name.startswith(".") for p in finished)
    for path in finished:
        assert json.loads(path.read_text())["status"] == "finished"
    done = [int(out.split("done ")[1].split(",")[0]) for out, _ in outputs]
    assert sum(done) == 6, outputs  # every run ran exactly once


def test_runs_locked_by_a_live_process_are_left_to_it(tmp_path):
    """A run whose lock another live process holds is "running elsewhere" and left alone; lock files
    left by processes that are gone (any content, any PID) do not hold anything (che.locks)."""
    results = tmp_path / "runs"
    held = make_config("parity_check", "none", "smoke")
    left_behind = make_config("parity_check", "alibi", "smoke")
    lock_path(results, left_behind).parent.mkdir(parents=True, exist_ok=True)
    lock_path(results, left_behind).write_text(json.dumps({"host": socket.gethostname(), "pid": 1}))
    holder = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom che.config import make_config\nfrom che.locks import claim\n"
        f"lock, _ = claim({str(results)!r}, make_config('parity_check', 'none', 'smoke'))\n"
        "print('locked', flush=True)\ntime.sleep(120)\n")], stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        result = sweep("--tasks", "parity_check", "--pes", "none,alibi", "--preset", "smoke", "--results", results,
                       "--jobs", 1, "--quiet", "--device", "cpu")
    finally:
        holder.kill()
        holder.wait()
    assert result.exit_code == 0, result.stderr
    assert "done 1, skipped 0, failed 0, interrupted 0, running elsewhere 1" in result.stdout
    assert f"running elsewhere (pid {holder.pid}" in result.stderr
    assert result_path(results, left_behind).exists() and not result_path(results, held).exists()


def test_ray_sweep_on_a_local_instance(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install 'che-bench[ray]'); CI installs it")

    results = tmp_path / "runs"
    result = run_che("sweep", "--tasks", "parity_check", "--pes", "none,alibi", "--preset", "smoke",
                     "--results", results, "--executor", "ray", "--quiet", "--device", "cpu", timeout=300)
    assert result.returncode == 0, result.stderr
    workers_threads = max(1, usable_cores() // 2)
    assert f"ray (local instance): 2 parallel run(s) x {workers_threads} torch thread(s) on cpu" in result.stderr
    assert "done 2, skipped 0, failed 0, interrupted 0" in result.stdout
    assert not leftovers(results)
    import torch

    config = make_config("parity_check", "alibi", "smoke")
    threads = torch.get_num_threads()
    torch.set_num_threads(workers_threads)
    try:
        direct = run_alone(config, tmp_path / "direct", device="cpu").record
    finally:
        torch.set_num_threads(threads)
    record = json.loads(result_path(results, config).read_text())
    assert record["accuracy_by_length"] == direct["accuracy_by_length"]
    assert record["train_curve"] == direct["train_curve"]


def test_missing_ray_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` now fails as if not installed
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke",
                 "--results", tmp_path / "runs", "--executor", "ray")
    assert result.exit_code == 2
    assert result.stderr == "error: the ray executor needs Ray: pip install 'che-bench[ray]'\n"
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("args, message", [
    (("--tasks", "parity_chek", "--pes", "none"), "--tasks: unknown task 'parity_chek'; did you mean 'parity_check'?"),
    (("--tasks", "parity_check", "--pes", "alibbi"), "--pes: unknown positional encoding 'alibbi'"),
    (("--tasks", "parity_check"), "no positional encoding"),
    (("--tasks", "parity_check", "--pes", "none", "--seeds", "x"), "--seeds must be a count N"),
    (("--tasks", "parity_check", "--pes", "none", "--lrs", "3"), "a learning rate must be in (0, 1)"),
    (("--tasks", "parity_check", "--pes", "none", "--executor", "pbs"), "'pbs' is not one of 'local', 'ray', 'slurm'"),
    (("--tasks", "parity_check", "--pes", "none", "--steps", "0"), "steps must be at least 1"),
    (("cpu_leaderbord",), "unknown sweep 'cpu_leaderbord'; did you mean 'cpu_leaderboard'?"),
    (("no/such/sweep.toml",), "sweep file 'no/such/sweep.toml' does not exist"),
])
def test_bad_options_are_a_one_line_error(cli, tmp_path, args, message):
    result = cli("sweep", *args, "--results", tmp_path / "runs", "--preset", "smoke")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("signum, exit_code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["ctrl-c", "sigterm"])
def test_a_signal_stops_cleanly_and_the_next_sweep_completes(tmp_path, signum, exit_code):
    """Ctrl-C in a terminal, or SIGTERM from a scheduler or `kill`: the whole process group."""
    results = tmp_path / "runs"
    args = [sys.executable, "-m", "che", "sweep", "--tasks", "parity_check", "--pes", "alibi", "--seeds", "2",
            "--preset", "smoke", "--steps", "300", "--results", str(results), "--jobs", "1", "--quiet",
            "--device", "cpu", "--pack", "off"]  # one run after the other: stop between them
    first, second = (make_config("parity_check", "alibi", "smoke", steps=300, seed=s) for s in (0, 1))
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               start_new_session=True, preexec_fn=as_in_a_terminal)
    # wait until the first run has finished and the second is training (it has a checkpoint)
    deadline = time.monotonic() + 240
    while not (result_path(results, first).exists() and checkpoint_path(results, second).exists()):
        if process.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if process.poll() is None:
        os.killpg(process.pid, signum)
    out, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the sweep finished before the signal arrived")  # a very fast machine
    assert process.returncode == exit_code, err
    assert "done 1, skipped 0, failed 0, interrupted 1" in out
    assert "Traceback" not in err and "stopping: no new runs" in err
    assert result_path(results, first).exists() and checkpoint_path(results, second).exists()
    assert not result_path(results, second).exists() and is_locked(results, second) is None
    if signum == signal.SIGTERM:
        return  # resuming is the same after either signal; tested once

    again = subprocess.run(args, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "done 1, skipped 1, failed 0, interrupted 0" in again.stdout
    record = json.loads(result_path(results, second).read_text())
    assert record["resumed_from_step"] > 0 and not checkpoint_path(results, second).exists()


def test_local_plan_packs_runs_per_gpu_and_pins_each_worker(monkeypatch):
    import torch
    import che.threads
    from che.runners import run
    from che.runners.executors import plan as executors
    from che.runners.executors.local import LocalExecutor

    monkeypatch.setattr(run, "pick_device", lambda name: torch.device("cuda"))
    monkeypatch.setattr(executors, "visible_gpus", lambda: ["0", "1"])
    monkeypatch.setattr(executors, "usable_cores", lambda: 16)
    monkeypatch.setattr(che.threads, "_chosen", None)  # no `che --threads`
    plan = executors.local_plan("auto", None, 3, pending=100)
    assert (plan.device, plan.jobs, plan.threads) == ("cuda", 6, 2)
    assert plan.gpus == ["0", "1", "0", "1", "0", "1"]
    pool = LocalExecutor(plan, "runs", [])  # starts no process until a run is submitted
    assert [pool._env(slot)["CUDA_VISIBLE_DEVICES"] for slot in range(6)] == plan.gpus
    assert pool._env(0)["OMP_NUM_THREADS"] == "2"
    assert executors.local_plan("auto", None, 3, pending=4).jobs == 4  # never more workers than runs
    assert executors.local_plan("auto", 1, 3, pending=4).threads == 16

    monkeypatch.setattr(run, "pick_device", lambda name: torch.device("cpu"))
    plan = executors.local_plan("cpu", None, 3, pending=100)
    assert (plan.device, plan.jobs, plan.threads, plan.gpus) == ("cpu", 16, 1, [])
    assert executors.local_plan("cpu", 4, 1, pending=100).threads == 4


class FakeRay:
    """What RayExecutor._plan asks of Ray, for a cluster of two nodes."""

    def __init__(self, cpus, gpus):
        self.resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {})}

    def cluster_resources(self):
        return self.resources

    def nodes(self):
        half = {k: v / 2 for k, v in self.resources.items()}
        return [{"Alive": True, "Resources": half}, {"Alive": True, "Resources": half}]


def test_ray_plan_declares_fractional_gpus_and_fits_a_node():
    from che.runners.executors.ray import RayExecutor

    from che.errors import CheError

    executor = RayExecutor.__new__(RayExecutor)  # only the planning, without a cluster
    executor.ray = FakeRay(cpus=32, gpus=4)
    plan = executor._plan("auto", None, 4, pending=100)
    assert (plan.device, plan.jobs, plan.threads, plan.gpu_share) == ("cuda", 16, 1, 0.25)
    assert executor._plan("cpu", None, 4, pending=100).jobs == 32
    assert executor._plan("cpu", 2, 1, pending=100).threads == 16  # 32 CPUs / 2 runs, one node each
    executor.ray = FakeRay(cpus=32, gpus=0)
    assert executor._plan("auto", None, 1, pending=5).device == "cpu"
    with pytest.raises(CheError, match="the Ray cluster has no GPUs"):
        executor._plan("cuda", None, 1, pending=5)
    executor.ray = FakeRay(cpus=8, gpus=0)
    assert executor._plan("cpu", 1, 1, pending=5).threads == 4  # capped at the largest node


def test_packed_sweep_writes_each_run_as_a_solo_run_would(tmp_path):
    """--pack 3: the three seeds of a cell train as one model; each result equals the run alone."""

    results = tmp_path / "runs"
    outcome = sweep("--tasks", "reverse_string", "--pes", "rand-alibi", "--seeds", 3, "--preset", "smoke",
                    "--pack", 3, "--jobs", 1, "--results", results, "--quiet")
    assert outcome.exit_code == 0, outcome.stderr
    assert "packs of up to 3" in outcome.stderr and "done 3, skipped 0, failed 0" in outcome.stdout
    assert not leftovers(results)
    for seed in range(3):
        config = make_config("reverse_string", "rand-alibi", "smoke", seed=seed)
        record = json.loads(result_path(results, config).read_text())
        assert record["pack"]["size"] == 3
        alone = run_alone(config, tmp_path / "alone", device="cpu").record
        assert record["accuracy_by_length"] == pytest.approx(alone["accuracy_by_length"], abs=1e-6)


def test_pack_option_is_checked(cli, tmp_path):
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--pack", "many", "--results", tmp_path)
    assert result.exit_code == 2 and "--pack must be auto, off or a number" in result.stderr


def test_force_runs_finished_runs_again(tmp_path):
    results = tmp_path / "runs"
    args = ("--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--results", results, "--jobs", 1,
            "--quiet", "--device", "cpu")
    assert sweep(*args).exit_code == 0
    path = result_path(results, make_config("parity_check", "none", "smoke"))
    first = json.loads(path.read_text())["finished_at"], path.stat().st_mtime_ns
    again = sweep(*args)
    assert "skipped 1" in again.stdout and path.stat().st_mtime_ns == first[1]
    forced = sweep(*args, "--force")
    assert forced.exit_code == 0 and "done 1, skipped 0" in forced.stdout
    assert path.stat().st_mtime_ns != first[1]


def test_an_unreachable_ray_address_fails_in_seconds(cli, tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed")
    started = time.monotonic()
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--results", tmp_path,
                 "--executor", "ray", "--ray-address", "127.0.0.1:1")
    assert result.exit_code == 2 and "cannot reach Ray at 127.0.0.1:1" in result.stderr
    assert time.monotonic() - started < 30


def test_a_sweep_refuses_an_unwritable_results_folder_before_running(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--results",
                 blocker / "runs", "--quiet")
    assert result.exit_code == 2 and "cannot write to the results folder" in result.stderr
    assert "started" not in result.output
