"""Estimated cost of a run (or a pack of runs) before it starts: measured steps, shaped by the cost
model, and the range the run's time is likely to fall in.

The pack's real training step (`Trainer.step`: eager, captured or compiled, as the run will be) is
timed at the longest training length, after warm-up, with the thread count the run will use (never
chosen by a timing: bits depend on it). The cost model (`che.runners.cost`, with this device's
calibration) says how the step's time spreads over the length schedule 1..N and what the evaluation
costs; the measured steps correct the model's speed to this machine now. So nothing runs at a test
length (a sweep file's `max_test_length = 10000` costs no memory here), and the estimate takes a few
steps. Nothing touches the run's own generators or torch's global RNG.

A step's time varies with what else the machine runs, which a moment's timing cannot foresee. On a
CPU the range goes from the fastest step timed now to `SHARED_CPU_SLOWDOWN` times the estimate, what
one more busy process on the cores did to runs on this project's machine; on a GPU, from the fastest
to the slowest step timed now.
"""

from __future__ import annotations

import statistics

import torch
from torch.utils import benchmark as torch_benchmark

REPEATS = 5
# The top of a CPU estimate's range, as a multiple of the estimate: on this project's 2-core
# development machine, which others share, runs took up to 2.6x their estimate when a CPU-bound
# process (`yes > /dev/null`) started beside them (README, "Speed", gives the measurements).
SHARED_CPU_SLOWDOWN = 3.0


def likely_range(seconds: float, device: torch.device, spread: tuple[float, float] | None = None) -> tuple[float, float]:
    """(low, high) around an estimate of `seconds`; `spread`: the fastest and the slowest timed step
    over their median, None when nothing was timed now (the calibration's estimate alone). On a CPU,
    from the fastest step (else 1/SHARED_CPU_SLOWDOWN of the estimate: the machine may have been
    busier when it was calibrated) to SHARED_CPU_SLOWDOWN times the estimate; on a GPU, the spread."""
    if device.type == "cpu":
        low = spread[0] if spread is not None else 1 / SHARED_CPU_SLOWDOWN
        return seconds * low, seconds * SHARED_CPU_SLOWDOWN
    low, high = spread if spread is not None else (1.0, 1.0)
    return seconds * low, seconds * high


def describe_range(device: torch.device, timed: bool = True) -> str:
    """What `likely_range` means, in words, for the line that prints it (`timed`: steps were timed now)."""
    if device.type != "cpu":
        return "from the fastest to the slowest step timed now" if timed else "the calibration's estimate alone"
    if timed:
        return (f"from the fastest step timed now to {SHARED_CPU_SLOWDOWN:g}x the estimate, as when another busy "
                f"process shares the cores")
    return (f"{SHARED_CPU_SLOWDOWN:g}x either way, as the machine's load now differs from when it was calibrated")


def format_range(seconds: tuple[float, float]) -> str:
    low, high = seconds
    return f"{format_duration(low)}-{format_duration(high)}"


def estimate_seconds(configs, task, device: torch.device) -> dict:
    """{"train_s", "train_range_s": (low, high), "eval_s", "eval_range_s", "step_s", "threads"} for
    the pack `configs` (or one RunConfig), timed with torch's thread count as it is."""
    from che.runners import cost
    from che.runners.train import Trainer

    configs = [configs] if not isinstance(configs, (list, tuple)) else list(configs)
    config, pack = configs[0], len(configs)
    threads = torch.get_num_threads()
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trainer = Trainer(configs, task, device)
        generator = torch.Generator().manual_seed(0)
        batches = [task.sample(config.batch_size, config.train_length, generator) for _ in configs]
        batch = tuple(torch.stack([getattr(b, name) for b in batches]) for name in ("inputs", "targets", "mask"))
        for _ in range(3 if trainer.graphs is not None or config.compile else 1):  # warm-up, capture
            trainer.step(batch)
        timer = torch_benchmark.Timer("trainer.step(batch)", globals={"trainer": trainer, "batch": batch},
                                      num_threads=threads)
        timings = [timer.timeit(1).median for _ in range(REPEATS)]
    median = statistics.median(timings)
    calibration = cost.for_device(device, threads)
    model = cost.run_seconds(config, task, calibration, pack)
    # the model's step at length N against the measured one: this machine's speed now
    scale = median / calibration.step_seconds(config, task, config.train_length, pack)
    step_s = model["step_s"] * pack * scale
    eval_s = model["eval_s"] * pack * scale
    spread = (min(timings) / median, max(timings) / median)  # this machine's steps vary, even now
    return {"train_s": step_s * config.steps, "eval_s": eval_s, "step_s": step_s, "threads": threads,
            "train_range_s": likely_range(step_s * config.steps, device, spread),
            "eval_range_s": likely_range(eval_s, device, spread)}


def training_memory_bytes(config, task, pack: int = 1) -> int:
    """About what a training step of `pack` runs holds at the longest training length: every layer
    keeps about twice the forward working set of one example (`bytes_per_example`) per example for
    the backward pass, plus weights, gradients and Adam's state."""
    from che.runners.evaluate import bytes_per_example
    from che.runners.train import train_tokens

    activations = 2 * config.model.n_layers * config.batch_size * bytes_per_example(
        config.model_for(task), train_tokens(config, task))
    weights = 4 * 4 * 12 * config.model.n_layers * config.model.d_model ** 2
    return pack * (activations + weights)


def evaluation_memory_bytes(config, task, pack: int = 1) -> int:
    """What evaluating one example at the longest test length holds (`bytes_per_example`), for a
    pack: evaluation cuts its batches into chunks down to a single example, and no further."""
    from che.runners.evaluate import bytes_per_example

    tokens = task.input_length(config.max_test_length) + task.output_length(config.max_test_length)
    return pack * bytes_per_example(config.model_for(task), tokens)


def available_memory_bytes(device) -> int:
    """Free memory where the run will train: the GPU's, or the machine's (psutil)."""
    import psutil
    import torch

    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    return psutil.virtual_memory().available


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
