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
    """The cost of the runs left, in the packs that would be submitted, on the device they would use."""
    import torch

    from che.runners import cost
    from che.runners.estimate import format_duration
    from che.runners.executors import local_plan
    from che.runners.executors.slurm import SLURM_MAX_IN_FLIGHT
    from che.runners.packs import make_packs

    packs = make_packs(todo, pack)

    def costs(calibration) -> tuple[float, list[float]]:
        """(seconds of all the runs, seconds of each pack)."""
        seconds = cost.grid_seconds(todo, calibration, pack)
        by_run = {c.run_id: s for c, s in zip(todo, seconds)}
        return sum(seconds), [sum(by_run[c.run_id] for c in p) for p in packs]

    head = f"estimated cost of the {len(todo)} runs left:"
    if executor == "local":  # this machine's device, measured once and cached
        machine = local_plan(device, jobs, jobs_per_gpu, len(packs))
        calibration = cost.for_device(torch.device(machine.device), machine.threads)
        total, per_pack = costs(calibration)
        return [f"{head} {format_duration(total)} of device time on {machine.device} ({calibration.device}, "
                f"{calibration.source})",
                f"about {format_duration(expected_wall(per_pack, machine.jobs))} here with {machine.describe()}"]
    if executor == "slurm":  # the nodes' device: a calibration shipped or cached, never measured on a login node
        calibration = cost.any_gpu_calibration() if slurm.gpus else cost.cpu_calibration(slurm.cpus)
        cost.require(calibration, "the jobs' GPUs" if slurm.gpus else "a CPU")
        total, per_pack = costs(calibration)
        at_once = min(jobs or SLURM_MAX_IN_FLIGHT, slurm.array_parallelism, len(packs))
        longest = max(per_pack)
        low, high = min(map(len, packs)), max(map(len, packs))
        lines = [f"{head} {format_duration(total)} of device time on nodes like {calibration.device} "
                 f"({calibration.source})",
                 f"on SLURM: {len(packs)} job(s) of {low if low == high else f'{low}-{high}'} run(s), each asking "
                 f"{slurm.describe()}; the longest about {format_duration(longest)}; about "
                 f"{format_duration(expected_wall(per_pack, at_once))} if {at_once} run at once"]
        if longest > 60 * slurm.time_min:
            lines.append("a job out of time saves a checkpoint and the next sweep resumes its runs: raise "
                         "slurm.time, or run the sweep again until it is done")
        return lines
    # Ray: the cluster's devices, which a dry run does not ask it about. GPUs (--device cuda, or auto
    # on a cluster that has them): this machine's if it has one, else a shipped or cached calibration,
    # as for SLURM jobs; CPUs: this machine's. With --device auto and no GPU here, both.
    here = torch.cuda.is_available()
    kinds = ([("cuda", ", if the Ray cluster has GPUs (--device auto uses them)"), ("cpu", ", if it has none")]
             if device == "auto" and not here else [("cuda" if device == "auto" else device, "")])
    lines = []
    for kind, condition in kinds:
        if kind == "cuda" and not here:
            calibration = cost.require(cost.any_gpu_calibration(), "the Ray cluster's GPUs")
        else:
            calibration = cost.for_device(torch.device(kind), local_plan(kind, jobs, jobs_per_gpu, len(packs)).threads)
        total, per_pack = costs(calibration)
        wall = (f"; about {format_duration(expected_wall(per_pack, jobs))} with {jobs} parallel "
                f"{'runs' if pack == 1 else 'packs'} of this speed" if jobs else "")
        lines.append(f"{'or' if lines else head} {format_duration(total)} of device time on "
                     f"{'GPUs' if kind == 'cuda' else 'CPUs'} like {calibration.device} ({calibration.source})"
                     f"{condition}{wall}")
    if not jobs:
        lines.append(f"on Ray: divide by the number of {'runs' if pack == 1 else 'packs'} the cluster holds at once "
                     f"(--jobs to say)")
    return lines
