"""`che run` and execute_pack end to end: result files, skipping, checkpoints and exact resume, Ctrl-C and
SIGTERM, a full disk (nothing lost), failed runs, learning."""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from che.runners import run as run_module
from che.runners import train as train_module
from che.runners.reporting import Reporter
from che.runners.run import execute_pack, find_checkpoint, pack_checkpoint_path
from conftest import REPO, pack, run_alone, run_che

from che.config import make_config
from che.errors import CheError
from che.results import checkpoint_path, result_path


def test_smoke_run_writes_a_complete_result_the_leaderboard_reads(cli, tmp_path):
    result = cli("run", "--task", "reverse_string", "--pe", "alibi", "--preset", "smoke", "--results", tmp_path)
    assert result.exit_code == 0, result.stderr
    files = list(tmp_path.rglob("*.json"))
    assert len(files) == 1 and files[0].parent == tmp_path / "reverse_string" / "alibi"
    record = json.loads(files[0].read_text())
    config = record["config"]
    assert record["status"] == "finished" and record["task"] == "reverse_string" and record["pe"] == "alibi"
    assert config["steps"] == 10 and config["train_length"] == 5 and config["max_test_length"] == 8
    assert len(record["accuracy_by_length"]) == 8
    assert all(0.0 <= a <= 1.0 for a in record["accuracy_by_length"])
    assert record["ood_accuracy"] == pytest.approx(sum(record["accuracy_by_length"][5:]) / 3)
    assert record["ood_accuracy_reference_script"] == pytest.approx(sum(record["accuracy_by_length"][6:]) / 2)
    assert record["in_distribution_accuracy"] == pytest.approx(sum(record["accuracy_by_length"][:5]) / 5)
    for key in ("che", "torch", "python"):
        assert record["versions"][key]
    assert "revision" in record["git"] and record["device"].startswith("cpu")
    assert record["wall_time_s"] > 0 and record["steps_per_s"] > 0 and record["final_loss"] > 0
    assert record["parameters"] == 248_962
    assert "unseen lengths 6..8" in result.stdout and "estimated cost" in result.stderr  # the outcome; the log

    board = cli("leaderboard", "--results", tmp_path, "--format", "json")
    assert board.exit_code == 0, board.stderr
    cells = json.loads(board.stdout)["cells"]
    assert cells == [pytest.approx({**cells[0], "ood_accuracy": 100 * record["ood_accuracy"]})]
    assert cells[0]["task"] == "reverse_string" and cells[0]["pe"] == "alibi" and cells[0]["runs"] == 1


