"""What `che run` (and `che.run`) and `che sweep` do before anything runs: the runs from the options
and a config or sweep file, and every check that can refuse them before anything costs time (names,
values, the task's sampler, memory, a checkpoint that needs --resume, the executor's settings); for
`che run` also its estimate and the run itself, with allocation failures said in one line."""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from che.config import RunConfig
from che.errors import CheError, echo
from che.registry import TASKS, CheWarning
from che.results import is_finished, result_path
from che.runners.estimate import (available_memory_bytes, estimate_seconds, evaluation_memory_bytes,
                                  training_memory_bytes)
from che.runners.grid import build_grid, read_spec
from che.runners.reporting import Reporter
from che.runners.run import Outcome, check_resumable, execute_pack, find_checkpoint, pick_device


@dataclass
class RunPlan:
    """One task x PE: its runs (one, or a pack of seeds x lrs), those left to train, where."""

    configs: list[RunConfig]
    todo: list[RunConfig]
    task: object
    device: torch.device
    results: Path
    seeds: list[int]
    training_bytes: int
    evaluation_bytes: int
    free_bytes: int

    @property
    def config(self) -> RunConfig:
        return self.configs[0]

    def describe(self) -> str:
        """One line: the protocol, the runs and the device."""
        config, configs = self.config, self.configs
        runs = (f"seed {config.seed}, lr {config.lr:g}" if len(configs) == 1 else
                f"{len(configs)} runs (seeds {', '.join(map(str, self.seeds))} x lr "
                f"{', '.join(f'{c:g}' for c in dict.fromkeys(c.lr for c in configs))})")
        if len(configs) > 1:
            runs += (f", {len(self.todo)} to train" + (" as one pack" if len(self.todo) > 1 else "")
                     + (f" ({len(configs) - len(self.todo)} finished)" if len(self.todo) < len(configs) else ""))
        return (f"{config.task} x {config.pe}  preset {config.preset}: {config.steps} steps, batch {config.batch_size}, "
                f"train 1..{config.train_length}, test 1..{config.max_test_length} x {config.eval_samples}, "
                f"{runs}, {self.device}")

    def resumes(self, resume: bool) -> bool:
        return bool(self.todo) and resume and find_checkpoint(self.results, self.todo)[0].exists()


def plan_run(task: str | None = None, pe: str | None = None, *, config_file: Path | None = None,
             preset: str | None = None, seeds=None, lrs=None, steps: int | None = None, device: str = "auto",
             results: Path | None = None, settings: dict | None = None, plugins: list[str] | None = None,
             force: bool = False, resume: bool = False) -> RunPlan:
    """The runs of one task x PE from options (`settings`: any others, `che settings`) and a config
    file (the keys of sweep files; options win), checked: every refusal comes here, in one line."""
    label, values = read_spec(str(config_file), "config file") if config_file is not None else ("command line", {})
    grid = build_grid(values, label, tasks=task, pes=pe, seeds=seeds, lrs=lrs, preset=preset, results=results,
                      plugins=plugins, require_tasks="--task", require_pes="--pe",
                      options={"tasks": "--task", "pes": "--pe"}, **settings_with_options(settings, steps=steps))
    if grid.slurm:
        raise CheError(f"slurm settings ({', '.join(echo(key) for key in sorted(grid.slurm))}) are for "
                       f"`che sweep --executor slurm`, not che run")
    if len(grid.tasks) != 1 or len(grid.pes) != 1:
        raise CheError(f"che run trains one task x PE, {label} gives {len(grid.tasks)} task(s) x {len(grid.pes)} "
                       f"PE(s); use che sweep for a grid")
    configs = grid.configs()
    task_obj = TASKS.get(grid.tasks[0])
    probe_sampler(task_obj, configs[0])
    torch_device = pick_device(device)
    # The estimates are upper bounds (fused attention never holds the T x T scores): refuse only what
    # cannot fit even at a quarter of them; a step that still fails to allocate is said by `execute`.
    need = training_memory_bytes(configs[0], task_obj, len(configs))
    one_example = evaluation_memory_bytes(configs[0], task_obj, len(configs))  # evaluation chunks down to this
    free = available_memory_bytes(torch_device)
    if need / 4 > free:
        raise CheError(training_memory_message(configs[0], len(configs), need, free))
    if one_example / 4 > free:
        raise CheError(evaluation_memory_message(configs[0], len(configs), one_example, free))
    todo = configs if force else [c for c in configs if not is_finished(result_path(grid.results, c))]
    if todo:
        check_resumable(grid.results, todo, force, resume)  # at once, not after an estimate
        if resume and not force and not find_checkpoint(grid.results, todo)[0].exists():
            warnings.warn(f"--resume: no checkpoint of {'this run' if len(todo) == 1 else 'these runs'} in "
                          f"{grid.results}; training from step 0", CheWarning, stacklevel=2)
    return RunPlan(configs, todo, task_obj, torch_device, grid.results, grid.seeds, need, one_example, free)


def estimate(plan: RunPlan) -> dict:
    """`estimate_seconds` of the runs left (see there), allocation failures in one line."""
    with allocation_failures(plan):
        return estimate_seconds(plan.todo, plan.task, plan.device)


def execute(plan: RunPlan, force: bool = False, resume: bool = False, reporter: Reporter | None = None) -> list[Outcome]:
    """Train and evaluate the plan's runs (`execute_pack`), allocation failures in one line."""
    with allocation_failures(plan):
        return execute_pack(plan.configs, plan.results, device=str(plan.device.type), force=force, resume=resume,
                            reporter=reporter)


