"""`che run`, `che eval`, `che show`: one task x PE trained and evaluated, a kept model evaluated
again, and what it learned drawn."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from che.cli.common import (QUIET_HELP, PluginOption, ResultsOption, SetOption, app, err_console, load_plugins, log,
                            live_progress, say, settings, user_errors)
from che.config import Device, Preset, evaluation_settings
from che.errors import CheError
from che.results import DEFAULT_RESULTS

RunArgument = Annotated[str, typer.Argument(help="A run: its result file, or its run id (found under --results).",
                                            show_default=False)]


@app.command("run")
@user_errors
def run_command(
    task: Annotated[Optional[str], typer.Option(help="Task name (`che tasks`).", show_default=False,
                                                rich_help_panel="What")] = None,
    pe: Annotated[Optional[str], typer.Option(help="Positional encoding (`che pes`), e.g. dape-kerple.",
                                              show_default=False, rich_help_panel="What")] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="A TOML file with the keys of sweep files (preset, tasks, pes, seeds, lrs, results, "
                         "plugins, [overrides]); options given here win.", show_default=False,
        rich_help_panel="What")] = None,
    preset: Annotated[Optional[Preset], typer.Option(
        help="smoke (seconds), cpu (minutes), paper (the DAPE setting) [default: cpu].", show_default=False,
        rich_help_panel="How")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Seeds: a count N (0..N-1) or a list 0,4,7, trained together as one pack [default: 0]; "
             "one seed: --set seed=7.", show_default=False, rich_help_panel="How")] = None,
    lrs: Annotated[Optional[str], typer.Option(
        help="Learning rates (1e-4,3e-4): with --seeds, every pair, as one pack [default: the preset's].",
        show_default=False, rich_help_panel="How")] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps [default: the preset's].",
                                                 show_default=False, rich_help_panel="How")] = None,
    set_: SetOption = None,
    device: Annotated[Device, typer.Option(help="Where to compute.", rich_help_panel="Where")] = "auto",
    results: Annotated[Optional[Path], typer.Option(
        help=f"Results folder [default: the --config file's, else {DEFAULT_RESULTS}].", show_default=False,
        rich_help_panel="Where")] = None,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.",
                                         rich_help_panel="Where")] = False,
    force: Annotated[bool, typer.Option(help="Run again even if finished; discard a checkpoint.",
                                        rich_help_panel="Where")] = False,
    quiet: Annotated[bool, typer.Option(help=QUIET_HELP, rich_help_panel="Where")] = False,
    plugin: PluginOption = None,
):
    """Train one model on a task with a PE, evaluate it on every length, store the result.

    With --seeds and --lrs, the runs train together as one pack and each writes its own result.
    Every other setting is `--set key=value` (`che settings` lists them)."""
    from che.progress import FanOut, LogReporter, RichReporter, TensorBoardReporter, accuracy_chart
    from che.runners import launch
    from che.runners.estimate import describe_range, format_duration, format_range
    from che.runners.run import diverged_message
    from che.runners.stopping import exit_code, signal_name
    from che.runners.train import Interrupted

    plan = launch.plan_run(task, pe, config_file=config_file, preset=preset, seeds=seeds, lrs=lrs, steps=steps,
                           device=device, results=results, settings=settings(set_), plugins=plugin, force=force,
                           resume=resume)
    log(plan.describe())
    if plan.todo and not plan.resumes(resume):
        estimate = launch.estimate(plan)
        log(f"estimated cost: training ~{format_duration(estimate['train_s'])} "
            f"({format_range(estimate['train_range_s'])}), evaluation ~{format_duration(estimate['eval_s'])} "
            f"({format_range(estimate['eval_range_s'])}); {1 / estimate['step_s']:.1f} steps/s with "
            f"{estimate['threads']} thread(s), measured here; each range: {describe_range(plan.device)}")
    reporter = FanOut(RichReporter(err_console) if live_progress(quiet) else LogReporter(err_console),
                      TensorBoardReporter.maybe(plan.config.tensorboard))
    try:
        outcomes = launch.execute(plan, force=force, resume=resume, reporter=reporter)
    except Interrupted as stop:  # Ctrl-C or SIGTERM in training: a checkpoint, then stop
        reporter.close()
        print(f"{stop}; continue with the same command and --resume", file=sys.stderr)
        raise typer.Exit(exit_code(stop)) from None
    except KeyboardInterrupt as stop:  # setting up (no checkpoint yet), or evaluating (training ended with one)
        reporter.close()
        name = signal_name(stop)
        by = f"interrupted by {name}" if name else "interrupted"
        if plan.resumes(True):
            print(f"{by} before the results were written; the trained model is in its checkpoint: "
                  f"continue with the same command and --resume", file=sys.stderr)
        else:
            print(f"{by} before training began; nothing was saved", file=sys.stderr)
        raise typer.Exit(exit_code(stop)) from None
    except FloatingPointError as exc:  # every run being trained diverged
        reporter.close()
        print(f"error: {diverged_message(exc, plan.todo)}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        reporter.close()
    config, n = plan.config, plan.config.train_length
    for i, (run_config, outcome) in enumerate(zip(plan.configs, outcomes)):
        label = f"{config.task} x {config.pe}" + (
            "" if len(plan.configs) == 1 else f", seed {run_config.seed} lr {run_config.lr:g}")
        if outcome.status == "failed":
            log(f"{label}: failed: {outcome.record['error']}")
            continue
        record = outcome.record
        if outcome.status == "skipped":
            log(f"already finished (use --force to run again): {outcome.path}")
        if i:
            say("")
        say(Text.assemble((label, "bold"), f": unseen lengths {n + 1}..{config.max_test_length}: ",
                          (f"{100 * record['ood_accuracy']:.1f}%", "bold"),
                          f"   seen 1..{n}: {100 * record['in_distribution_accuracy']:.1f}%   "
                          f"chance {100 * record['chance_accuracy']:.0f}%"))
        for line in accuracy_chart(record["accuracy_by_length"], n):
            say("  " + line)
        say(f"result: {outcome.path}")
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


@app.command("eval")
@user_errors
def eval_command(
    run: RunArgument,
    results: ResultsOption = DEFAULT_RESULTS,
    out_results: Annotated[Path, typer.Option("--out-results", help="Where to write the evaluation result.")] = Path(
        "results/evals"),
    max_test_length: Annotated[Optional[int], typer.Option(help="Evaluate on lengths 1..M [default: as the run].",
                                                           show_default=False)] = None,
    eval_samples: Annotated[Optional[int], typer.Option(help="Test examples per length [default: as the run].",
                                                        show_default=False)] = None,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Another evaluation setting, key=value: " + ", ".join(
            s for s in evaluation_settings() if s not in ("max_test_length", "eval_samples")) + ".",
        show_default=False)] = None,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "auto",
    quiet: Annotated[bool, typer.Option(help=QUIET_HELP)] = False,
    plugin: PluginOption = None,
):
    """Evaluate a stored run again on longer lengths or other settings.

    The run's kept model is evaluated; the evaluation result, linked to the run, is read by
    `che leaderboard --results` like any result."""
    from che.progress import LogReporter, RichReporter, accuracy_chart
    from che.runners.estimate import describe_range, format_duration, format_range, likely_range
    from che.runners.inspection import check_reevaluation, evaluation_seconds, reevaluate
    from che.runners.launch import settings_with_options
    from che.runners.run import pick_device
    from che.runners.stored import find_run

    load_plugins(plugin)
    record, path = find_run(run, results)
    changes = settings_with_options(settings(set_), max_test_length=max_test_length, eval_samples=eval_samples)
    length = check_reevaluation(record, path, out_results, **changes).max_test_length
    torch_device = pick_device(device)
    seconds = evaluation_seconds(record, torch_device, **changes)
    low, high = likely_range(seconds, torch_device)
    span = f"{format_range((low, high))}: " if high > low else ""
    log(f"{record['task']} x {record['pe']} (run {record['run_id']}): evaluating lengths 1..{length} on "
        f"{torch_device}, estimated cost ~{format_duration(seconds)} "
        f"({span}{describe_range(torch_device, timed=False)})")
    reporter = RichReporter(err_console) if live_progress(quiet) else LogReporter(err_console)
    reporter.evaluation_started(length)
    try:
        written = reevaluate(record, path, torch_device, out_results, on_length=reporter.length_done, **changes)
    finally:
        reporter.close()
    evaluation = json.loads(written.read_text())
    n = evaluation["config"]["train_length"]
    say(f"{evaluation['task']} x {evaluation['pe']} (run {record['run_id']}): unseen lengths "
        f"{n + 1}..{length}: {100 * evaluation['ood_accuracy']:.1f}%")
    for line in accuracy_chart(evaluation["accuracy_by_length"], n):
        say("  " + line)
    say(f"result: {written}")


@app.command("show")
@user_errors
def show_command(
    run: RunArgument,
    out: Annotated[Path, typer.Option(help="The picture to write (.png, .pdf or .svg).", show_default=False)],
    results: ResultsOption = DEFAULT_RESULTS,
    layer: Annotated[int, typer.Option(help="Attention layer (0 = the first).")] = 0,
    heads: Annotated[Optional[str], typer.Option(
        help="Which heads to draw: head numbers, e.g. 0,1,2 [default: the first 8].", show_default=False)] = None,
    length: Annotated[Optional[int], typer.Option(help="Input length N [default: the training length].",
                                                  show_default=False)] = None,
    sample: Annotated[int, typer.Option(help="Which test example of that length.", min=0, max=10_000)] = 0,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "cpu",
    plugin: PluginOption = None,
):
    """Draw what a run's PE learned: bias, DAPE's correction, attention.

    For one test input, per head: FoX's decays D, the PE's bias B, DAPE's correction f(S, B) (those
    the PE has) and the attention (as the DAPE paper's figures)."""
    from che.plots import FORMATS, attention_pictures
    from che.results import check_output
    from che.runners.inspection import attention_maps
    from che.runners.run import pick_device
    from che.runners.stored import find_run

    load_plugins(plugin)
    check_output("--out", out, FORMATS)
    record, path = find_run(run, results)
    head_list = None
    if heads is not None:
        try:
            head_list = [int(h) for h in heads.split(",") if h.strip()]
        except ValueError:
            head_list = []
        if not head_list:
            raise CheError(f"--heads must be head numbers such as 0,1,2, got {heads!r}")
    recorded, about = attention_maps(record, path, pick_device(device), layer, length, sample)
    attention_pictures(recorded, about, out, head_list)
    err_console.print(f"wrote {out}")
