"""Checkpoints and kept models carry a sha256 of what they hold: a file damaged after it was
written is refused in one line (naming it and the way out), never resumed from or evaluated; files
written before checksums existed still load. A checkpoint that contradicts itself, or a kept model that
cannot be read, is refused too."""

from __future__ import annotations

import json
import os

import pytest
import torch
from conftest import run_alone

from che.config import make_config
from che.runners.run import Reporter, find_checkpoint
from che.runners.stored import model_path
from che.runners.train import read_checkpoint

CONFIG = dict(steps=12, checkpoint_every=4)
ARGS = ("run", "--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--steps", 12,
        "--set", "checkpoint_every=4")


def smoke(**overrides):
    return make_config("parity_check", "alibi", "smoke", **(CONFIG | overrides))


class StopAtSix(Reporter):
    """Ctrl-C twice at step 6: the checkpoint of step 4 stays, as after a kill -9."""

    def step(self, state, loss, accuracy):
        if state.step == 6:
            raise KeyboardInterrupt


@pytest.fixture
def checkpoint(tmp_path):
    """The checkpoint of an interrupted smoke run, under tmp_path / "runs"."""
    config = smoke()
    with pytest.raises(KeyboardInterrupt):
        run_alone(config, tmp_path / "runs", device="cpu", reporter=StopAtSix())
    path, _ = find_checkpoint(tmp_path / "runs", [config])
    assert path.exists()
    return path


def zero_4k_in_the_middle(path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 4096] = bytes(4096)
    path.write_bytes(bytes(data))


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    lines = result.stderr.strip().splitlines()  # the run's plan may come first, as a log line
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    return errors[0]


# -- checkpoints ------------------------------------------------------------------------------------
@pytest.mark.parametrize("damage, reason", [
    ("zeroed", "do not match their checksum"),
    ("truncated", "do not match their checksum"),
    ("garbage", "not a che checkpoint"),
    ("empty", "the file is empty"),
    ("old, truncated", "damaged or truncated"),
    ("old, not a checkpoint", "objects other than tensors"),
])
def test_a_damaged_checkpoint_is_refused_in_one_line(cli, checkpoint, damage, reason):
    if damage == "zeroed":
        zero_4k_in_the_middle(checkpoint)
    elif damage == "truncated":
        checkpoint.write_bytes(checkpoint.read_bytes()[:-5000])
    elif damage == "garbage":
        checkpoint.write_bytes(os.urandom(4096))
    elif damage == "empty":
        checkpoint.write_bytes(b"")
    elif damage == "old, truncated":  # a checkpoint of before checksums (torch.save's zip), cut short
        torch.save(read_checkpoint(checkpoint)[0], checkpoint)
        checkpoint.write_bytes(checkpoint.read_bytes()[:-5000])
    else:  # a zip that torch refuses to unpickle with weights_only (a paragraph about trust)
        torch.save({"optimizer": Reporter()}, checkpoint)
    line = one_error_line(cli(*ARGS, "--results", checkpoint.parents[2], "--resume"))
    assert f"cannot resume from {checkpoint}: " in line and reason in line and "--force starts the run over" in line
    assert "miniz" not in line and "weights_only" not in line
    assert not list(checkpoint.parents[2].rglob("seed*.json"))  # nothing written from it


def test_a_damaged_checkpoint_is_started_over_with_force(cli, checkpoint):
    zero_4k_in_the_middle(checkpoint)
    result = cli(*ARGS, "--results", checkpoint.parents[2], "--force")
    assert result.exit_code == 0, result.stderr
    assert json.loads(next(checkpoint.parents[2].rglob("seed*.json")).read_text())["resumed_from_step"] == 0


def test_a_checkpoint_of_before_checksums_resumes_with_a_warning(cli, checkpoint, tmp_path):
    """An old checkpoint (torch.save's zip, no checksum) resumes, says it cannot be verified, and
    gives the uninterrupted run's result."""
    torch.save(read_checkpoint(checkpoint)[0], checkpoint)
    result = cli(*ARGS, "--results", checkpoint.parents[2], "--resume")
    assert result.exit_code == 0, result.stderr
    warning = [line for line in result.stderr.splitlines() if line.startswith("warning:")]
    assert warning == [f"warning: the checkpoint {checkpoint} was written before checkpoints carried a checksum: it "
                       f"cannot be verified, resuming from it as it is"]
    resumed = json.loads(next(checkpoint.parents[2].rglob("seed*.json")).read_text())
    whole = run_alone(smoke(), tmp_path / "whole", device="cpu").record
    assert resumed["resumed_from_step"] == 4
    assert resumed["train_curve"] == whole["train_curve"] and resumed["accuracy_by_length"] == whole["accuracy_by_length"]


def test_a_tampered_checkpoint_is_refused(tmp_path):
    import torch
    from che.runners.train import Trainer, read_checkpoint, write_checkpoint

    from che.config import make_config
    from che.errors import CheError
    from che.results import checkpoint_path

    config = make_config("parity_check", "none", "smoke")
    trainer = Trainer([config], __import__("che.registry").registry.TASKS.get("parity_check"), torch.device("cpu"))
    trainer.step(trainer.sample())
    path = checkpoint_path(tmp_path, config)
    trainer.save(path)
    payload, _ = read_checkpoint(path)
    payload["step"] = payload["state"]["step"] = config.steps     # "finished", without training
    write_checkpoint(path, payload)                                # with a checksum that matches
    with pytest.raises(CheError, match="cannot resume .* says step 10, but its optimiser made 1 steps"):
        run_alone(config, tmp_path, device="cpu", resume=True)
    assert not list(tmp_path.rglob("*.json"))


# -- kept models -----------------------------------------------------------------------------------
def rewrite_model(result, change) -> None:
    """The kept model written again with `change(metadata)` applied to its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    weights = model_path(result)
    with safe_open(str(weights), framework="pt") as handle:
        metadata = handle.metadata()
    save_file(load_file(weights), weights, metadata=change(dict(metadata)))


@pytest.mark.parametrize("command", ["eval", "show"])
def test_a_kept_model_damaged_inside_its_weights_is_refused(cli, kept_run, tmp_path, command):
    zero_4k_in_the_middle(model_path(kept_run))
    extra = ["--out-results", tmp_path / "evals"] if command == "eval" else ["--out", tmp_path / "show.png"]
    line = one_error_line(cli(command, kept_run, *extra))
    assert f"the stored model {model_path(kept_run)} does not match its checksum" in line
    assert "train the run again with --force" in line
    assert not (tmp_path / "evals").exists() and not (tmp_path / "show.png").exists()


def test_a_kept_model_without_metadata_is_one_line_that_says_so(cli, kept_run, tmp_path):
    rewrite_model(kept_run, lambda metadata: None)
    line = one_error_line(cli("eval", kept_run, "--out-results", tmp_path / "evals"))
    assert "has no che metadata" in line and "None" not in line


def test_a_kept_model_of_before_checksums_still_evaluates(cli, kept_run, tmp_path):
    rewrite_model(kept_run, lambda metadata: {k: v for k, v in metadata.items() if k != "sha256"})
    result = cli("eval", kept_run, "--out-results", tmp_path / "evals")
    assert result.exit_code == 0, result.stderr
    evaluation = json.loads(next((tmp_path / "evals").rglob("*.json")).read_text())
    assert evaluation["accuracy_by_length"] == json.loads(kept_run.read_text())["accuracy_by_length"]


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
