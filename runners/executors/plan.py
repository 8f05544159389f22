"""How a sweep uses this machine: its device, how many runs at once, and torch threads and GPUs per run."""

from __future__ import annotations

import os
from dataclasses import dataclass

from che.threads import usable_cores, chosen_threads


def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as CUDA_VISIBLE_DEVICES entries for one worker each."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


@dataclass
class Plan:
    """How a sweep uses the machine: device, parallel runs, torch threads per run, GPUs per slot."""

    device: str            # "cpu" or "cuda"
    jobs: int
    threads: int
    gpus: list[str]        # local CUDA: the device of each slot; empty otherwise
    gpu_share: float = 0   # Ray: the fraction of a GPU each run declares

    def describe(self) -> str:
        where = self.device
        if self.gpus:
            where = f"cuda ({len(set(self.gpus))} GPU(s))"
        elif self.gpu_share:
            where = f"cuda ({self.gpu_share:g} GPU per run)"
        return f"{self.jobs} parallel run(s) x {self.threads} torch thread(s) on {where}"


def local_plan(device: str, jobs: int | None, jobs_per_gpu: int, pending: int) -> Plan:
    """Local defaults: with CUDA, jobs_per_gpu runs per GPU, each worker pinned to one GPU; on a
    CPU, one run per core. Never more workers than runs; threads = cores // jobs, at least 1, so
    that workers don't oversubscribe the cores (OpenMP threads that spin against each other make
    training many times slower), unless the user chose a count per run (`che --threads N sweep`)."""
    from che.runners.run import pick_device

    resolved = pick_device(device).type
    cores = usable_cores()
    gpus = visible_gpus() if resolved == "cuda" else []
    capacity = len(gpus) * jobs_per_gpu if gpus else cores
    count = max(1, min(jobs or capacity, pending))
    threads = chosen_threads() or max(1, cores // count)
    slots = [gpus[i % len(gpus)] for i in range(count)] if gpus else []
    return Plan(resolved, count, threads, slots)
