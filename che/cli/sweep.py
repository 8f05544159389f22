"""`che sweep`: a grid of runs, packed, on a local pool, Ray or SLURM."""

from __future__ import annotations

from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from che.cli.common import (QUIET_HELP, PluginOption, SetOption, app, err_console, live_progress, log, print_tables,
                            say, settings, user_errors)
from che.config import Device, Preset


@app.command("sweep")
@user_errors
def sweep_command(
    spec: Annotated[Optional[str], typer.Argument(
        help="A sweep file (TOML), or the name of one that ships with che: cpu_leaderboard, after_2024, after_2024_new, "
             "dape_table2. "
             "Options given here override the file.", show_default=False)] = None,
    tasks: Annotated[Optional[str], typer.Option(
        help="'all' (the 15 CHE tasks) or task names, comma-separated.", rich_help_panel="The grid")] = None,
    pes: Annotated[Optional[str], typer.Option(
        help="Positional encodings, comma-separated (`che pes`).", rich_help_panel="The grid")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="A count N (seeds 0..N-1) or seeds, comma-separated (default: 1).", rich_help_panel="The grid")] = None,
    lrs: Annotated[Optional[str], typer.Option(
        help="Learning rates, comma-separated (default: the preset's).", rich_help_panel="The grid")] = None,
    preset: Annotated[Optional[Preset], typer.Option(
        help="The preset (default: cpu).", show_default=False, rich_help_panel="The grid")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of every run.", rich_help_panel="The grid")] = None,
    set_: SetOption = None,
    results: Annotated[Optional[str], typer.Option(
        help="Results folder (default: the sweep file's, else results/runs).", rich_help_panel="Where")] = None,
    executor: Annotated[Literal["local", "ray", "slurm"], typer.Option(
        help="local (a process pool), ray, or slurm (a SLURM job per pack; its settings: a [slurm] table in the "
             "sweep file, or --set slurm.partition=gpu, slurm.time=720, slurm.gpus_per_job, slurm.cpus_per_job, "
             "slurm.mem_gb, slurm.array_parallelism, slurm.local=true).", rich_help_panel="Where")] = "local",
    jobs: Annotated[Optional[int], typer.Option(
        help="Runs at a time (default: one per CPU core, or --jobs-per-gpu per GPU); with slurm, jobs in flight "
             "(default: up to 1000).", rich_help_panel="Where")] = None,
    jobs_per_gpu: Annotated[int, typer.Option(help="Runs sharing each GPU.", rich_help_panel="Where")] = 1,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Join the Ray cluster at this address (default: RAY_ADDRESS if set, else start a local one).",
        rich_help_panel="Where")] = None,
    device: Annotated[Device, typer.Option(help="Where to compute.", rich_help_panel="Where")] = "auto",
    pack: Annotated[str, typer.Option(
        help="Train runs that differ only in seed and lr together as one model: auto (on a GPU as many as fit, "
             "on a CPU up to 4), off, or a number K.", rich_help_panel="Where")] = "auto",
    force: Annotated[bool, typer.Option(help="Run finished runs again, from the start.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs and the estimated cost; run nothing.")] = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate/--no-estimate", help="With --dry-run: the estimated cost (from a calibration of the device).")] = True,
    quiet: Annotated[bool, typer.Option(help=QUIET_HELP)] = False,
    plugin: PluginOption = None,
):
    """Run a grid of tasks x PEs x learning rates x seeds; finished runs are skipped, failures recorded.

    Each run is exactly `che run --resume` with its configuration. Ctrl-C stops cleanly: running
    runs save a checkpoint and the same command continues them. Exit code: 0, 1 if a run failed,
    130 after Ctrl-C, 143 after SIGTERM."""
    from che.progress import LogSweepReporter, RichSweepReporter
    from che.registry import loaded_plugins
    from che.runners import launch, planning
    from che.runners.executors import make_executor
    from che.runners.run import check_writable
    from che.runners.sweep import run_sweep

    plan = launch.plan_sweep(spec, tasks=tasks, pes=pes, seeds=seeds, lrs=lrs, preset=preset, steps=steps,
                             results=results, settings=settings(set_), plugins=plugin, executor=executor,
                             device=device, jobs=jobs, jobs_per_gpu=jobs_per_gpu, pack=pack)
    grid = plan.grid
    about = [f"sweep {plan.label}: {len(plan.configs)} runs ({grid.describe()}), results in {grid.results}",
             *plan.notes]
    if dry_run:  # what would run is the dry run's outcome
        for line in about:
            say(line)
        try:
            report = planning.dry_run(plan.configs, grid.results, executor, device=device, jobs=jobs,
                                      jobs_per_gpu=jobs_per_gpu, pack=plan.pack, slurm=plan.slurm, estimate=estimate)
        except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM while calibrating
            from che.runners.stopping import exit_code

            raise typer.Exit(exit_code(stop)) from None
        table = Table(title=f"che sweep --dry-run: {len(report.rows)} runs")
        for column in ("task", "pe", "seed", "lr", "run id", "state"):
            table.add_column(column, no_wrap=True)
        for r in report.rows:
            table.add_row(r["task"], r["pe"], str(r["seed"]), f"{r['lr']:g}", r["run_id"], r["state"])
        print_tables([table])
        say(", ".join(f"{n} {state}" for state, n in report.counts.items()))
        for line in report.estimate:
            say(line)
        return
    factory = make_executor(executor, grid.results, loaded_plugins(), device, jobs, jobs_per_gpu, ray_address,
                            plan.slurm, force=force)
    check_writable(grid.results)  # before any run starts, not in every worker after it trained
    for line in about:  # after every check: bad input stays one line on stderr
        log(line)
    reporter = RichSweepReporter(err_console) if live_progress(quiet) else LogSweepReporter(err_console)
    summary = run_sweep(plan.configs, grid.results, factory, reporter, pack=plan.pack, force=force)
    say(f"{summary.line()}; results: {grid.results}")
    if summary.failures:
        say("failed runs are recorded (config, error, traceback) in:")
        for path in summary.failures[:20]:
            say(f"  {path}")
        if len(summary.failures) > 20:
            say(f"  ... and {len(summary.failures) - 20} more *.failed.json under {grid.results}")
        say("they are retried when the sweep runs again")
    if summary.stopped:
        log("stopped: run the same command again to continue (interrupted runs resume from their checkpoints)")
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)
