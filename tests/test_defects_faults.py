"""Defects found under faults and bad input (a full disk, kill -9 in a pack, wrong numbers, files
written by someone else): each test failed before its fix."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest
import torch

from che.config import make_config
from che.errors import CheError
from che.runners import run as run_module
from che.runners.run import execute, execute_pack, find_checkpoint, pack_checkpoint_path

SMOKE = dict(steps=12, checkpoint_every=4)


def pack(seeds=(0, 1, 2), pe="alibi", **overrides):
    return [make_config("parity_check", pe, "smoke", seed=s, **(SMOKE | overrides)) for s in seeds]


# -- a full disk loses nothing ---------------------------------------------------------------------
def full_disk_for(folder: Path, monkeypatch):
    """Writes under `folder` fail as on a full disk (results, models, checkpoints); elsewhere they work."""
    import safetensors
    import safetensors.torch

    real_write, real_save, real_torch_save = run_module.write_json_atomic, safetensors.torch.save_file, torch.save

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

    def torch_save(obj, path, *args, **kwargs):
        if under(path):
            raise RuntimeError("[enforce fail at inline_container.cc:778] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed (unexpected pos 64 vs 3212)")
        return real_torch_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(run_module, "write_json_atomic", write_json_atomic)
    monkeypatch.setattr(safetensors.torch, "save_file", save_file)
    monkeypatch.setattr(torch, "save", torch_save)


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


def test_a_full_disk_at_a_checkpoint_is_a_warning_and_the_run_finishes(tmp_path, monkeypatch):
    results = tmp_path / "runs"
    config = pack(seeds=(0,))[0]
    real_save = torch.save

    def failing_checkpoints(obj, path, *args, **kwargs):
        if ".ckpt" in str(path):
            raise RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed (unexpected pos 64)")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(torch, "save", failing_checkpoints)
    with pytest.warns(UserWarning, match="could not save the checkpoint .*training goes on"):
        outcome = execute(config, results, device="cpu")
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
         "--results", folder, "--quiet", "--no-save-model"], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHONPATH=str(Path(__file__).parent.parent)))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    line = [x for x in result.stderr.splitlines() if x.startswith("error:")]
    assert len(line) == 1 and "saved in" in line[0] and "the disk is full" in line[0]


# -- a pack that stopped after some of its results resumes as that pack --------------------------
def test_a_partly_written_pack_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    results = tmp_path / "runs"
    configs = pack()
    alone = [execute(c, tmp_path / "alone", device="cpu").record for c in configs]
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
    import che.runners.estimate as estimate

    results = tmp_path / "runs"
    config = pack(seeds=(0,))[0]

    class StopAtSix(run_module.Reporter):  # Ctrl-C twice at step 6: the checkpoint of step 4 stays
        def step(self, state, loss, accuracy):
            if state.step == 6:
                raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        execute(config, results, device="cpu", reporter=StopAtSix())
    args = ("run", "--task", "parity_check", "--pe", "alibi", "--preset", "smoke", "--steps", 12,
            "--checkpoint-every", 4, "--results", results, "--quiet")
    real = estimate.estimate_seconds
    monkeypatch.setattr(estimate, "estimate_seconds", lambda *a, **k: pytest.fail("estimated before refusing"))
    refused = cli(*args)
    assert refused.exit_code == 2 and "pass --resume" in refused.stderr
    monkeypatch.setattr(estimate, "estimate_seconds", real)
    resumed = cli(*args, "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    assert "resuming from step 4" in resumed.output


# -- wrong numbers are refused ---------------------------------------------------------------------
@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_max_grad_norm_must_be_a_positive_number(value):
    with pytest.raises(CheError, match="max_grad_norm"):
        make_config("parity_check", "none", "smoke", max_grad_norm=value)