def settings_with_options(settings: dict | None, **options) -> dict:
    """The settings (--set) and the options that set one (--steps, che eval's --max-test-length), each
    given once: a setting given both ways is refused, rather than one of them silently winning."""
    given = {key: value for key, value in options.items() if value is not None}
    both = sorted(given.keys() & (settings or {}).keys())
    if both:
        raise CheError(f"give --{both[0].replace('_', '-')} or --set {both[0]}=..., not both")
    return {**(settings or {}), **given}


def probe_sampler(task, config: RunConfig) -> None:
    """Sample a small batch at the shortest and longest lengths the run uses, so that a sampler
    that breaks its contract is refused (one line, from Task.sample's checks) before anything runs;
    and check what needs the task (a randomized PE's range)."""
    config.validate_for(task)
    for length in sorted({1, config.train_length, config.max_test_length}):
        task.sample(2, length, torch.Generator().manual_seed(0))


def training_memory_message(config: RunConfig, runs: int, need: int, free: int) -> str:
    return (f"a training step of {config.task} at train_length {config.train_length} with batch_size "
            f"{config.batch_size}{f' x {runs} runs' if runs > 1 else ''} needs up to {need / 2**30:.1f} GiB; "
            f"{free / 2**30:.1f} GiB are free: lower batch_size or train_length (--set batch_size=...)")


def evaluation_memory_message(config: RunConfig, runs: int, need: int, free: int) -> str:
    return (f"evaluating {config.task} at max_test_length {config.max_test_length} needs up to "
            f"{need / 2**30:.1f} GiB for a single example{f' of {runs} runs' if runs > 1 else ''}; "
            f"{free / 2**30:.1f} GiB are free: lower max_test_length (--set max_test_length=...)")


@contextlib.contextmanager
def allocation_failures(plan: RunPlan):
    """An allocation that fails (torch.OutOfMemoryError, "can't allocate memory") as one line, naming
    what training and evaluation need."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not isinstance(exc, MemoryError) and "memory" not in str(exc).lower():
            raise
        raise CheError(f"an allocation failed: a training step needs up to {plan.training_bytes / 2**30:.1f} GiB "
                       f"and evaluating one example at length {plan.config.max_test_length} up to "
                       f"{plan.evaluation_bytes / 2**30:.1f} GiB; {plan.free_bytes / 2**30:.1f} GiB are free: "
                       f"lower batch_size, train_length or max_test_length") from None


@dataclass
class SweepPlan:
    """A grid, its runs, how many train together, and the SLURM jobs' settings (slurm executor)."""

    grid: object
    label: str
    configs: list[RunConfig]
    pack: int
    slurm: object | None
    notes: list[str]


def plan_sweep(spec: str | None, *, tasks=None, pes=None, seeds=None, lrs=None, preset=None, steps=None,
               results=None, settings: dict | None = None, plugins=None, executor: str = "local", device: str = "auto",
               jobs: int | None = None, jobs_per_gpu: int = 1, pack: str = "auto") -> SweepPlan:
    """The runs of a sweep (a sweep file, or its name, and options that win), every name and value
    checked, with the pack size (`che.runners.packs.parse_pack`) and the slurm executor's settings
    (the file's [slurm] table and `--set slurm.KEY=VALUE`)."""
    from che.errors import check_range
    from che.runners.executors import EXECUTORS
    from che.runners.packs import make_packs, parse_pack

    if executor not in EXECUTORS:
        raise CheError(f"unknown executor '{executor}' (choices: {', '.join(EXECUTORS)})")
    if jobs is not None:
        check_range("--jobs", jobs, 1, 4096)
    check_range("--jobs-per-gpu", jobs_per_gpu, 1, 64)
    label, values = read_spec(spec) if spec else ("command line", {})
    grid = build_grid(values, label, tasks=tasks, pes=pes, seeds=seeds, lrs=lrs, preset=preset, results=results,
                      plugins=plugins, **settings_with_options(settings, steps=steps))
    slurm, notes = None, []
    if executor == "slurm":
        from che.runners.executors.slurm import options_from_table

        slurm = options_from_table(device, grid.slurm)
    elif grid.slurm:
        raise CheError(f"slurm settings ({', '.join(echo(key) for key in sorted(grid.slurm))}) are for the slurm "
                       f"executor (add --executor slurm)")
    configs = grid.configs()
    # `--pack auto` measures a pack's memory on the GPU the runs use. GPUs elsewhere (SLURM jobs', a
    # Ray cluster's that this machine lacks) are not measured from here: one run per job there.
    # CPU jobs take the CPU rule, which measures nothing.
    gpus_elsewhere = ((slurm is not None and slurm.gpus > 0)
                      or (executor == "ray" and device == "cuda" and not torch.cuda.is_available()))
    if pack == "auto" and gpus_elsewhere:
        pack_size = 1
        notes.append(f"--pack auto: nothing is measured on the machine that submits the "
                     f"{'SLURM jobs' if slurm is not None else 'Ray tasks'}, so each trains one run "
                     f"(--pack K trains K runs in each)")
    else:
        pack_size = parse_pack(pack, configs, device if slurm is None else "cpu")
    if pack_size > 1:  # split evenly: a cell's 9 runs in packs of up to 4 are 3 packs of 3
        packs = make_packs(configs, pack_size)
        low, high = min(map(len, packs)), max(map(len, packs))
        notes.append(f"runs that differ only in seed and lr train together, in packs of up to {pack_size}: here "
                     f"{len(packs)} pack(s) of {low if low == high else f'{low}-{high}'} run(s)")
    return SweepPlan(grid, label, configs, pack_size, slurm, notes)
