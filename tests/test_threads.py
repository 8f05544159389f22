"""The thread count of a run: never chosen by a timing (the machine's load would choose the bits),
and a resumed run continues with the count it started with; set before torch loads, recorded."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
from conftest import run_alone, run_che

from che.config import make_config
from che.runners.run import Reporter
from che.runners.stored import model_path
from che.threads import THREAD_VARIABLES, usable_cores

# A configuration whose bits differ between 1 and 2 torch threads on this project's CPU (DAPE's MLP
# and the attention products split their sums across threads at these sizes).
SPLIT_BY_THREADS = dict(steps=10, batch_size=32, train_length=10, max_test_length=12, checkpoint_every=5)
ARGS = ("run", "--task", "reverse_string", "--pe", "dape-kerple-log", "--preset", "smoke",
        *[arg for key, value in SPLIT_BY_THREADS.items() for arg in ("--set", f"{key}={value}")], "--quiet")


def outputs(folder) -> tuple[list, dict]:
    """What a run computed: its result's numbers and its kept weights."""
    from safetensors.torch import load_file

    path = next(p for p in folder.rglob("*.json"))
    record = json.loads(path.read_text())
    numbers = [record[k] for k in ("final_loss", "train_curve", "accuracy_by_length", "ood_accuracy")]
    return numbers, load_file(model_path(path))


def assert_same_bits(a, b) -> None:
    assert a[0] == b[0]
    assert a[1].keys() == b[1].keys() and all(torch.equal(a[1][k], b[1][k]) for k in a[1])


@pytest.fixture
def thread_count_kept(monkeypatch):
    """The test may change torch's thread count and the OpenMP variables: both are put back."""
    import che.threads

    threads = torch.get_num_threads()
    for name in THREAD_VARIABLES:
        monkeypatch.setenv(name, str(threads))
    monkeypatch.setattr(che.threads, "_chosen", None)  # `--threads` given in-process is forgotten after
    yield
    torch.set_num_threads(threads)


def test_the_thread_count_is_not_chosen_by_timing_steps(cli, tmp_path, monkeypatch, thread_count_kept):
    """Nobody chose a count, and one thread times faster (as on a loaded machine): the run still
    uses the usable cores, and the estimate leaves torch's count as it was."""
    import che.threads
    from torch.utils import benchmark

    monkeypatch.setattr(che.threads, "_USER_THREADS", "")  # neither --threads nor OMP_NUM_THREADS
    real_timer = benchmark.Timer

    class OneThreadLooksFaster(real_timer):
        def timeit(self, number):
            measured = super().timeit(number)
            measured.raw_times = [t * (0.01 if self._task_spec.num_threads == 1 else 1) for t in measured.raw_times]
            return measured

    monkeypatch.setattr(benchmark, "Timer", OneThreadLooksFaster)
    result = cli(*ARGS, "--results", tmp_path)
    assert result.exit_code == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["threads"] == usable_cores() == torch.get_num_threads()


class StopAtSeven(Reporter):
    """Ctrl-C twice at step 7: the checkpoint of step 5 stays."""

    def step(self, state, loss, accuracy):
        if state.step == 7:
            raise KeyboardInterrupt


def test_a_run_resumed_with_another_thread_count_continues_with_its_own(cli, tmp_path, thread_count_kept):
    """Started on 1 thread, interrupted, resumed with --threads 2: one line says 1 is used and why,
    and the result and weights are bit for bit those of the run made on 1 thread without a stop."""
    config = make_config("reverse_string", "dape-kerple-log", "smoke", **SPLIT_BY_THREADS)
    torch.set_num_threads(1)
    run_alone(config, tmp_path / "whole", device="cpu")
    with pytest.raises(KeyboardInterrupt):
        run_alone(config, tmp_path / "stopped", device="cpu", reporter=StopAtSeven())
    resumed = cli("--threads", 2, *ARGS, "--results", tmp_path / "stopped", "--resume")
    assert resumed.exit_code == 0, resumed.stderr
    said = [line for line in resumed.stderr.splitlines() if "thread" in line and "resum" in line]
    assert said == ["warning: resuming with 1 torch thread(s), the count this run started with, not 2: another "
                    "count would change its numbers"]
    record = json.loads(next((tmp_path / "stopped").rglob("*.json")).read_text())
    assert record["resumed_from_step"] == 5 and record["threads"] == 1
    assert_same_bits(outputs(tmp_path / "stopped"), outputs(tmp_path / "whole"))
    assert torch.get_num_threads() == 2  # the count asked for, once the resumed run is done


@pytest.mark.skipif(usable_cores() < 2, reason="one core: a single possible thread count")
def test_the_same_command_gives_the_same_bits_beside_a_busy_process(tmp_path):
    """`che run` twice with neither --threads nor OMP_NUM_THREADS, the second with a CPU-bound
    process on the cores: the same thread count (the usable cores), the same numbers and weights."""
    env = {name: "" for name in THREAD_VARIABLES}
    first = run_che(*ARGS, "--results", tmp_path / "a", env=env)
    assert first.returncode == 0, first.stderr
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        second = run_che(*ARGS, "--results", tmp_path / "b", env=env)
    finally:
        busy.kill()
        busy.wait()
    assert second.returncode == 0, second.stderr
    for folder in ("a", "b"):
        assert json.loads(next((tmp_path / folder).rglob("*.json")).read_text())["threads"] == usable_cores()
    assert_same_bits(outputs(tmp_path / "a"), outputs(tmp_path / "b"))


def test_threads_are_set_before_torch_and_recorded(tmp_path):
    """A fresh `che` process: passive OpenMP waiting, the thread count it was given, in the result."""
    from conftest import run_che

    result = run_che("--threads", 1, "run", "--task", "parity_check", "--pe", "none", "--preset", "smoke",
                     "--results", tmp_path, "--quiet")
    assert result.returncode == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("*.json")).read_text())
    assert record["threads"] == 1 and record["command"].startswith("che --threads 1 run")
    assert "with 1 thread(s)" in result.stderr


def test_threads_given_to_a_sweep_are_each_runs_thread_count(monkeypatch, thread_count_kept):
    """`che --threads N sweep` trains every run on N threads; without it, a sweep splits the cores
    between its workers."""
    from che.runners.executors import plan as executors
    from che.threads import configure

    monkeypatch.setattr(executors, "usable_cores", lambda: 16)
    assert executors.local_plan("cpu", 2, 1, pending=10).threads == 8
    configure(1)
    assert executors.local_plan("cpu", 2, 1, pending=10).threads == 1
    assert executors.local_plan("cpu", None, 1, pending=10).jobs == 10
