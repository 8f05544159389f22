"""Estimated cost of a run (or a pack of runs), measured on the device it will use.

Training: the pack's real training step (`Trainer.step`: eager, captured or compiled, as the run
will be) is timed at two lengths, N/4 and N, after warm-up; a power law through the two (the
exponent clipped to [0, 2]: a step costs between a constant and the square of the sequence) is
averaged over the uniform length schedule 1..N. The spread of the repeated timings gives a range.
Evaluation: one forward pass at the longest test length and at half of it give a power law in the
number of tokens, summed over all test lengths. Nothing here touches the run's own generators or
torch's global RNG, so estimating never changes a result.
"""

from __future__ import annotations

import math
import statistics

import torch
from torch.utils import benchmark as torch_benchmark

from che.runners.evaluate import eval_generators, set_eval_mode
from che.threads import usable_cores

REPEATS = 3


def _median_and_spread(stmt: str, namespace: dict) -> tuple[float, float, float]:
    times = [torch_benchmark.Timer(stmt, globals=namespace, num_threads=torch.get_num_threads()).timeit(1).median for _ in range(REPEATS)]
    return statistics.median(times), min(times), max(times)


def _power_law(t_low: float, t_high: float, x_low: float, x_high: float):
    exponent = 1.0
    if x_high > x_low and t_low > 0 and t_high > 0:
        exponent = math.log(t_high / t_low) / math.log(x_high / x_low)
    exponent = min(max(exponent, 0.0), 2.0)
    return lambda x: t_high * (x / x_high) ** exponent


def estimate_seconds(configs, task, device: torch.device, choose_threads: bool = False) -> dict:
    """{"train_s", "train_range_s": (low, high), "eval_s", "step_s", "threads"} for the pack
    `configs` (or one RunConfig). With `choose_threads` (on a CPU), the step is first timed with one
    thread and with all of them, and the faster count is kept (torch's thread count is left at it):
    small models train faster on one thread, whose ops are too small to share."""
    from che.runners.train import Trainer

    configs = [configs] if not isinstance(configs, (list, tuple)) else list(configs)
    config = configs[0]
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        trainer = Trainer(configs, task, device)
        n = config.train_length
        probes = sorted({max(1, n // 4), n})
        generator = torch.Generator().manual_seed(0)

        def tokens(length):
            return task.input_length(length) + task.output_length(length)

        if choose_threads and device.type == "cpu" and usable_cores() > 1:
            _pick_threads(trainer, task, config, generator)
        timings = {}
        for length in probes:
            batches = [task.sample(config.batch_size, length, generator) for _ in configs]
            batch = tuple(torch.stack([getattr(b, name) for b in batches]) for name in ("inputs", "targets", "mask"))
            warmup = 3 if trainer.graphs is not None or config.compile else 1
            for _ in range(warmup):
                trainer.step(batch)
            timings[length] = _median_and_spread("trainer.step(batch)", {"trainer": trainer, "batch": batch})
        low, high = probes[0], probes[-1]
        per_step = {}
        for which, index in (("median", 0), ("low", 1), ("high", 2)):
            curve = _power_law(timings[low][index], timings[high][index], tokens(low), tokens(high))
            per_step[which] = sum(curve(tokens(m)) for m in range(1, n + 1)) / n
        step_s = per_step["median"] * 1.05  # + sampling and bookkeeping between steps

        model = trainer.model
        set_eval_mode(model, config.eval_dropout)
        longest = config.max_test_length
        half = max(1, longest // 2)
        probe = min(8, config.eval_batch_size)

        def forward_time(length):  # seconds per example (for the whole pack), in a batch of `probe`
            examples = task.sample(probe, length, generator).inputs.to(device).expand(trainer.pack, -1, -1)
            namespace = {"model": model, "x": examples, "t": task.output_length(length),
                         "g": eval_generators(trainer.pack, 0, device)}
            with torch.no_grad():
                model(examples, task.output_length(length), namespace["g"])  # warm-up
                return torch_benchmark.Timer("model(x, t, g)", globals=namespace,
                                             num_threads=torch.get_num_threads()).timeit(1).median / probe

        with torch.no_grad():
            t_long, t_half = forward_time(longest), forward_time(half)
        curve = _power_law(t_half, t_long, tokens(half), tokens(longest))
        per_example = sum(curve(tokens(m)) for m in range(1, longest + 1))
        eval_s = per_example * config.eval_samples
    return {"train_s": step_s * config.steps, "eval_s": eval_s, "step_s": step_s, "threads": torch.get_num_threads(),
            "train_range_s": (per_step["low"] * config.steps, per_step["high"] * 1.05 * config.steps)}


def _pick_threads(trainer, task, config, generator) -> None:
    """Keep the faster of one thread and all usable cores for this pack's step at the longest length."""
    batches = [task.sample(config.batch_size, config.train_length, generator) for _ in range(trainer.pack)]
    batch = tuple(torch.stack([getattr(b, name) for b in batches]) for name in ("inputs", "targets", "mask"))
    seconds = {}
    for threads in (1, usable_cores()):
        torch.set_num_threads(threads)
        trainer.step(batch)
        seconds[threads] = min(torch_benchmark.Timer("trainer.step(batch)", globals={"trainer": trainer, "batch": batch},
                                                     num_threads=threads).timeit(1).median for _ in range(2))
    torch.set_num_threads(min(seconds, key=seconds.get))


def training_memory_bytes(config, task, pack: int = 1) -> int:
    """About what a training step of `pack` runs holds at the longest training length: every layer
    keeps about twice the forward working set of one example (`bytes_per_example`) per example for
    the backward pass, plus weights, gradients and Adam's state."""
    from che.runners.evaluate import bytes_per_example
    from che.runners.train import model_config, train_tokens

    activations = 2 * config.n_layers * config.batch_size * bytes_per_example(
        model_config(config, task), train_tokens(config, task))
    weights = 4 * 4 * 12 * config.n_layers * config.d_model ** 2
    return pack * (activations + weights)


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
