"""Defects found under faults and bad input (a full disk, kill -9 in a pack, wrong numbers, files
written by someone else): each test failed before its fix."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch
from che.runners import run as run_module
from che.runners import train as train_module
from che.runners.run import execute_pack, find_checkpoint, pack_checkpoint_path
from conftest import run_alone

from che.config import make_config
from che.errors import CheError

SMOKE = dict(steps=12, checkpoint_every=4)


def pack(seeds=(0, 1, 2), pe="alibi", **overrides):
    return [make_config("parity_check", pe, "smoke", seed=s, **(SMOKE | overrides)) for s in seeds]


# -- a full disk loses nothing ---------------------------------------------------------------------
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


# -- a pack that stopped after some of its results resumes as that pack --------------------------
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


# -- wrong numbers are refused ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_max_grad_norm_must_be_a_positive_number(value):
    with pytest.raises(CheError, match="max_grad_norm"):
        make_config("parity_check", "none", "smoke", max_grad_norm=value)


# -- files read back that someone else may have written --------------------------------------------
@pytest.fixture
def kept_run(tmp_path):
    """A finished smoke run with its kept model, in a folder of its own."""
    outcome = run_alone(pack(seeds=(0,))[0], tmp_path / "runs", device="cpu")
    return outcome.path


@pytest.mark.parametrize("damage", ["truncated", "empty", "garbage"])
@pytest.mark.parametrize("command", ["eval", "show"])
def test_a_damaged_model_file_is_one_line(cli, kept_run, tmp_path, damage, command):
    from che.runners.stored import model_path

    weights = model_path(kept_run)
    data = weights.read_bytes()
    weights.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "garbage": os.urandom(4096)}[damage])
    extra = ["--out-results", tmp_path / "evals"] if command == "eval" else ["--out", tmp_path / "show.png"]
    result = cli(command, kept_run, *extra)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "cannot be read" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_che_eval_refuses_another_runs_weights(cli, kept_run, tmp_path):
    from che.runners.stored import model_path

    other = run_alone(pack(seeds=(1,))[0], tmp_path / "other", device="cpu").path
    model_path(kept_run).write_bytes(model_path(other).read_bytes())
    result = cli("eval", kept_run, "--out-results", tmp_path / "evals")
    assert result.exit_code == 2 and "not 'seed0-" in result.stderr and "seed1-" in result.stderr


def test_che_eval_refuses_an_unwritable_output_before_evaluating(cli, kept_run, tmp_path, monkeypatch):
    from che.runners import inspection as inspect_module

    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setattr(inspect_module, "evaluate", lambda *a, **k: pytest.fail("evaluated first"))
    result = cli("eval", kept_run, "--out-results", blocker / "evals")
    assert result.exit_code == 2 and "cannot write" in result.stderr


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


def test_che_show_heads_empty_is_one_line(cli, kept_run, tmp_path):
    result = cli("show", kept_run, "--out", tmp_path / "x.png", "--heads", "")
    assert result.exit_code == 2 and result.stderr.startswith("error: --heads must be head numbers")


def test_the_help_lists_whole_first_sentences(cli):
    listing = " ".join(cli("--help").stdout.replace("│", " ").split())  # the panel's borders aside
    assert "Evaluate a stored run again on longer lengths or other settings." in listing
    assert "..." not in listing.split("Commands")[1]  # no description cut short


# -- bad input from options and plugins: one line --------------------------------------------------
def test_rand_max_length_shorter_than_the_sequences_is_one_line(cli, tmp_path):
    result = cli("run", "--task", "reverse_string", "--pe", "rand-alibi", "--preset", "smoke", "--set", "rand_max_length=10",
                 "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert "rand_max_length (10) must be at least the longest sequence" in result.stderr
    assert "16 tokens" in result.stderr  # reverse_string at length 8: 8 inputs + 8 outputs
    sweep = cli("sweep", "--tasks", "reverse_string", "--pes", "rand-rope", "--preset", "smoke", "--dry-run",
                "--results", tmp_path / "runs")
    assert sweep.exit_code == 0  # the default range of 2,048 is enough


BAD_BIAS_PLUGIN = """
import torch
from che import register_pe
from che.models.positional import BiasPE


