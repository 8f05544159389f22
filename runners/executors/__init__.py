"""Where the runs of a sweep execute: a local pool of worker processes, a Ray cluster, or SLURM jobs.

All run `run_pack` (`worker.py`), the worker entry (a pack of configs -> `execute_pack` -> result files), and
offer the small interface that `che.runners.sweep.run_sweep` drives:

    slots                          how many packs to keep in flight
    submit(configs) -> key         start a pack (one run or several that train together)
    poll(timeout) -> [(key, outcome)]   the packs that ended; outcome is run_pack's dict, or one
                                   dict for every run of the pack when its worker died
    interrupt()                    ask the running runs to save a checkpoint and stop (Ctrl-C)
    kill()                         abandon them (a second Ctrl-C)
    close()
    describe() -> str              one line about where the runs go

One module each: `local.py` (a pool of worker processes), `ray.py`, `slurm.py`. Nothing here
imports torch at module level: a worker sets its thread counts (and the GPU it may
see) in its environment before torch is loaded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from che.errors import CheError
from che.runners.executors.plan import Plan, local_plan, visible_gpus  # noqa: F401

EXECUTORS = ("local", "ray", "slurm")


def make_executor(kind: str, results: Path, plugins: list[str], device: str, jobs: int | None,
                  jobs_per_gpu: int, ray_address: str | None = None, slurm=None,
                  force: bool = False):
    """A factory `pending -> executor` for `run_sweep` (nothing starts unless runs are left).

    Workers get the results folder as an absolute path (a Ray worker runs in a folder of its own)
    and `plugins` as specs that another process can load (`che.registry.loaded_plugins()`).
    `slurm` says what each SLURM job asks for (default: `slurm_options(device)`).
    """
    results = Path(results).absolute()
    if kind not in EXECUTORS:
        raise CheError(f"unknown executor '{kind}' (choices: {', '.join(EXECUTORS)})")
    if kind == "ray":
        from che.runners.executors.ray import RayExecutor, import_ray

        import_ray()  # fail before anything else happens
        return lambda pending: RayExecutor(results, plugins, device, jobs, jobs_per_gpu, ray_address, pending, force)
    if kind == "slurm":
        from che.runners.executors.slurm import SlurmExecutor, import_submitit, slurm_options

        import_submitit()
        options = slurm or slurm_options(device)
        if not options.local and shutil.which("sbatch") is None:
            raise CheError("the slurm executor submits jobs with sbatch, which this machine does not have (run "
                           "the sweep on the cluster's login node, or --set slurm.local=true to run the jobs here)")
        return lambda pending: SlurmExecutor(results, plugins, device, jobs, options, pending, force)
    from che.runners.executors.local import LocalExecutor
    from che.runners.run import pick_device

    pick_device(device)  # an unknown or unavailable device fails before anything runs
    return lambda pending: LocalExecutor(local_plan(device, jobs, jobs_per_gpu, pending), results, plugins, force)
