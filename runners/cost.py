"""What a run costs, from arithmetic and a per-device calibration: answers in milliseconds.

A run's cost is counted, not measured: the floating-point operations of each training step
(forward and backward: 3x the forward) at each length of the uniform schedule 1..N, and of the
evaluation (forward passes at every length 1..M), split into the transformer's dense work (linear
maps and attention products) and DAPE's MLP over every (query, key) pair, which runs at another
rate (inner dimension H). A device turns them into seconds through three numbers, its
`Calibration`: a fixed cost per step (launches, Python, bookkeeping), and its rates on the two
kinds of work:

    seconds per step of a pack of K runs = overhead + K x (dense / dense_rate + dape / dape_rate)

A calibration is measured once per device and thread count (three small probe steps, a few
seconds on a CPU, never a paper-size model) and cached in `~/.cache/che/calibrations.json`;
calibrations of devices this machine does not have (the GPU of a cluster's nodes) ship with che
(`che/data/calibrations.json`, each saying where its numbers come from). `che sweep --dry-run`
uses them only, so it answers in seconds and trains nothing on a login node.
"""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import math
import os
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path

from che.errors import CheError

VERSION = 1                      # of the cost model: calibrations of another version are measured again
SHIPPED = importlib.resources.files("che") / "data" / "calibrations.json"  # package data: found in a wheel too
FORWARD_SHARE = 1 / 3            # a forward pass is about a third of a training step's work


def cache_file() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "che" / "calibrations.json"


# -- counting -------------------------------------------------------------------------------------
def tokens(task, length: int) -> int:
    return task.input_length(length) + task.output_length(length)


def forward_work(config, task, length: int, batch: int) -> tuple[float, float, float]:
    """(dense FLOPs, attention score entries, the PE's FLOPs) of one run's forward pass over `batch`
    examples at length N = `length`: the linear maps (q, k, v, out, the FFN) and the two attention
    products; the [H, T, T] score entries of every layer (softmax, bias, masks: work per entry,
    whatever the head width, which dominates at small widths); and what the PE computes at every
    (query, key) pair, as each part of it declares (`flops_per_pair`: DAPE's MLP)."""
    from che.models.positional import parse_pe

    model = config.model
    t, d, layers, heads = tokens(task, length), model.d_model, model.n_layers, model.n_heads
    dense = layers * (2 * batch * t * d * d * (4 + 2 * model.ffn_mult) + 4 * batch * t * t * d)
    scores = layers * batch * heads * t * t
    dape = layers * batch * t * t * parse_pe(config.pe, model).flops_per_pair()  # as each part declares
    return float(dense), float(scores), float(dape)


def train_work(config, task, length: int) -> tuple[float, float, float]:
    return tuple(value / FORWARD_SHARE for value in forward_work(config, task, length, config.batch_size))


# -- devices --------------------------------------------------------------------------------------
@dataclass
class Calibration:
    device: str                  # as results record it (`describe_device`), without the thread count
    threads: int                 # torch threads of the measurement (CPUs; 0 on a GPU)
    overhead_s: float            # fixed seconds per training step, whatever its size
    dense_rate: float            # FLOP/s on the transformer's dense work
    score_rate: float            # attention score entries per second
    dape_rate: float             # FLOP/s on DAPE's MLP
    source: str                  # "measured here on <date>", or where shipped numbers come from
    version: int = VERSION

    def seconds(self, work: tuple[float, float, float]) -> float:
        dense, scores, dape = work
        return dense / self.dense_rate + scores / self.score_rate + dape / self.dape_rate

    def step_seconds(self, config, task, length: int, pack: int = 1) -> float:
        return self.overhead_s + pack * self.seconds(train_work(config, task, length))


def _key(device: str, threads: int) -> str:
    return f"{device} | {threads} threads | cost model {VERSION}"


