"""What a sweep would do, before it does it (`che sweep --dry-run`): each run's state on disk, and
the estimated cost and wall time of those left (`che.runners.cost`), per executor."""

from __future__ import annotations

from dataclasses import dataclass
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


@dataclass
class DryRun:
    """What `che sweep --dry-run` says: a row per run (task, pe, seed, lr, run id, state), the count
    of each state, and the estimate of the runs left, in lines."""

    rows: list[dict]
    counts: dict[str, int]
    estimate: list[str]


def dry_run(configs: list[RunConfig], results: Path, executor: str, *, device: str = "auto", jobs: int | None = None,
            jobs_per_gpu: int = 1, pack: int = 1, slurm=None, estimate: bool = True) -> DryRun:
    """The runs with their state, and the estimated cost of those left (`che.runners.cost`: counted
    work x a calibration of the device; nothing is trained to estimate it, and for SLURM jobs nothing
    is measured on the machine that submits them)."""
    rows = plan(configs, results)
    counts = {state: sum(r["state"] == state for r in rows) for state in dict.fromkeys(r["state"] for r in rows)}
    todo = [c for c, r in zip(configs, rows) if r["state"] not in ("finished", "running elsewhere")]
    if not todo:
        return DryRun(rows, counts, ["nothing to run"])
    if not estimate:
        return DryRun(rows, counts, [])
    return DryRun(rows, counts, _estimate(todo, executor, device, jobs, jobs_per_gpu, pack, slurm))


def _estimate(todo, executor, device, jobs, jobs_per_gpu, pack, slurm) -> list[str]:
    import torch

    from che.runners import cost
    from che.runners.estimate import format_duration
    from che.runners.executors import local_plan
    from che.runners.executors.slurm import SLURM_MAX_IN_FLIGHT
    from che.runners.packs import make_packs

    packs = make_packs(todo, pack)
    if slurm is None:  # where the runs will go: this machine's device, measured once and cached
        machine = local_plan(device, jobs, jobs_per_gpu, len(packs))
        calibration = cost.for_device(torch.device(machine.device), machine.threads)
        where = f"{machine.device} ({calibration.device}, {calibration.source})"
    else:  # the nodes' devices: a calibration shipped or cached, never a measurement on a login node
        calibration = cost.any_gpu_calibration() if slurm.gpus else cost.cpu_calibration(slurm.cpus)
        cost.require(calibration, "the jobs' GPUs" if slurm.gpus else "a CPU")
        where = f"nodes like {calibration.device} ({calibration.source})"
    seconds = cost.grid_seconds(todo, calibration, pack)
    by_run = {c.run_id: s for c, s in zip(todo, seconds)}
    per_pack = [sum(by_run[c.run_id] for c in p) for p in packs]
    lines = [f"estimated cost of the {len(todo)} runs left: {format_duration(sum(seconds))} of device time on {where}"]
    if executor == "local":
        lines.append(f"about {format_duration(expected_wall(per_pack, machine.jobs))} here with {machine.describe()}")
    elif executor == "slurm":
        at_once = min(jobs or SLURM_MAX_IN_FLIGHT, slurm.array_parallelism, len(packs))
        longest = max(per_pack)
        lines.append(f"on SLURM: {len(packs)} job(s), the longest about {format_duration(longest)} "
                     f"(slurm.time {slurm.time_min} min); about "
                     f"{format_duration(expected_wall(per_pack, at_once))} if {at_once} run at once")
        if longest > 60 * slurm.time_min:
            lines.append("a job out of time saves a checkpoint and the next sweep resumes its runs: raise "
                         "slurm.time, or run the sweep again until it is done")
    elif jobs:
        lines.append(f"about {format_duration(expected_wall(per_pack, jobs))} with {jobs} parallel packs of this "
                     f"speed on the Ray cluster")
    else:
        lines.append("on Ray: divide by the number of runs the cluster holds at once (--jobs to say)")
    return lines
