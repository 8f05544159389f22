"""Defects found by trying to break `che` (issue 10, section 5): each is refused with one line and a
nonzero exit code, or handled without losing work."""

from __future__ import annotations

import json

import pytest
from conftest import run_alone, run_che

BAD_SAMPLERS = {
    "wrong_input_length": ("torch.zeros(b, n + 1, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                           "inputs of shape"),
    "long_targets": ("torch.zeros(b, n, dtype=torch.long)", "torch.zeros(b, 3, dtype=torch.long)",
                     "targets of shape"),
    "empty_token": ("torch.full((b, n), 2, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                    "2 is the model's empty token"),
    "out_of_vocabulary": ("torch.full((b, n), 7, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)",
                          "outside 0..1"),
    "negative": ("torch.full((b, n), -1, dtype=torch.long)", "torch.zeros(b, 1, dtype=torch.long)", "outside 0..1"),
    "nan": ("torch.full((b, n), float('nan'))", "torch.zeros(b, 1, dtype=torch.long)", "not int64"),
}


@pytest.mark.parametrize("case", BAD_SAMPLERS)
def test_a_broken_plugin_sampler_is_refused_with_one_line(cli, tmp_path, case):
    inputs, targets, message = BAD_SAMPLERS[case]
    plugin = tmp_path / f"{case}.py"
    plugin.write_text(
        "import torch\nfrom che import register_task\nfrom che.tasks import Task\n\n"
        f"@register_task\nclass Broken(Task):\n    name = 'broken_{case}'\n    level = 'regular'\n"
        "    input_size = 2\n    output_size = 2\n"
        f"    def _sample(self, b, n, g):\n        return {inputs}, {targets}\n")
    result = cli("run", "--task", f"broken_{case}", "--pe", "none", "--preset", "smoke", "--results",
                 tmp_path / "runs", "--plugin", plugin, "--quiet")
    assert result.exit_code == 2, result.stderr
    line = result.stderr.strip()
    assert "\n" not in line and "Traceback" not in line and line.startswith("error: ")
    assert f"broken_{case}" in line and str(plugin) in line and message in line
    assert not list((tmp_path / "runs").rglob("*.json"))


@pytest.fixture(scope="module")
def one_result(tmp_path_factory):
    """A real finished result file (smoke run)."""
    from che.config import make_config

    folder = tmp_path_factory.mktemp("one")
    return run_alone(make_config("parity_check", "alibi", "smoke"), folder / "runs", device="cpu").path


@pytest.mark.parametrize("field, value, reason", [
    ("ood_accuracy", float("nan"), "finite"),
    ("ood_accuracy", float("inf"), "finite"),
    ("ood_accuracy", True, "valid number"),
    ("in_distribution_accuracy", 1.5, "less than or equal to 1"),
    ("seed", -3, "greater than or equal to 0"),
    ("accuracy_by_length", "0.5", "valid list"),
])
def test_the_leaderboard_skips_invalid_results_and_counts_a_run_once(cli, one_result, tmp_path, field, value, reason):
    folder = tmp_path / "runs" / "parity_check" / "alibi"
    folder.mkdir(parents=True)
    valid = json.loads(one_result.read_text())
    (folder / one_result.name).write_text(one_result.read_text())
    (folder / "copy.json").write_text(one_result.read_text())   # a byte-identical copy: the same run
    bad = dict(valid, run_id="seed9-lr0.0003-0000000000", **{field: value})
    (folder / "bad.json").write_text(json.dumps(bad))          # NaN / Infinity are written as such
    result = cli("leaderboard", "--results", tmp_path / "runs", "--format", "json")
    assert result.exit_code == 0, result.stderr
    cells = json.loads(result.stdout)["cells"]
    assert len(cells) == 1 and cells[0]["runs"] == 1
    assert cells[0]["ood_accuracy"] == pytest.approx(100 * valid["ood_accuracy"])
    assert "bad.json" in result.stderr and reason in result.stderr
    assert "copy.json" in result.stderr and "already read" in result.stderr


def test_unreadable_entries_in_the_results_folder_are_skipped_not_read(cli, one_result, tmp_path):
    import os

    folder = tmp_path / "runs" / "parity_check" / "alibi"
    folder.mkdir(parents=True)
    (folder / one_result.name).write_text(one_result.read_text())
    os.mkfifo(folder / "fifo.json")                             # reading it would block forever
    os.symlink("/dev/zero", folder / "zero.json")               # reading it would fill the memory
    result = run_che("leaderboard", "--results", tmp_path / "runs", "--format", "json", timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["cells"][0]["runs"] == 1
    assert "fifo.json: not a regular file" in result.stderr and "zero.json: not a regular file" in result.stderr


def test_an_unwritable_results_folder_is_refused_before_training(cli, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results", blocker / "runs",
                 "--quiet")
    assert result.exit_code == 2 and "cannot write to the results folder" in result.stderr
    assert "step 1/" not in result.stderr                        # nothing was trained


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


def test_pes_show_refuses_what_it_cannot_print(cli):
    result = cli("pes", "--show", "sandwich", "--length", 4096, "--n-heads", 64, "--json")
    assert result.exit_code == 2 and "lower --length or --n-heads" in result.stderr


def test_a_run_in_progress_is_not_started_twice(cli, tmp_path):
    from che.config import make_config
    from che.locks import claim, release

    config = make_config("parity_check", "none", "smoke")
    lock, _ = claim(tmp_path / "runs", config)
    try:
        result = cli("run", "--task", "parity_check", "--pe", "none", "--preset", "smoke", "--results",
                     tmp_path / "runs", "--quiet")
    finally:
        release(lock)
    assert result.exit_code == 2 and "is running elsewhere (pid" in result.stderr
    assert not list((tmp_path / "runs").rglob("*.json"))


@pytest.mark.parametrize("args, message", [
    (["run", "--task", "parity_check", "--pe", "dape-alibi", "--set", "dape_variant=foo"], "dape_variant: unknown value 'foo'"),
    (["run", "--task", "parity_check", "--pe", "dape-alibi", "--set", "dape_impl=foo"], "dape_impl: unknown value 'foo' (choices: fast, literal, triton)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "seed=-1"], "seeds must be in [0, 2^32)"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", f"seed={2**32}"], "seeds must be in [0, 2^32)"),
    (["sample", "--task", "parity_check", "--length", 3, "--seed", 99999999999999999999999], "--seed"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "eval_memory_gb=nan"], "eval_memory_gb must be"),
    (["run", "--task", "parity_check", "--pe", "alibi", "--set", "rand_mode=x"], "rand_mode: unknown value 'x' (choices: offsets, reference, positions)"),
    (["leaderboard", "--results", "results/cpu/runs", "--plot", "x.xyz"], "unknown format '.xyz'"),
    (["leaderboard", "--results", "results/cpu/runs", "--out", "/proc/x/y.md"], "cannot be written"),
    (["leaderboard", "--results", "results/cpu/runs", "--out", "tests"], "is a folder"),
    (["bench", "--out", "/proc/x/b.json"], "cannot be written"),
    (["run", "--task", "reverse_string", "--pe", "alibi", "--set", "train_length=4000", "--set", "max_test_length=4001",
      "--set", "batch_size=64"], "needs up to"),
    (["sweep", "--tasks", "parity_check", "--pes", "none", "--seeds", 100000000, "--dry-run"], "--seeds must be"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, cli):
    result = cli(*args)  # in-process, as the entry point runs it (tests/test_cli.py covers `python -m che`)
    assert result.exit_code == 2, result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and last.startswith("error: ") and message in last


def test_a_lock_outlives_nothing_a_dead_or_reused_pid_never_holds_a_run(tmp_path):
    """The lock is the OS's: a live holder is respected; once it is gone the run is free again,
    whatever PID its old owner file names (PID 1, or our own after a restart)."""
    import subprocess
    import sys

    from che.config import make_config
    from che.locks import claim, is_locked, lock_path, release

    config = make_config("parity_check", "none", "smoke")
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom che.config import make_config\nfrom che.locks import claim\n"
        f"lock, _ = claim({str(tmp_path)!r}, make_config('parity_check', 'none', 'smoke'))\n"
        "print('locked', flush=True)\ntime.sleep(60)\n")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    assert "pid " + str(holder.pid) in is_locked(tmp_path, config)
    holder.kill()
    holder.wait()
    lock_path(tmp_path, config).with_suffix(".owner").write_text(json.dumps({"host": "x", "pid": 1}))
    assert is_locked(tmp_path, config) is None
    lock, who = claim(tmp_path, config)
    assert lock is not None and who is None
    release(lock)


def test_html_leaderboard_escapes_what_comes_from_results(cli, one_result, tmp_path):
    folder = tmp_path / "runs" / "x" / "y"
    folder.mkdir(parents=True)
    record = json.loads(one_result.read_text()) | {"task": "<script>alert(1)</script>", "pe": "<b>pe"}
    (folder / "r.json").write_text(json.dumps(record))
    result = cli("leaderboard", "--results", tmp_path / "runs", "--format", "html")
    assert result.exit_code == 0, result.stderr
    assert "<script>" not in result.stdout and "&lt;script&gt;" in result.stdout and "&lt;b&gt;pe" in result.stdout


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


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="these settings train on a CUDA device")
@pytest.mark.parametrize("setting, message", [("attention=flex", "attention=flex trains on CUDA only"),
                                              ("dape_impl=triton", "dape_impl=triton needs triton and a CUDA")])
def test_settings_a_cpu_cannot_train_with_are_refused_in_one_line(setting, message, tmp_path, monkeypatch, cli):
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)
    result = cli("run", "--task", "parity_check", "--pe", "dape-alibi", "--preset", "smoke", "--set", setting,
                 "--results", str(tmp_path))
    assert result.exit_code == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith(f"error: {message}")
    assert not list(tmp_path.rglob("*.json"))