def _read(path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def known_calibrations() -> dict[str, Calibration]:
    """Shipped calibrations, then this machine's cached ones (which win)."""
    found = {}
    for path in (SHIPPED, cache_file()):
        for key, value in _read(path).items():
            try:
                calibration = Calibration(**value)
            except TypeError:
                continue
            if calibration.version == VERSION:
                found[key] = calibration
    return found


def lookup(device: str, threads: int) -> Calibration | None:
    """The calibration of this device at this thread count; on a GPU, a shipped one whose device
    name starts the same way ('cuda: NVIDIA H200' for 'cuda: NVIDIA H200 NVL')."""
    known = known_calibrations()
    exact = known.get(_key(device, threads))
    if exact is not None:
        return exact
    if device.startswith("cuda"):
        return next((c for c in known.values() if device.startswith(c.device) or c.device.startswith(device)), None)
    return None


def cpu_calibration(threads: int) -> Calibration | None:
    """This machine's CPU at `threads` threads if it was measured, else a shipped CPU calibration
    (for jobs on CPUs this machine cannot measure)."""
    import torch

    from che.results import describe_device

    found = lookup(describe_device(torch.device("cpu")).split(", ")[0], threads)
    if found is not None:
        return found
    cpus = [c for c in known_calibrations().values() if c.device.startswith("cpu")]
    return min(cpus, key=lambda c: abs(c.threads - threads), default=None)


def any_gpu_calibration() -> Calibration | None:
    """A shipped or cached GPU calibration (for jobs on GPUs this machine does not have)."""
    return next((c for c in known_calibrations().values() if c.device.startswith("cuda")), None)


def calibrate(device, threads: int | None = None, save: bool = True) -> Calibration:
    """Measure this device: four probe steps of one run on reverse_string, each the median of a few
    timed steps after warm-up, with `threads` torch threads (default: torch's), and solve for the
    overhead and the three rates (non-negative least squares in relative error). The probes differ
    in what dominates them: nothing (a tiny step), dense work, score entries (long and narrow), and
    DAPE. On a GPU they are larger, for the arithmetic to show behind the launches."""
    import numpy as np
    import scipy.optimize
    import torch
    from torch.utils import benchmark as torch_benchmark

    from che.config import make_config
    from che.registry import TASKS
    from che.results import describe_device
    from che.runners.train import Trainer

    threads = threads or torch.get_num_threads()
    task = TASKS.get("reverse_string")
    gpu = device.type == "cuda"
    if gpu:
        probes = [("none", dict(batch_size=8, d_model=64), 2), ("none", dict(batch_size=128, d_model=256), 40),
                  ("none", dict(batch_size=128, d_model=64), 40), ("dape-alibi", dict(batch_size=128, d_model=256), 40)]
    else:
        probes = [("none", dict(batch_size=8), 2), ("none", dict(batch_size=32), 20), ("none", dict(batch_size=8), 60),
                  ("dape-alibi", dict(batch_size=32), 20)]
    rows, seconds = [], []
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.random.fork_rng(devices=[device] if gpu else []):
            for pe, settings, length in probes:
                config = make_config("reverse_string", pe, "cpu", train_length=length, max_test_length=length + 1, **settings)
                trainer = Trainer([config], task, device)
                sample = task.sample(config.batch_size, length, torch.Generator().manual_seed(0))
                batch = tuple(getattr(sample, field)[None] for field in ("inputs", "targets", "mask"))
                for _ in range(3 if gpu else 1):
                    trainer.step(batch)
                timer = torch_benchmark.Timer("trainer.step(batch)", globals={"trainer": trainer, "batch": batch},
                                              num_threads=threads)
                seconds.append(statistics.median(timer.timeit(1).median for _ in range(3)))
                rows.append([1.0, *train_work(config, task, length)])
    finally:
        torch.set_num_threads(previous)
    weights = 1 / np.array(seconds)
    solution, _ = scipy.optimize.nnls(np.array(rows) * weights[:, None], np.ones(len(seconds)))
    overhead, *inverse = solution
    # a rate the probes could not tell apart from zero cost: bound it by the fastest probe's
    inverse = [value if value > 0 else 1e-3 / max(row[i + 1] for row in rows) for i, value in enumerate(inverse)]
    name = describe_device(device) if gpu else describe_device(device).split(", ")[0]
    calibration = Calibration(device=name, threads=0 if gpu else threads, overhead_s=float(overhead),
                              dense_rate=float(1 / inverse[0]), score_rate=float(1 / inverse[1]),
                              dape_rate=float(1 / inverse[2]),
                              source=f"measured on this machine on {dt.date.today().isoformat()}")
    if save:
        _save(calibration)
    return calibration


def _save(calibration: Calibration) -> None:
    path = cache_file()
    data = _read(path)
    data[_key(calibration.device, calibration.threads)] = asdict(calibration)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError:
        pass  # a calibration that cannot be cached is measured again next time


def for_device(device, threads: int | None = None, measure: bool = True) -> Calibration | None:
    """This device's calibration: cached or shipped, else measured now (unless `measure` is False)."""
    import torch

    from che.results import describe_device

    threads = 0 if device.type == "cuda" else (threads or torch.get_num_threads())
    name = describe_device(device) if device.type == "cuda" else describe_device(device).split(", ")[0]
    found = lookup(name, threads)
    if found is None and measure:
        found = calibrate(device, threads or None)
    return found


# -- costs ----------------------------------------------------------------------------------------
def run_seconds(config, task, calibration: Calibration, pack: int = 1) -> dict:
    """{"train_s", "eval_s", "step_s"} of one run trained in a pack of `pack` (its share of the
    pack's time): the mean step over the lengths 1..N times the steps, and every test length's
    forward passes."""
    n = config.train_length
    step = sum(calibration.step_seconds(config, task, length, pack) for length in range(1, n + 1)) / n / pack
    forward_overhead = calibration.overhead_s * FORWARD_SHARE
    batches = math.ceil(config.eval_samples / config.eval_batch_size)
    evaluation = 0.0
    for length in range(1, config.max_test_length + 1):
        evaluation += batches * forward_overhead + calibration.seconds(
            forward_work(config, task, length, config.eval_samples))
    return {"train_s": step * config.steps, "eval_s": evaluation, "step_s": step}


def grid_seconds(configs, calibration: Calibration, pack: int = 1) -> list[float]:
    """Seconds of each run of a grid (training and evaluation), packed in packs of up to `pack`."""
    from che.registry import TASKS

    memo: dict = {}
    out = []
    for config in configs:
        key = (config.task, config.pack_key())
        if key not in memo:
            group = sum(c.task == config.task and c.pack_key() == key[1] for c in configs)
            cost = run_seconds(config, TASKS.get(config.task), calibration, max(1, min(pack, group)))
            memo[key] = cost["train_s"] + cost["eval_s"]
        out.append(memo[key])
    return out


def require(calibration: Calibration | None, device: str) -> Calibration:
    if calibration is None:
        raise CheError(f"no cost calibration for {device}: run `che sweep ... --dry-run` on such a machine once "
                       f"(it measures and caches one), or pass --no-estimate")
    return calibration
