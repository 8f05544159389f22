"""`che bench`: training-step time, evaluation throughput and peak memory per PE, measured side
by side in one process.

For each configuration (a PE; for DAPE also its literal implementation; with `packs`, also packs
of K runs; with `modes`, also CUDA-graph-captured or torch.compile'd steps):
- step time: one training step (forward, backward, clipping, Adam) of the pack on one batch per run
  at the training length, through the same `Trainer.step` as `che run`, after warm-up (a captured
  step is captured during it); configurations are interleaved (round-robin) so that drift on the
  machine hits all of them alike, and the median over repeats is reported (each repeat timed with
  torch.utils.benchmark, which synchronises the GPU);
- run-steps/s: runs x steps per second (what a sweep gets done), and tokens/s: runs x batch x
  model tokens per second;
- evaluation throughput at the test length (sequences/s, one run), through the same chunked
  evaluation path as `che run`, with its peak memory: on CUDA the allocator's peak, on Linux CPUs
  the process's peak resident memory above what it held before (VmHWM after resetting it);
- the sampling time of a training batch, as a share of the step.
Ratios are against `none` (every PE) and against the wrapped PE (DAPE), in the same pack and mode.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass

import torch
from torch.utils import benchmark as torch_benchmark

from che.config import make_config
from che.models.positional import parse_pe
from che.registry import TASKS
from che.results import describe_device, versions
from che.runners.evaluate import chunk_size, set_eval_mode
from che.runners.train import Trainer

DEFAULT_PES = ["none", "sin-cos", "rope", "relative", "alibi", "kerple-log", "kerple-power", "t5", "sandwich",
               "fire", "dape-alibi", "dape-kerple-log", "dape-fire", "dape2-kerple-log"]
MODES = ("eager", "graphs", "compile")


@dataclass
class Record:
    pe: str
    impl: str
    mode: str
    pack: int
    task: str
    tokens: int
    batch_size: int
    step_ms: float
    step_ms_spread: list
    run_steps_per_s: float
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


def _trainer(task, pe: str, impl: str, mode: str, pack: int, batch_size: int, device, overrides: dict):
    configs = [make_config(task.name, pe, "cpu", seed=seed, batch_size=batch_size, dape_impl=impl,
                           cuda_graphs=mode == "graphs", compile=mode == "compile", **overrides)
               for seed in range(pack)]
    return Trainer(configs, task, device)


def benchmark(pes: list[str], task_name: str = "reverse_string", length: int = 40, batch_size: int = 128,
              eval_length: int = 500, eval_batch: int = 16, repeats: int = 5, device: str = "cpu",
              literal: bool = True, memory_gb: float = 4.0, overrides: dict | None = None,
              packs: tuple[int, ...] = (1,), modes: tuple[str, ...] = ("eager",), log=print) -> dict:
    task = TASKS.get(task_name)
    device = torch.device(device)
    overrides = dict(overrides or {})
    keys = []
    for pe in dict.fromkeys(["none", *pes]):
        impls = ["fast"] + (["literal"] if literal and parse_pe(pe, None).pe.has("dape") else [])
        keys += [(pe, impl, mode, pack) for impl in impls for pack in packs for mode in modes]

    generator = torch.Generator().manual_seed(0)
    one = task.sample(batch_size, length, generator)
    tokens = one.inputs.shape[1] + one.targets.shape[1]
    sampling = torch_benchmark.Timer("task.sample(b, n, g)", globals={
        "task": task, "b": batch_size, "n": length, "g": generator}, num_threads=torch.get_num_threads()).timeit(10)
    sampling_ms = sampling.median * 1000

    def batch_of(pack):
        return tuple(torch.stack([getattr(one, name)] * pack) for name in ("inputs", "targets", "mask"))

    log(f"timing {len(keys)} configurations on {device} with {torch.get_num_threads()} torch thread(s), "
        f"{repeats} repeats each")
    built = {key: _trainer(task, *key, batch_size, device, overrides) for key in keys}
    for key in keys:  # warm-up: the first steps of each shape (eager, then captured or compiled)
        for _ in range(3 if key[2] != "eager" else 1):
            built[key].step(batch_of(key[3]))
    times = {key: [] for key in keys}
    for r in range(repeats):
        for key in keys:
            trainer, batch = built[key], batch_of(key[3])
            timer = torch_benchmark.Timer("trainer.step(batch)", globals={"trainer": trainer, "batch": batch},
                                                  num_threads=torch.get_num_threads())
            times[key].append(timer.timeit(1).median * 1000)
        log(f"repeat {r + 1}/{repeats} done")

    eval_batch_obj = task.sample(eval_batch, eval_length, generator)
    eval_inputs = eval_batch_obj.inputs.to(device)
    eval_out = task.output_length(eval_length)
    eval_tokens = eval_inputs.shape[1] + eval_out
    records, evaluated = [], {}
    for key in keys:
        pe, impl, mode, pack = key
        model = built[key].model
        if (pe, impl) not in evaluated and pack == 1:
            evaluated[(pe, impl)] = _evaluation_speed(model, eval_inputs, eval_out, eval_batch, memory_gb,
                                                      device, log, f"{pe} ({impl})")
        del built[key], model
        if device.type == "cuda":
            torch.cuda.empty_cache()
        seq_per_s, peak = evaluated.get((pe, impl), (None, None))
        median = statistics.median(times[key])
        records.append(Record(
            pe=pe, impl=impl, mode=mode, pack=pack, task=task_name, tokens=tokens, batch_size=batch_size,
            step_ms=round(median, 3), step_ms_spread=[round(min(times[key]), 3), round(max(times[key]), 3)],
            run_steps_per_s=round(pack * 1000 / median, 2),
            tokens_per_s=round(pack * batch_size * tokens / median * 1000, 1), sampling_ms=round(sampling_ms, 3),
            eval_tokens=eval_tokens, eval_seq_per_s=None if seq_per_s is None else round(seq_per_s, 3),
            peak_mem_mb=None if peak is None else round(peak, 1)))
        log(f"{pe} ({impl}, {mode}, pack {pack}): {median:.2f} ms/step, {pack * 1000 / median:.1f} run-steps/s")

    step_of = {(r.pe, r.impl, r.mode, r.pack): r.step_ms for r in records}
    for r in records:
        r.step_vs_none = round(r.step_ms / step_of[("none", "fast", r.mode, r.pack)], 3)
        name = parse_pe(r.pe, None).pe
        dape = next((m.name for m in name.prefixes if m.name in ("dape", "dape2")), None)
        if dape:
            base = name.without(dape)
            r.base = base
            if (base, "fast", r.mode, r.pack) in step_of:
                r.step_vs_base = round(r.step_ms / step_of[(base, "fast", r.mode, r.pack)], 3)
    return {
        "machine": {"device": describe_device(device), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
                    **{k: v for k, v in versions().items() if k in ("torch", "che", "python")}},
        "settings": {"task": task_name, "length": length, "batch_size": batch_size, "eval_length": eval_length,
                     "eval_batch": eval_batch, "repeats": repeats, "dtype": overrides.get("precision", "tf32"),
                     "packs": list(packs),
                     "modes": list(modes), "eval_memory_gb": memory_gb, **overrides},
        "records": [asdict(r) for r in records],
    }


def run_benchmark(pes: str | None = None, task: str = "reverse_string", length: int = 40, batch_size: int = 128,
                  eval_length: int = 500, eval_batch: int = 16, repeats: int = 5, device: str = "auto",
                  literal: bool = True, pack: int | None = None, cuda_graphs: bool = False, compile: bool = False,
                  settings: dict | None = None, log=print) -> dict:
    """`che bench`: its options checked (one-line errors), then `benchmark`. `settings`: d_model,
    dape_width, attention, precision, eval_memory_gb (the model's and the run's, as `--set`)."""
    from che.errors import CheError, check_range
    from che.models.positional import canonical_pe_name
    from che.runners.run import pick_device

    TASKS.get(task)
    names = [canonical_pe_name(p.strip()) for p in pes.split(",")] if pes else DEFAULT_PES
    check_range("--length", length, 1, 10_000)
    check_range("--eval-length", eval_length, 1, 10_000)
    check_range("--batch-size", batch_size, 1, 1_000_000)
    check_range("--eval-batch", eval_batch, 1, 1_000_000)
    check_range("--repeats", repeats, 1, 1000)
    if pack is not None:
        check_range("--pack", pack, 1, 1024)
    settings = dict(settings or {})
    unknown = set(settings) - set(BENCH_SETTINGS)
    if unknown:
        raise CheError(f"che bench takes the settings {', '.join(BENCH_SETTINGS)}, not {', '.join(sorted(unknown))}")
    torch_device = pick_device(device)
    if cuda_graphs and torch_device.type != "cuda":
        raise CheError("--cuda-graphs needs a CUDA device (choices here: leave it out)")
    modes = ("eager",) + (("graphs",) if cuda_graphs else ()) + (("compile",) if compile else ())
    packs = (1,) if pack in (None, 1) else (1, pack)
    memory_gb = settings.pop("eval_memory_gb", 4.0)
    overrides = {"attention": "auto", "precision": "tf32"} | settings
    return benchmark(names, task, length, batch_size, eval_length, eval_batch, repeats, str(torch_device), literal,
                     memory_gb, overrides, packs=packs, modes=modes, log=log)


# What `che bench --set` may change (the rest of a benchmark's model is the CHE model's).
BENCH_SETTINGS = ("d_model", "dape_width", "attention", "precision", "eval_memory_gb")


def _evaluation_speed(model, inputs, output_length, batch, memory_gb, device, log, label):
    """(sequences/s, peak MB) of one run's model on the evaluation batch, or (None, None)."""
    set_eval_mode(model, False)
    step_size = chunk_size(model.config, inputs.shape[1] + output_length, batch, memory_gb, device.type)
    try:
        with torch.no_grad(), PeakMemory(device) as memory:
            t0 = time.perf_counter()
            for i in range(0, batch, step_size):
                model(inputs[i:i + step_size].expand(model.pack, -1, -1), output_length)
            _sync(device)
            seq_per_s = batch / (time.perf_counter() - t0)
        return seq_per_s, memory.mb
    except torch.OutOfMemoryError:
        log(f"{label}: out of memory at evaluation")
        return None, None