def test_finished_run_is_skipped_unless_forced(cli, tmp_path):
    args = ("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path, "--quiet")
    assert cli(*args).exit_code == 0
    path = next(tmp_path.rglob("*.json"))
    first = path.read_text()
    again = cli(*args)
    assert again.exit_code == 0 and "already finished" in again.stderr
    assert path.read_text() == first
    forced = cli(*args, "--force")
    assert forced.exit_code == 0 and "already finished" not in forced.stderr
    assert json.loads(path.read_text())["finished_at"] >= json.loads(first)["finished_at"]


def test_run_id_changes_with_the_config_but_not_with_how_it_runs():
    base = make_config("parity_check", "alibi", "smoke")
    assert make_config("parity_check", "alibi", "smoke", seed=1).run_id != base.run_id
    assert make_config("parity_check", "alibi", "smoke", steps=11).run_id != base.run_id
    assert make_config("parity_check", "alibi", "smoke", dape_impl="literal").run_id == base.run_id
    assert make_config("parity_check", "alibi", "smoke", checkpoint_every=3).run_id == base.run_id


class Crash(Reporter):
    """Simulates a run killed after `at` steps."""

    def __init__(self, at):
        self.at = at

    def step(self, state, loss, accuracy):
        if state.step == self.at:
            raise RuntimeError("killed")


@pytest.mark.parametrize("pe", ["alibi", "rand-rope", "dape-kerple"])
def test_killed_run_resumes_to_the_same_result(tmp_path, pe):
    config = make_config("reverse_string", pe, "smoke", steps=12, checkpoint_every=4, dropout=0.1)
    straight = run_alone(config, tmp_path / "a").record
    with pytest.raises(RuntimeError, match="killed"):
        run_alone(config, tmp_path / "b", reporter=Crash(at=10))
    assert checkpoint_path(tmp_path / "b", config).exists()  # from step 8
    assert not result_path(tmp_path / "b", config).exists()
    with pytest.raises(CheError, match="pass --resume"):
        run_alone(config, tmp_path / "b")
    resumed = run_alone(config, tmp_path / "b", resume=True).record
    assert resumed["resumed_from_step"] == 8
    assert not checkpoint_path(tmp_path / "b", config).exists()
    for key in ("accuracy_by_length", "train_curve", "final_loss", "ood_accuracy"):
        assert resumed[key] == straight[key], key


def test_ctrl_c_saves_a_checkpoint_and_resume_finishes_identically(tmp_path):
    common = ["--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--steps", "3000",
              "--set", "checkpoint_every=100000", "--quiet", "--set", "max_test_length=6"]
    reference = subprocess.run([sys.executable, "-m", "che", "run", *common, "--results", tmp_path / "a",
                                "--steps", "60"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert reference.returncode == 0, reference.stderr

    args = [sys.executable, "-m", "che", "run", *common, "--results", str(tmp_path / "b"), "--steps", "60"]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in process.stderr:  # --quiet logs go to stderr; wait until training is under way
        if line.startswith("step "):
            break
    time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the run finished before the signal arrived")  # a very fast machine
    assert process.returncode == 130, err
    assert "interrupted at step" in err and "--resume" in err
    assert "Traceback" not in err
    assert list((tmp_path / "b").rglob("*.ckpt")) and not list((tmp_path / "b").rglob("*.json"))

    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    a = json.loads(next((tmp_path / "a").rglob("*.json")).read_text())
    b = json.loads(next((tmp_path / "b").rglob("*.json")).read_text())
    assert b["resumed_from_step"] > 0
    assert a["accuracy_by_length"] == b["accuracy_by_length"] and a["train_curve"] == b["train_curve"]


@pytest.mark.slow
def test_training_learns_an_easy_task_well_above_chance(tmp_path):
    """bucket_sort (chance 20% per token) with a short budget: the model must clearly learn."""
    config = make_config("bucket_sort", "alibi", "smoke", steps=300, batch_size=32, lr=1e-3, train_length=8,
                         max_test_length=12, eval_samples=64, eval_batch_size=64, n_layers=2)
    record = run_alone(config, tmp_path).record
    assert record["in_distribution_accuracy"] > 0.75, record["accuracy_by_length"]
    assert record["ood_accuracy"] > 0.40, record["accuracy_by_length"]
    curve = record["train_curve"]
    assert curve[-1][1] < 0.6 * curve[0][1]  # the loss fell substantially (1.86 -> 0.90 here)


def test_tensorboard_without_the_package_is_a_one_line_error(cli, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # as if tensorboard were missing
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path,
                 "--set", f"tensorboard={tmp_path / 'tb'}")
    assert result.exit_code == 2
    assert "pip install 'che-bench[tensorboard]'" in result.stderr and "Traceback" not in result.stderr


# -- the results folder and a full disk: nothing is lost -------------------------------------------
def test_an_unwritable_results_folder_is_refused_before_training(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", blocker / "runs",
                 "--quiet")
    assert result.exit_code == 2 and "cannot write to the results folder" in result.stderr
    assert "step 1/" not in result.stderr                        # nothing was trained


def full_disk_for(folder: Path, monkeypatch):
    """Writes under `folder` fail as on a full disk (results, models, checkpoints); elsewhere they work."""
    import safetensors
    import safetensors.torch

    real_write, real_save = run_module.write_json_atomic, safetensors.torch.save_file
    real_write_checkpoint = train_module.write_checkpoint

    def under(path) -> bool:
        return Path(path).resolve().is_relative_to(folder.resolve())

    def write_json_atomic(path, data):
        if under(path) and not str(path).endswith(".ckpt.json"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(path, data)

    def save_file(tensors, path, metadata=None):
        if under(path):
            raise safetensors.SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")
        return real_save(tensors, path, metadata=metadata)

    def write_checkpoint(path, payload):
        if under(path):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write_checkpoint(path, payload)

    monkeypatch.setattr(run_module, "write_json_atomic", write_json_atomic)
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(train_module, "write_checkpoint", write_checkpoint)


@pytest.mark.parametrize("save_model", [True, False])
def test_a_full_disk_rescues_every_result_of_the_pack(tmp_path, monkeypatch, save_model):
    results = tmp_path / "runs"
    configs = pack(save_model=save_model)
    run_module.check_writable(results)  # the folder exists and took a file before the disk filled
    full_disk_for(results, monkeypatch)
    with pytest.warns(UserWarning, match="could not save the checkpoint") as caught:
        with pytest.raises(CheError, match="could not write 3 result") as error:
            execute_pack(configs, results, device="cpu")
    assert "\n" not in str(error.value)
    rescued = sorted(run_module.rescue_folder().glob("parity_check--alibi--*.json"))
    assert {json.loads(p.read_text())["run_id"] for p in rescued} >= {c.run_id for c in configs}
    if save_model:
        assert any("could not keep the model" in str(w.message) for w in caught)
    # the list of the pack's runs was written (small), its checkpoint never was: the list goes too
    assert not list(results.rglob("*.ckpt")) and not list(results.rglob("pack-*.ckpt.json"))


def test_a_results_folder_that_cannot_take_a_byte_is_refused_and_left_clean(tmp_path):
    """The check before training writes a probe; on a folder whose writes fail (here every write of
    data: RLIMIT_FSIZE 0, as a full disk fails them) it is refused in one line and leaves no file."""
    import resource
    import subprocess
    import sys

    folder = tmp_path / "runs"
    folder.mkdir()

    def no_bytes():
        resource.setrlimit(resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))

    result = subprocess.run(
        [sys.executable, "-m", "che", "run", "--task", "parity_check", "--pe", "none", "--preset", "smoke",
         "--results", str(folder), "--quiet"], capture_output=True, text=True, timeout=300, preexec_fn=no_bytes,
        cwd=Path(__file__).parent.parent)
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: cannot write to the results folder '{folder}'")
    assert list(folder.iterdir()) == []


def test_a_full_disk_at_a_checkpoint_is_a_warning_and_the_run_finishes(tmp_path, monkeypatch):
    results = tmp_path / "runs"
    config = pack(seeds=(0,))[0]

    def failing_checkpoints(path, payload):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(train_module, "write_checkpoint", failing_checkpoints)
    with pytest.warns(UserWarning, match="could not save the checkpoint .*training goes on"):
        outcome = run_alone(config, results, device="cpu")
    assert outcome.status == "finished" and json.loads(outcome.path.read_text())["status"] == "finished"


def test_a_full_disk_is_one_line_from_the_command(tmp_path):
    """`che run` on a folder that fills: exit code 2, one line that says where the results are."""
    folder = tmp_path / "runs"
    folder.mkdir()
    script = tmp_path / "fill.py"
    script.write_text(
        "import errno, sys\nfrom che.runners import run\nreal = run.write_json_atomic\n"
        f"def full(path, data):\n    if str(path).startswith({str(folder)!r}):\n"
        "        raise OSError(errno.ENOSPC, 'No space left on device')\n    return real(path, data)\n"
        "run.write_json_atomic = full\nfrom che.cli import main\nmain(sys.argv[1:])\n")
    result = __import__("subprocess").run(
        [__import__("sys").executable, script, "run", "--task", "parity_check", "--pe", "none", "--preset", "smoke",
         "--results", folder, "--quiet", "--set", "save_model=false"], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "saved in" in line[0] and "the disk is full" in line[0]


# -- a pack that stopped after some of its results resumes as that pack ----------------------------
def test_a_partly_written_pack_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    results = tmp_path / "runs"
    configs = pack()
    alone = [run_alone(c, tmp_path / "alone", device="cpu").record for c in configs]
    real_write = run_module.write_result
    written = []

    def killed_after_first(path, record):  # kill -9 after the first result of the pack is written
        if written:
            raise KeyboardInterrupt
        written.append(path)
        return real_write(path, record)

    monkeypatch.setattr(run_module, "write_result", killed_after_first)
    with pytest.raises(KeyboardInterrupt):
        execute_pack(configs, results, device="cpu")
    monkeypatch.setattr(run_module, "write_result", real_write)
    checkpoint = pack_checkpoint_path(results, configs)
    assert checkpoint.exists() and len(list(results.rglob("seed*.json"))) == 1
    rest = configs[1:]
    assert find_checkpoint(results, rest) == (checkpoint, configs)

    class Counting(run_module.Trainer):
        steps = 0

        def step(self, batch):
            Counting.steps += 1
            return super().step(batch)

    monkeypatch.setattr(run_module, "Trainer", Counting)
    with pytest.raises(CheError, match="pass --resume"):
        execute_pack(rest, results, device="cpu")
    outcomes = execute_pack(rest, results, device="cpu", resume=True)
    assert Counting.steps == 0  # the pack had finished training: only evaluated again
    assert [o.status for o in outcomes] == ["finished", "finished"]
    for outcome, expected in zip(outcomes, alone[1:]):
        assert outcome.record["accuracy_by_length"] == expected["accuracy_by_length"]
        assert outcome.record["train_curve"] == expected["train_curve"]
    assert not list(results.rglob("*.ckpt")) and not list(results.rglob("*.ckpt.json"))


def test_che_run_says_resume_before_estimating_and_says_where_it_resumes(cli, tmp_path, monkeypatch):
    from che.runners import launch  # patched where `che run` calls it (a name it imported)

    results = tmp_path / "runs"
    config = pack(seeds=(0,))[0]

    class StopAtSix(run_module.Reporter):  # Ctrl-C twice at step 6: the checkpoint of step 4 stays
        def step(self, state, loss, accuracy):
            if state.step == 6:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_alone(config, results, device="cpu", reporter=StopAtSix())
    args = ("run", "--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--steps", 12,
            "--set", "checkpoint_every=4", "--results", results, "--quiet")
    real = launch.estimate_seconds
    monkeypatch.setattr(launch, "estimate_seconds", lambda *a, **k: pytest.fail("estimated before refusing"))
    refused = cli(*args)
    assert refused.exit_code == 2 and "pass --resume" in refused.stderr
    monkeypatch.setattr(launch, "estimate_seconds", real)
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming from step 4" in resumed.output


def test_resume_without_a_checkpoint_says_so_and_trains_from_step_0(cli, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path,
                 "--quiet", "--resume")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "--resume" in line]
    assert said == [f"warning: --resume: no checkpoint of this run in {tmp_path}; training from step 0"]
    assert json.loads(next(tmp_path.rglob("seed*.json")).read_text())["resumed_from_step"] == 0


# -- Ctrl-C and SIGTERM: a checkpoint, one line, and --resume --------------------------------------
def test_ctrl_c_during_evaluation_keeps_the_training(tmp_path):
    """Training ends with a checkpoint; Ctrl-C in evaluation exits 130 with a --resume hint, and the
    resumed run evaluates without training again."""
    import signal
    import subprocess
    import sys

    from conftest import REPO

    args = [sys.executable, "-m", "che", "run", "--task", "reverse_string", "--pe", "alibi", "--preset", "smoke",
            "--set", "max_test_length=120", "--set", "eval_samples=16", "--results", tmp_path, "--quiet"]
    args = [str(a) for a in args]
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    for line in process.stderr:
        if line.startswith("evaluating"):
            break
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    if process.returncode == 0:
        pytest.skip("the evaluation finished before the signal arrived")
    assert process.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json"))
    resumed = subprocess.run(args + ["--resume"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    assert "step 1/" not in resumed.stderr                       # no training step was redone
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["resumed_from_step"] == 10 and not list(tmp_path.rglob("*.ckpt"))


def test_che_run_started_with_sigint_ignored_keeps_ignoring_it(tmp_path):
    """`che run &` from a script (SIGINT ignored, as a shell does for background jobs) is not stopped by
    a Ctrl-C meant for the foreground: the run finishes."""
    import signal
    import subprocess
    import sys
    import time

    command = [sys.executable, "-m", "che", "run", "--task", "parity_check", "--pe", "none", "--preset", "smoke",
               "--steps", 400, "--results", tmp_path / "runs", "--quiet", "--set", "save_model=false"]
    process = subprocess.Popen([str(c) for c in command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
                               cwd=Path(__file__).parent.parent)
    deadline = time.time() + 120
    while time.time() < deadline and not list((tmp_path / "runs").rglob("*.ckpt")) and process.poll() is None:
        time.sleep(0.2)  # training has started once the first checkpoint (every 5 steps) exists
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=300)
    assert process.returncode == 0, stderr
    assert len(list((tmp_path / "runs").rglob("seed0-*.json"))) == 1


def che_run_stopped(args: list, when: str, sigint_ignored: bool = False):
    """`che run` in its own process, sent SIGTERM once its --quiet log shows a line starting with
    `when` ("step " in training, "evaluating" in evaluation): (exit code, stderr), or None when the
    run finished before the signal arrived (a very fast machine)."""
    import signal
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-m", "che", "run", *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, cwd=Path(__file__).parent.parent,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None)
    for line in process.stderr:
        if line.startswith(when):
            break
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    return None if process.returncode == 0 else (process.returncode, err)


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "sigint-ignored"])
def test_sigterm_in_training_saves_a_checkpoint_says_how_to_resume_and_exits_143(cli, tmp_path, sigint_ignored):
    """As Ctrl-C: a checkpoint, one line naming it and --resume, exit code 128 + 15, and --resume
    reaches the uninterrupted result; also in a process that ignores SIGINT (`che run &`, nohup)."""
    common = ["--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--steps", 200, "--quiet",
              "--set", "checkpoint_every=100000", "--set", "max_test_length=6"]
    stopped = che_run_stopped([*common, "--results", tmp_path / "b"], "step ", sigint_ignored)
    if stopped is None:
        pytest.skip("the run finished before the signal arrived")
    code, err = stopped
    assert code == 143, err
    checkpoints = list((tmp_path / "b").rglob("*.ckpt"))
    said = [line for line in err.splitlines() if "SIGTERM" in line]
    assert len(said) == 1 and said[0].startswith("interrupted by SIGTERM at step ") and "Traceback" not in err
    assert len(checkpoints) == 1 and f"checkpoint saved to {checkpoints[0]}" in said[0] and "--resume" in said[0]
    assert not list((tmp_path / "b").rglob("*.json"))

    resumed = cli("run", *common, "--results", tmp_path / "b", "--resume")
    straight = cli("run", *common, "--results", tmp_path / "a")
    assert resumed.exit_code == 0 and straight.exit_code == 0, resumed.stderr + straight.stderr
    a = json.loads(next((tmp_path / "a").rglob("seed*.json")).read_text())
    b = json.loads(next((tmp_path / "b").rglob("seed*.json")).read_text())
    assert b["resumed_from_step"] > 0 and not list((tmp_path / "b").rglob("*.ckpt"))
    assert a["train_curve"] == b["train_curve"] and a["accuracy_by_length"] == b["accuracy_by_length"]


def test_sigterm_in_evaluation_keeps_the_training_and_exits_143(cli, tmp_path):
    """As Ctrl-C in evaluation: training ended with a checkpoint, which --resume evaluates without
    training again."""
    args = ["--task", "reverse_string", "--pe", "alibi", "--preset", "smoke", "--set", "max_test_length=120",
            "--set", "eval_samples=16", "--results", tmp_path, "--quiet"]
    stopped = che_run_stopped(args, "evaluating")
    if stopped is None:
        pytest.skip("the evaluation finished before the signal arrived")
    code, err = stopped
    assert code == 143, err
    assert "interrupted by SIGTERM before the results were written" in err and "--resume" in err
    assert "Traceback" not in err
    assert list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json"))
    resumed = cli("run", *args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "step 1/" not in resumed.stderr  # no training step was redone
    assert json.loads(next(tmp_path.rglob("seed*.json")).read_text())["resumed_from_step"] == 10


def test_ctrl_c_while_setting_up_says_nothing_was_saved(cli, tmp_path, monkeypatch):
    """Ctrl-C before training has a checkpoint (building the model, say) promises no --resume."""
    from che.runners import launch

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(launch, "execute", interrupted)
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path)
    assert result.exit_code == 130
    assert result.stderr.strip().splitlines()[-1] == "interrupted before training began; nothing was saved"


def test_a_stop_asked_for_while_a_step_reports_saves_its_checkpoint(tmp_path):
    """A signal that arrives while the loop reports a step (prints its log line) stops the run with a
    checkpoint of that step, not without one."""
    import signal

    # As in a terminal: a test process started in the background (`pytest &`) has SIGINT ignored,
    # which the training loop keeps ignoring
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)

    from che.runners.train import Interrupted

    class SignalWhileReporting(run_module.Reporter):
        def step(self, state, loss, accuracy):
            if state.step == 6:
                os.kill(os.getpid(), signal.SIGINT)  # handled here, by the training loop's handler

    config = pack(seeds=(0,))[0]  # checkpoints every 4 steps
    try:
        with pytest.raises(Interrupted) as stop:
            run_alone(config, tmp_path / "runs", device="cpu", reporter=SignalWhileReporting())
    finally:
        signal.signal(signal.SIGINT, previous)
    assert stop.value.step == 6 and stop.value.saved, str(stop.value)
    from che.runners.train import read_checkpoint

    assert read_checkpoint(stop.value.checkpoint)[0]["step"] == 6


# -- a run that fails says what happened -----------------------------------------------------------
def test_nan_loss_is_one_line_and_exit_1(tmp_path):
    plugin = tmp_path / "nan_pe.py"
    plugin.write_text(
        "import torch\nfrom che import register_pe\nfrom che.models.positional import BiasPE\n\n"
        "@register_pe\nclass NanBias(BiasPE):\n    name = 'nan-bias'\n    family = 'additive bias'\n"
        "    def bias_from_offsets(self, offsets, positions):\n"
        "        return torch.full((self.config.n_heads, *offsets.shape), float('nan'))\n")
    result = run_che("run", "--task", "parity_check", "--pe", "nan-bias", "--preset", "smoke", "--results",
                     tmp_path / "runs", "--plugin", plugin, "--quiet")
    assert result.returncode == 1, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and "not finite at the first step, before any update" in last
    assert "plugin" in last and "learning rate" not in last  # not the learning rate's fault: a nan bias


class DivergesAtLr(run_module.Trainer):
    """Runs with lr 0.5 get a nan weight after their second step: their loss is nan from step 3."""

    def step(self, batch):
        super().step(batch)
        if self.stats.step.item() == 2:
            with torch.no_grad():
                for k, config in enumerate(self.configs):
                    if config.lr == 0.5:
                        self.optimizer.flat[k, 0] = float("nan")


def test_rerunning_a_pack_whose_run_diverged_says_what_it_trains(cli, tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "Trainer", DivergesAtLr)
    args = ("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--lrs", "0.001,0.5",
            "--results", tmp_path / "runs", "--quiet")
    first = cli(*args)
    assert first.exit_code == 1 and "failed: the training loss became non-finite" in first.output
    again = cli(*args)
    assert again.exit_code == 1
    assert "2 runs (seeds 0 x lr 0.001, 0.5), 1 to train (1 finished)" in again.stderr
    line = again.stderr.strip().splitlines()[-1]
    assert line.startswith("error: the training loss became non-finite (nan or inf) at step 3")
    assert "lr 0.5" in line and "lr 0.001" not in line and "no result was written for it" in line


# -- kept models -----------------------------------------------------------------------------------
def test_no_save_model_keeps_none(cli, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--set", "save_model=false",
                 "--results", tmp_path, "--quiet")
    assert result.exit_code == 0, result.stderr
    assert not list(tmp_path.rglob("*.safetensors")) and json.loads(next(tmp_path.rglob("*.json")).read_text())[
        "model"] is None
