"""What a sweep would do, before it does it (`che sweep --dry-run`): each run's state on disk, and
the estimated cost and wall time of those left (`che.runners.cost`), per executor."""

from __future__ import annotations

from pathlib import Path

from che.config import RunConfig
from che.runners.sweep import run_state


def plan(configs: list[RunConfig], results: Path) -> list[dict]:
    """One row per run: task, pe, seed, lr, run id and its state on disk."""
    return [{"task": c.task, "pe": c.pe, "seed": c.seed, "lr": c.lr, "run_id": c.run_id,
             "state": run_state(results, c)} for c in configs]


def expected_wall(seconds: list[float], jobs: int) -> float:
    """Wall time of runs of these lengths on `jobs` parallel workers, longest first (a greedy
    schedule, which is what a queue with free workers picking the next run does)."""
    if not seconds:
        return 0.0
    loads = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)