def summary_lines(report: dict) -> list[str]:
    """The ratios the project tracks, stated plainly."""
    records = report["records"]
    lines = []
    solo = [r for r in records if r["pack"] == 1 and r["mode"] == "eager"]
    step = {(r["pe"], r["impl"]): r["step_ms"] for r in solo}
    none = step[("none", "fast")]
    biases = [r for r in solo if r["impl"] == "fast" and r["pe"] != "none" and not r["base"]]
    if biases:
        worst = max(biases, key=lambda r: r["step_vs_none"])
        lines.append(f"PEs vs none: at most {worst['step_vs_none']:.2f}x ({worst['pe']})")
    for r in solo:
        if r["base"] and r["impl"] == "fast" and r["step_vs_base"] is not None:
            text = f"{r['pe']}: {r['step_vs_base']:.2f}x the step of {r['base']}"
            if (r["pe"], "literal") in step:
                text += f"; {step[(r['pe'], 'literal')] / r['step_ms']:.2f}x faster than the literal formulation"
            lines.append(text)
    baseline = {r["pe"]: r["run_steps_per_s"] for r in solo if r["impl"] == "fast"}
    for r in records:
        if (r["pack"] > 1 or r["mode"] != "eager") and r["impl"] == "fast" and r["pe"] in baseline:
            lines.append(f"{r['pe']}, pack {r['pack']}, {r['mode']}: {r['run_steps_per_s']:,.1f} run-steps/s, "
                         f"{r['run_steps_per_s'] / baseline[r['pe']]:.1f}x one eager run")
    sampling = records[0]["sampling_ms"]
    lines.append(f"sampling a batch: {sampling:.2f} ms = {100 * sampling / none:.1f}% of the none step")
    return lines
