"""Estimated cost of a run, measured on the device it will use.

Training: a few forward+backward passes at the root-mean-square training length (step cost grows
about quadratically with length, so this length has about the mean cost). Evaluation: one example
at the longest test length and at half of it (in a small batch) give a power law in the number of tokens, summed
over all test lengths. The RNG state is left untouched, so estimating never changes a result.
"""

from __future__ import annotations

import math
import time

import torch
import torch.nn.functional as F

from che.models import Transformer
from che.runners.evaluate import set_eval_mode
from che.runners.train import model_config


def _median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def estimate_seconds(config, task, device: torch.device) -> dict:
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model = Transformer(model_config(config, task)).to(device)
        generator = torch.Generator().manual_seed(0)
        n = config.train_length
        rms_length = max(1, round(math.sqrt((n + 1) * (2 * n + 1) / 6)))
        batch = task.sample(config.batch_size, rms_length, generator)
        inputs, targets = batch.inputs.to(device), batch.targets.to(device)

        def train_step():
            model.zero_grad(set_to_none=True)
            logits = model(inputs, targets.shape[1])
            F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)).backward()

        step_s = _median_time(train_step, 2) * 1.1  # + optimiser, sampling, bookkeeping

        set_eval_mode(model, config.eval_dropout)
        longest = config.max_test_length
        half = max(1, longest // 2)

        def tokens(length):
            return task.input_length(length) + task.output_length(length)

        probe = min(8, config.eval_batch_size)

        def forward_time(length):  # seconds per example, in a batch of `probe`
            examples = task.sample(probe, length, generator).inputs.to(device)
            with torch.no_grad():
                return _median_time(lambda: model(examples, task.output_length(length)), 1) / probe

        t_long, t_half = forward_time(longest), forward_time(half)
        exponent = 1.0
        if tokens(longest) > tokens(half) and t_half > 0:
            exponent = math.log(t_long / t_half) / math.log(tokens(longest) / tokens(half))
        exponent = min(max(exponent, 1.0), 2.0)
        per_example = sum(t_long * (tokens(n) / tokens(longest)) ** exponent for n in range(1, longest + 1))
        eval_s = per_example * config.eval_samples
    return {"train_s": step_s * config.steps, "eval_s": eval_s, "step_s": step_s}


def format_duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"
