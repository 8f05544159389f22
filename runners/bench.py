"""`che bench`: training-step time, evaluation throughput and peak memory per PE, measured side by
side in one process.

For each configuration (a PE, and for DAPE also its literal implementation):
- step time: forward + backward + Adam step on one batch at the training length, after warm-up;
  configurations are interleaved (round-robin) so that drift on the machine hits all of them
  alike, and the median over repeats is reported;
- tokens/s: batch x model tokens / step time;
- evaluation throughput at the test length (sequences/s), through the same chunked evaluation
  path as `che run`, with its peak memory: on CUDA the allocator's peak, on Linux CPUs the
  process's peak resident memory above what it held before (VmHWM after resetting it);
- the sampling time of a training batch, as a share of the step.
Ratios are against `none` (every PE) and against the wrapped PE (DAPE).
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from che.config import make_config
from che.models import Transformer
from che.models.positional import parse_pe
from che.registry import TASKS
from che.results import describe_device, versions
from che.runners.evaluate import chunk_size, set_eval_mode
from che.runners.train import model_config

DEFAULT_PES = ["none", "sin-cos", "rope", "relative", "alibi", "kerple-log", "kerple-power", "t5", "sandwich",
               "fire", "dape-alibi", "dape-kerple-log", "dape-fire", "dape2-kerple-log"]


@dataclass
class Record:
    pe: str
    impl: str
    task: str
    tokens: int
    batch_size: int
    step_ms: float
    step_ms_spread: list
    tokens_per_s: float
    sampling_ms: float
    eval_tokens: int
    eval_seq_per_s: float | None
    peak_mem_mb: float | None
    step_vs_none: float | None = None
    step_vs_base: float | None = None
    base: str | None = None


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PeakMemory:
    """Peak memory of a block: CUDA allocator peak, or the process's peak RSS growth (Linux)."""

    def __init__(self, device):
        self.device = device
        self.mb = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self.start = torch.cuda.memory_allocated(self.device)
        else:
            self.start = _reset_rss_peak()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mb = (torch.cuda.max_memory_allocated(self.device) - self.start) / 2**20
        elif self.start is not None:
            peak = _status_kb("VmHWM")
            self.mb = None if peak is None else (peak - self.start) / 1024
        return False


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_rss_peak() -> int | None:
    """Reset the peak-RSS counter (Linux: write 5 to clear_refs); return the current RSS in kB."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return None
    return _status_kb("VmRSS")


def _build(task, pe: str, impl: str, batch_size: int, device, overrides: dict):
    config = make_config(task.name, pe, "cpu", batch_size=batch_size, dape_impl=impl, **overrides)
    torch.manual_seed(0)
    model = Transformer(model_config(config, task)).to(device)
    return config, model, torch.optim.Adam(model.parameters(), lr=config.lr)


def benchmark(pes: list[str], task_name: str = "reverse_string", length: int = 40, batch_size: int = 128,
              eval_length: int = 500, eval_batch: int = 16, repeats: int = 5, device: str = "cpu",
              literal: bool = True, memory_gb: float = 4.0, overrides: dict | None = None,
              log=print) -> dict:
    task = TASKS.get(task_name)
    device = torch.device(device)
    overrides = dict(overrides or {})
    configs = []
    for pe in dict.fromkeys(["none", *pes]):
        configs.append((pe, "fast"))
        if literal and parse_pe(pe, None).dape == "dape":
            configs.append((pe, "literal"))

    generator = torch.Generator().manual_seed(0)
    batch = task.sample(batch_size, length, generator)
    inputs, targets = batch.inputs.to(device), batch.targets.to(device)
    tokens = inputs.shape[1] + targets.shape[1]
    start = time.perf_counter()
    for _ in range(10):
        task.sample(batch_size, length, generator)
    sampling_ms = (time.perf_counter() - start) / 10 * 1000

    built = {key: _build(task, key[0], key[1], batch_size, device, overrides) for key in configs}

    def step(model, optimizer):
        logits = model(inputs, targets.shape[1])
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    times = {key: [] for key in configs}
    for key in configs:  # warm-up
        _, model, optimizer = built[key]
        model.train()
        step(model, optimizer)
    for r in range(repeats):
        for key in configs:
            _, model, optimizer = built[key]
            _sync(device)
            t0 = time.perf_counter()
            step(model, optimizer)
            _sync(device)
            times[key].append((time.perf_counter() - t0) * 1000)
        log(f"repeat {r + 1}/{repeats} done")

    eval_batch_obj = task.sample(eval_batch, eval_length, generator)
    eval_inputs = eval_batch_obj.inputs.to(device)
    eval_out = task.output_length(eval_length)
    eval_tokens = eval_inputs.shape[1] + eval_out
    records = []
    for key in configs:
        config, model, _ = built[key]
        set_eval_mode(model, False)
        step_size = chunk_size(model.config, eval_tokens, eval_batch, memory_gb, device.type)
        seq_per_s = peak = None
        try:
            with torch.no_grad(), PeakMemory(device) as memory:
                t0 = time.perf_counter()
                for i in range(0, eval_batch, step_size):
                    model(eval_inputs[i:i + step_size], eval_out)
                _sync(device)
                seq_per_s = eval_batch / (time.perf_counter() - t0)
            peak = memory.mb
        except torch.OutOfMemoryError:
            log(f"{key[0]} ({key[1]}): out of memory at evaluation")
        del built[key]
        if device.type == "cuda":
            torch.cuda.empty_cache()
        median = statistics.median(times[key])
        records.append(Record(
            pe=key[0], impl=key[1], task=task_name, tokens=tokens, batch_size=batch_size,
            step_ms=round(median, 2), step_ms_spread=[round(min(times[key]), 2), round(max(times[key]), 2)],
            tokens_per_s=round(batch_size * tokens / median * 1000, 1), sampling_ms=round(sampling_ms, 3),
            eval_tokens=eval_tokens, eval_seq_per_s=None if seq_per_s is None else round(seq_per_s, 3),
            peak_mem_mb=None if peak is None else round(peak, 1)))
        log(f"{key[0]} ({key[1]}): {median:.1f} ms/step, eval {seq_per_s or float('nan'):.2f} seq/s")

    step_of = {(r.pe, r.impl): r.step_ms for r in records}
    for r in records:
        r.step_vs_none = round(r.step_ms / step_of[("none", "fast")], 3)
        build = parse_pe(r.pe, None)
        if build.dape:
            base = build.name.split("-", 1)[1]
            r.base = base
            if (base, "fast") in step_of:
                r.step_vs_base = round(r.step_ms / step_of[(base, "fast")], 3)
    return {
        "machine": {"device": describe_device(device), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    **{k: v for k, v in versions().items() if k in ("torch", "che", "python")}},
        "settings": {"task": task_name, "length": length, "batch_size": batch_size, "eval_length": eval_length,
                     "eval_batch": eval_batch, "repeats": repeats, "dtype": "float32",
                     "eval_memory_gb": memory_gb, **overrides},
        "records": [asdict(r) for r in records],
    }


def summary_lines(report: dict) -> list[str]:
    """The ratios the project tracks, stated plainly."""
    records = report["records"]
    lines = []
    step = {(r["pe"], r["impl"]): r["step_ms"] for r in records}
    none = step[("none", "fast")]
    biases = [r for r in records if r["impl"] == "fast" and r["pe"] != "none" and not r["base"]]
    if biases:
        worst = max(biases, key=lambda r: r["step_vs_none"])
        lines.append(f"PEs vs none: at most {worst['step_vs_none']:.2f}x ({worst['pe']})")
    for r in records:
        if r["base"] and r["impl"] == "fast" and r["step_vs_base"] is not None:
            text = f"{r['pe']}: {r['step_vs_base']:.2f}x the step of {r['base']}"
            if (r["pe"], "literal") in step:
                text += f"; {step[(r['pe'], 'literal')] / r['step_ms']:.2f}x faster than the literal formulation"
            lines.append(text)
    sampling = records[0]["sampling_ms"]
    lines.append(f"sampling a batch: {sampling:.2f} ms = {100 * sampling / none:.1f}% of the none step")
    return lines
