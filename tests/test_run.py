"""`che run` end to end: result files, skipping, checkpoints and exact resume, learning."""

import json
import signal
import subprocess
import sys
import time

import pytest
from che.runners.reporting import Reporter
from conftest import REPO, run_alone

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