@register_pe
class WrongShape(BiasPE):
    name, family = "wrong-shape", "additive bias"

    def bias_from_offsets(self, offsets, positions):
        return torch.zeros(self.config.n_heads + 1, *offsets.shape)
"""

RAISING_TASK = """
from che import register_task
from che.tasks import Task


@register_task
class Raising(Task):
    name, level, input_size, output_size = "raising", "regular", 2, 2

    def _sample(self, batch_size, length, generator):
        raise ValueError("the sampler broke")
"""


@pytest.mark.parametrize("case", ["bias shape", "sampler raises"])
def test_a_broken_plugin_is_one_line_naming_it(cli, tmp_path, case):
    plugin = tmp_path / "plugin.py"
    plugin.write_text(BAD_BIAS_PLUGIN if case == "bias shape" else RAISING_TASK)
    task, pe = ("parity_check", "wrong-shape") if case == "bias shape" else ("raising", "none")
    result = cli("run", "--task", task, "--pe", pe, "--preset", "smoke", "--plugin", plugin,
                 "--results", tmp_path / "runs", "--quiet")
    assert result.exit_code == 2, result.output
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and str(plugin) in line[0] and "Traceback" not in result.output
    assert ("bias of shape [9," in line[0]) if case == "bias shape" else ("raised ValueError" in line[0])


def test_a_sweep_refuses_an_unwritable_results_folder_before_running(cli, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    result = cli("sweep", "--tasks", "parity_check", "--pes", "none", "--preset", "smoke", "--results",
                 blocker / "runs", "--quiet")
    assert result.exit_code == 2 and "cannot write to the results folder" in result.stderr
    assert "started" not in result.output


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


# -- SIGTERM stops `che run` as Ctrl-C does ---------------------------------------------------------
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
    assert "interrupted by SIGTERM during evaluation" in err and "--resume" in err and "Traceback" not in err
    assert list(tmp_path.rglob("*.ckpt")) and not list(tmp_path.rglob("*.json"))
    resumed = cli("run", *args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "step 1/" not in resumed.stderr  # no training step was redone
    assert json.loads(next(tmp_path.rglob("seed*.json")).read_text())["resumed_from_step"] == 10


def test_a_stop_asked_for_while_a_step_reports_saves_its_checkpoint(tmp_path):
    """A signal that arrives while the loop reports a step (prints its log line) stops the run with a
    checkpoint of that step, not without one."""
    import signal

    from che.runners.train import Interrupted

    class SignalWhileReporting(run_module.Reporter):
        def step(self, state, loss, accuracy):
            if state.step == 6:
                os.kill(os.getpid(), signal.SIGINT)  # handled here, by the training loop's handler

    config = pack(seeds=(0,))[0]  # checkpoints every 4 steps
    with pytest.raises(Interrupted) as stop:
        run_alone(config, tmp_path / "runs", device="cpu", reporter=SignalWhileReporting())
    assert stop.value.step == 6 and stop.value.saved, str(stop.value)
    from che.runners.train import read_checkpoint

    assert read_checkpoint(stop.value.checkpoint)[0]["step"] == 6


def test_resume_without_a_checkpoint_says_so_and_trains_from_step_0(cli, tmp_path):
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", tmp_path,
                 "--quiet", "--resume")
    assert result.exit_code == 0, result.stderr
    said = [line for line in result.stderr.splitlines() if "--resume" in line]
    assert said == [f"warning: --resume: no checkpoint of this run in {tmp_path}; training from step 0"]
    assert json.loads(next(tmp_path.rglob("seed*.json")).read_text())["resumed_from_step"] == 0


# -- messages that say what happened ---------------------------------------------------------------
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


def test_an_evaluation_that_cannot_fit_is_refused_naming_evaluation(cli, tmp_path):
    result = cli("run", "--task", "duplicate_string", "--pe", "alibi", "--preset", "smoke", "--set",
                 "max_test_length=10000", "--results", tmp_path / "runs")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: evaluating duplicate_string at max_test_length 10000 needs up to")
    assert "lower max_test_length" in result.stderr and "training step" not in result.stderr
