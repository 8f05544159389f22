"""The `che` command line: tasks, sample, pes, run, leaderboard, sweep, bench."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shlex
import sys
import warnings
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from che.errors import CheError
from che.results import DEFAULT_RESULTS
from che.threads import configure as configure_threads

app = typer.Typer(
    name="che",
    rich_markup_mode=None,  # help texts are plain text: "[default: ...]" must not be read as markup
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup: task, PE, plugin and file names are the user's and print as they are ("[red]", "[/]").
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

Device = Literal["auto", "cpu", "cuda"]
Preset = Literal["smoke", "cpu", "paper"]  # che.config.PRESETS (tests/test_cli.py checks they agree)
MAX_LENGTH = 10_000  # longest length `che sample` accepts; the CHE protocol tests up to 500

PluginOption = Annotated[
    Optional[list[str]],
    typer.Option("--plugin", help="A plugin to load: a .py file or a module name (repeatable; "
                                  "CHE_PLUGINS may also list them)."),
]


def _show_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def user_errors(command):
    """Report CheError as one line on stderr with exit code 2, never a traceback."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        warnings.showwarning = _show_warning
        try:
            return command(*args, **kwargs)
        except CheError as exc:
            print(f"error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


def _load_plugins(plugins: list[str] | None) -> None:
    from che.registry import load_plugins

    load_plugins(plugins)


PLOT_FORMATS = ("png", "pdf", "svg")


def _check_output(what: str, path: Path | None, suffixes: tuple[str, ...] | None = None) -> None:
    """Refuse, before any work, an output path that is a folder, has an unknown format or cannot be
    written (its folder is made if missing)."""
    if path is None:
        return
    if suffixes is not None and path.suffix.lower().lstrip(".") not in suffixes:
        raise CheError(f"{what} '{path}': unknown format '{path.suffix or '(none)'}' "
                       f"(choices: {', '.join('.' + s for s in suffixes)})")
    if path.is_dir():
        raise CheError(f"{what} '{path}' is a folder; give a file name")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        existed = path.exists()
        with open(path, "a"):
            pass
        if not existed:
            path.unlink()
    except OSError as exc:
        raise CheError(f"{what} '{path}' cannot be written: {exc.strerror or exc}") from None


def _check_range(what: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CheError(f"{what} must be {bound}, got {value}")


# -- che tasks --------------------------------------------------------------------------------------
def _plugins_in_play(plugin: list[str] | None, group: str) -> bool:
    """Whether a command must import plugins (and so torch) to list everything."""
    from che.registry import _entry_points, env_plugins

    return bool(plugin) or bool(env_plugins()) or bool(_entry_points(group))


@app.command("tasks")
@user_errors
def tasks_command(plugin: PluginOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """List the tasks (built-in and plugin)."""
    from che import listings

    if _plugins_in_play(plugin, "che.tasks"):
        _load_plugins(plugin)
        rows = listings.describe_tasks()
    else:
        rows = listings.builtin_tasks()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="CHE tasks")
    for column in ("task", "level", "vocab in/out", "output length", "chance", "source"):
        table.add_column(column, no_wrap=column == "task", overflow="fold")
    for d in rows:
        table.add_row(d["name"], d["level"], f"{d['input_size']}/{d['output_size']}",
                      d["output_length"] + (" masked" if d["masked"] else ""),
                      f"{100 * d['chance_accuracy']:.0f}%", d["source"])
    console.print(table)


# -- che sample -------------------------------------------------------------------------------------
@app.command("sample")
@user_errors
def sample_command(
    task: Annotated[str, typer.Option(help="Task name (`che tasks`).")],
    length: Annotated[int, typer.Option(help="Length N.")],
    count: Annotated[int, typer.Option(help="Number of samples.")] = 5,
    seed: Annotated[int, typer.Option(help="Sampler seed.", min=0, max=2**63 - 1)] = 0,
    format: Annotated[Literal["jsonl", "text"], typer.Option("--format", help="jsonl or text.")] = "text",
    plugin: PluginOption = None,
):
    """Print samples of a task: `jsonl` (one JSON object per line) or `text` (the task's symbols)."""
    import torch

    from che.registry import TASKS

    _load_plugins(plugin)
    task_obj = TASKS.get(task)
    _check_range("--length", length, 1, MAX_LENGTH)
    _check_range("--count", count, 1, 100_000)
    if format not in ("jsonl", "text"):
        raise CheError(f"unknown format '{format}' (choices: jsonl, text)")
    batch = task_obj.sample(count, length, torch.Generator().manual_seed(seed))
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        if format == "jsonl":
            print(json.dumps({"task": task, "length": length, "input": inputs, "target": targets}))
        else:
            print(f"{task_obj.render(inputs, task_obj.input_symbols)}  ->  "
                  f"{task_obj.render(targets, task_obj.output_symbols)}")


# -- che pes ----------------------------------------------------------------------------------------
@app.command("pes")
@user_errors
def pes_command(
    name: Annotated[Optional[str], typer.Argument(help="A PE to describe in full.", show_default=False)] = None,
    show: Annotated[Optional[str], typer.Option(help="Show the bias this PE adds at initialisation.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="With --show: draw the bias (.png, .pdf or .svg).",
                                                 show_default=False)] = None,
    length: Annotated[int, typer.Option(help="Sequence length T for --show.")] = 8,
    heads: Annotated[int, typer.Option(help="Attention heads for --show.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plugin: PluginOption = None,
):
    """List the positional encodings, describe one (`che pes NAME`), or show one's attention bias
    (--show NAME --length T)."""
    from che import listings

    if plot is not None and show is None:
        raise CheError("--plot draws the bias of --show NAME; give --show")
    if show is not None:
        _show_bias(show, length, heads, as_json, plugin, plot)
        return
    if name is not None or _plugins_in_play(plugin, "che.positional_encodings"):
        _load_plugins(plugin)
        rows = listings.describe_all_pes()
    else:
        rows = listings.builtin_pes()
    if name is not None:
        _describe_pe(name, rows, as_json)
        return
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Positional encodings (`--pe NAME`; `che pes NAME` for details)")
    for column in ("name", "family", "parameters", "source of the PE"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        table.add_row(row["name"], row["family"], row["parameters"], row["cite"]
                      + ("" if row["source"] == "builtin" else f" [{row['source']}]"))
    console.print(table)
    console.print("Aliases: " + ", ".join(f"{a} = {n}" for r in rows for a, n in r.get("aliases", {}).items()),
                  highlight=False)


def _describe_pe(name: str, rows: list[dict], as_json: bool) -> None:
    from che.models.positional import parse_pe

    build = parse_pe(name, None)
    base = build.cls.name
    row = next(r for r in rows if r["name"] == base)
    modifiers = [r for r in rows if r["family"] == "modifier" and (
        (build.randomized and r["name"] == "rand-<pe>") or (build.dape and r["name"].startswith(build.dape + "-")))]
    if as_json:
        print(json.dumps({"name": build.name, "pe": row, "modifiers": modifiers}, indent=2))
        return
    from che.listings import LISTED_MODEL
    from che.config import ModelConfig
    from che.models.positional import _parameters_text

    model = ModelConfig(input_size=2, output_size=2, pe=build.name, **LISTED_MODEL)
    trained = _parameters_text(parse_pe(build.name, model))
    family = row["family"] if not build.dape else f"{build.dape.upper()} over {build.cls.name} ({row['family']})"
    lines = [f"{build.name}: {family}; a model trains {trained} parameters for it "
             f"(the CHE model: {LISTED_MODEL['n_layers']} layers, d_model {LISTED_MODEL['d_model']}, "
             f"{LISTED_MODEL['n_heads']} heads)",
             f"citation: {row['citation']}", f"both directions: {row['bidirectional']}", "", row["about"]]
    for modifier in modifiers:
        lines += ["", f"{modifier['name']}: {modifier['about']}", f"citation: {modifier['citation']}"]
    console.print("\n".join(lines), highlight=False, soft_wrap=False)


MAX_SHOWN_ENTRIES = 2_000_000  # heads x T x T numbers --show prints or writes


def _show_bias(show: str, length: int, heads: int, as_json: bool, plugin, plot: Path | None = None) -> None:
    from che.models.positional import initial_bias

    _load_plugins(plugin)
    _check_output("--plot", plot, PLOT_FORMATS)
    _check_range("--length", length, 1, 4096)
    _check_range("--heads", heads, 1, 64)
    if heads * length * length > MAX_SHOWN_ENTRIES:
        raise CheError(f"--heads x --length^2 = {heads * length * length:,} numbers is more than --show prints "
                       f"({MAX_SHOWN_ENTRIES:,}); lower --length or --heads")
    bias, note = initial_bias(show, length, heads)
    if plot is not None:
        if bias is None:
            raise CheError(f"{show}: {note}; there is no bias to draw")
        from che.plots import heatmaps

        heatmaps([(f"head {h}", [("bias B at initialisation", bias[h].numpy())]) for h in range(min(heads, 8))],
                 plot, f"{show}, T = {length}" + (f" ({note})" if note else ""))
        err_console.print(f"wrote {plot}", highlight=False)
        return
    if as_json:
        print(json.dumps({"pe": show, "length": length,
                          "bias": None if bias is None else [[[round(float(v), 6) for v in row] for row in head]
                                                             for head in bias.tolist()]}
                         | ({"note": note} if note else {})))
        return
    if note:
        console.print(f"{show}: {note}", highlight=False)
    if bias is not None:
        for h, head in enumerate(bias.tolist()):
            table = Table(title=f"{show}, head {h} (rows: query i, columns: key j)", show_header=True)
            table.add_column("i\\j")
            for j in range(length):
                table.add_column(str(j), justify="right")
            for i, row in enumerate(head):
                table.add_row(str(i), *[f"{v:.3g}" for v in row])
            console.print(table)


# -- che run ----------------------------------------------------------------------------------------
ResultsOption = Annotated[Path, typer.Option("--results", help="Results folder.")]
ResultsFoldersOption = Annotated[Optional[list[Path]], typer.Option(
    "--results", help=f"Results folder; repeat it to read several (your runs beside committed baselines) "
                      f"[default: {DEFAULT_RESULTS}].", show_default=False)]


@app.command("run")
@user_errors
def run_command(
    task: Annotated[Optional[str], typer.Option(help="Task name (`che tasks`).", show_default=False)] = None,
    pe: Annotated[Optional[str], typer.Option(
        help="Positional encoding (`che pes`), e.g. dape-kerple.", show_default=False)] = None,
    config_file: Annotated[Optional[Path], typer.Option(
        "--config", help="A TOML file with the keys of sweep files (preset, tasks, pes, seeds, lrs, results, "
                         "plugins, [overrides]); options given here win.", show_default=False)] = None,
    preset: Annotated[Optional[Preset], typer.Option(
        help="smoke (seconds), cpu (minutes), paper (the DAPE setting) [default: cpu].", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps.")] = None,
    batch_size: Annotated[Optional[int], typer.Option(help="Training batch size.")] = None,
    lr: Annotated[Optional[float], typer.Option(help="Adam learning rate (constant).")] = None,
    train_length: Annotated[Optional[int], typer.Option(help="Train on lengths 1..N.")] = None,
    max_test_length: Annotated[Optional[int], typer.Option(help="Evaluate on lengths 1..M.")] = None,
    eval_samples: Annotated[Optional[int], typer.Option(help="Test examples per length.")] = None,
    seed: Annotated[Optional[int], typer.Option(
        help="Seed of the model, data, dropout and positions [default: 0].", show_default=False)] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="Several seeds (a count N or a list 0,4,7): train them together as one pack.")] = None,
    lrs: Annotated[Optional[str], typer.Option(
        help="Several learning rates (1e-4,3e-4): with --seeds, every pair, as one pack.")] = None,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "auto",
    results: Annotated[Optional[Path], typer.Option(
        help=f"Results folder [default: the --config file's, else {DEFAULT_RESULTS}].", show_default=False)] = None,
    force: Annotated[bool, typer.Option(help="Run again even if finished; discard a checkpoint.")] = False,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted run from its checkpoint.")] = False,
    quiet: Annotated[bool, typer.Option(help="Plain log lines instead of a live display.")] = False,
    tensorboard: Annotated[Optional[Path], typer.Option(help="Write TensorBoard logs to this folder.")] = None,
    n_layers: Annotated[Optional[int], typer.Option(help="Transformer layers.")] = None,
    d_model: Annotated[Optional[int], typer.Option(help="Model width.")] = None,
    n_heads: Annotated[Optional[int], typer.Option(help="Attention heads.")] = None,
    dropout: Annotated[Optional[float], typer.Option(help="Dropout rate.")] = None,
    eval_dropout: Annotated[Optional[bool], typer.Option(
        "--eval-dropout/--no-eval-dropout", help="Keep dropout on at evaluation, as the reference does "
        "[default: off].")] = None,
    rand_max_length: Annotated[Optional[int], typer.Option(help="L, the range of randomized positions.")] = None,
    rand_at_eval: Annotated[Optional[bool], typer.Option(
        "--rand-at-eval/--no-rand-at-eval", help="Randomized PEs also randomize at evaluation "
        "[default: on, as the reference].")] = None,
    rand_mode: Annotated[Optional[Literal["offsets", "reference", "positions"]], typer.Option(
        help="How rand- relative and bias PEs draw: RPE's offsets [default], RPE's released code bit "
             "for bit, or random positions.", show_default=False)] = None,
    length_seed: Annotated[Optional[int], typer.Option(help="Seed of the per-step training lengths.")] = None,
    learned_max_length: Annotated[Optional[int], typer.Option(help="Rows of the learned PE table.")] = None,
    dape_width: Annotated[Optional[int], typer.Option(help="DAPE MLP width D.")] = None,
    dape_variant: Annotated[Optional[Literal["S+B+f(S,B)", "S+B+f(S+B)", "S+f(S,B)", "S+B+f(B)"]], typer.Option(
        help="DAPE or one of its ablations [default: S+B+f(S,B)].", show_default=False)] = None,
    dape_kernel: Annotated[Optional[int], typer.Option(help="DAPE V2 convolution width k.")] = None,
    dape_impl: Annotated[Optional[Literal["fast", "literal"]], typer.Option(
        help="DAPE implementation (the same function).", show_default=False)] = None,
    dape_init: Annotated[Optional[Literal["haiku", "torch"]], typer.Option(
        help="DAPE MLP initialisation [default: haiku].", show_default=False)] = None,
    bf16: Annotated[Optional[bool], typer.Option("--bf16/--no-bf16", help="bf16 autocast [default: off].")] = None,
    compile: Annotated[Optional[bool], typer.Option("--compile/--no-compile",
                                                    help="torch.compile the model [default: off].")] = None,
    cuda_graphs: Annotated[Optional[bool], typer.Option(
        "--cuda-graphs/--no-cuda-graphs", help="Capture training steps as CUDA graphs [default: on, on CUDA].")] = None,
    checkpoint_every: Annotated[Optional[int], typer.Option(help="Steps between checkpoints.")] = None,
    save_model: Annotated[Optional[bool], typer.Option(
        "--save-model/--no-save-model", help="Keep the trained weights beside the result (about 1 MB for "
        "the CHE model) [default: on].", show_default=False)] = None,
    eval_memory_gb: Annotated[Optional[float], typer.Option(help="Memory budget of evaluation chunks.")] = None,
    plugin: PluginOption = None,
):
    """Train one model on a task with a PE, evaluate it on every length, store the result.

    With --seeds and --lrs, the runs train together as one pack and each writes its own result."""
    from che.models.positional import canonical_pe_name  # noqa: F401  (imports the PE zoo)
    from che.progress import FanOut, LogReporter, RichReporter, TensorBoardReporter, accuracy_chart
    from che.registry import TASKS
    from che.results import is_finished, result_path
    from che.runners.estimate import (available_memory_bytes, estimate_seconds, evaluation_memory_bytes,
                                      format_duration, training_memory_bytes)
    from che.runners.run import check_resumable, diverged_message, execute_pack, find_checkpoint, pick_device
    from che.runners.grid import build_grid, read_spec
    from che.runners.train import Interrupted

    label, values = read_spec(str(config_file), "config file") if config_file is not None else ("command line", {})
    if seed is not None and seeds is not None:
        raise CheError("give --seed or --seeds, not both")
    if lr is not None and lrs is not None:
        raise CheError("give --lr or --lrs, not both")
    if lr is not None and not 0 < lr < 1:
        raise CheError(f"--lr must be in (0, 1), got {lr:g}")
    if seed is not None and not 0 <= seed < 2**32:
        raise CheError(f"--seed must be in [0, 2^32), got {seed}")
    grid = build_grid(
        values, label, tasks=task, pes=pe, seeds=seeds if seeds is not None else None if seed is None else [seed],
        lrs=lrs if lrs is not None else None if lr is None else [lr], preset=preset, results=results,
        plugins=plugin, steps=steps, batch_size=batch_size,
        train_length=train_length, max_test_length=max_test_length, eval_samples=eval_samples,
        n_layers=n_layers, d_model=d_model, n_heads=n_heads, dropout=dropout, eval_dropout=eval_dropout,
        rand_max_length=rand_max_length, rand_at_eval=rand_at_eval, rand_mode=rand_mode, length_seed=length_seed,
        learned_max_length=learned_max_length, dape_width=dape_width, dape_variant=dape_variant,
        dape_kernel=dape_kernel, dape_impl=dape_impl, dape_init=dape_init, bf16=bf16, compile=compile,
        cuda_graphs=cuda_graphs, checkpoint_every=checkpoint_every, eval_memory_gb=eval_memory_gb,
        save_model=save_model, require_tasks="--task", require_pes="--pe", options={"tasks": "--task", "pes": "--pe"})
    if len(grid.tasks) != 1 or len(grid.pes) != 1:
        raise CheError(f"che run trains one task x PE, {label} gives {len(grid.tasks)} task(s) x {len(grid.pes)} "
                       f"PE(s); use che sweep for a grid")
    configs = grid.configs()
    task, preset, results = grid.tasks[0], grid.preset, grid.results
    task_obj = TASKS.get(task)
    configs[0].validate_for(task_obj)
    _probe_sampler(task_obj, configs[0])
    run_seeds = grid.seeds
    config = configs[0]
    torch_device = pick_device(device)
    # The estimate is an upper bound (fused attention never holds the T x T scores): refuse only what
    # cannot fit even at a quarter of it; a step that still fails to allocate is caught below.
    need, free = training_memory_bytes(config, task_obj, len(configs)), available_memory_bytes(torch_device)
    if need / 4 > free:
        raise CheError(_memory_message(config, len(configs), need, free))
    one_example = evaluation_memory_bytes(config, task_obj, len(configs))  # evaluation chunks down to this
    if one_example / 4 > free:
        raise CheError(_evaluation_memory_message(config, len(configs), one_example, free))
    out = err_console if quiet else console
    todo = configs if force else [c for c in configs if not is_finished(result_path(results, c))]
    if todo:
        check_resumable(results, todo, force, resume)  # at once, not after an estimate
    runs = (f"seed {config.seed}, lr {config.lr:g}" if len(configs) == 1 else
            f"{len(configs)} runs (seeds {', '.join(map(str, run_seeds))} x lr "
            f"{', '.join(f'{c:g}' for c in dict.fromkeys(c.lr for c in configs))})")
    if len(configs) > 1:
        runs += (f", {len(todo)} to train" + (" as one pack" if len(todo) > 1 else "")
                 + (f" ({len(configs) - len(todo)} finished)" if len(todo) < len(configs) else ""))
    out.print(f"{task} x {config.pe}  preset {preset}: {config.steps} steps, batch {config.batch_size}, "
              f"train 1..{config.train_length}, test 1..{config.max_test_length} x {config.eval_samples}, "
              f"{runs}, {torch_device}", soft_wrap=True)
    if todo and not (resume and find_checkpoint(results, todo)[0].exists()):
        from che.threads import chosen_by_user

        with _allocation_failures(config, len(todo), need, free):
            estimate = estimate_seconds(todo, task_obj, torch_device, choose_threads=not chosen_by_user())
        low, high = estimate["train_range_s"]
        out.print(f"estimated cost: training ~{format_duration(estimate['train_s'])} "
                  f"({format_duration(low)}-{format_duration(high)}; {1 / estimate['step_s']:.1f} steps/s with "
                  f"{estimate['threads']} thread(s), measured here), "
                  f"evaluation ~{format_duration(estimate['eval_s'])}", soft_wrap=True)
    if tensorboard is not None:
        try:
            tb = TensorBoardReporter(str(tensorboard))
        except ImportError:
            raise CheError("--tensorboard needs the tensorboard package: pip install 'che-bench[tensorboard]'") from None
    else:
        tb = None
    reporter = FanOut(LogReporter(out) if quiet else RichReporter(console), tb)
    try:
        with _allocation_failures(config, len(configs), need, free):
            outcomes = execute_pack(configs, results, device=device, force=force, resume=resume, reporter=reporter)
    except Interrupted as stop:
        reporter.close()
        print(f"{stop}; continue with the same command and --resume", file=sys.stderr)
        raise typer.Exit(130) from None
    except KeyboardInterrupt:  # during evaluation: training ended with a checkpoint
        reporter.close()
        print("interrupted during evaluation; the trained model is in its checkpoint: continue with the same "
              "command and --resume", file=sys.stderr)
        raise typer.Exit(130) from None
    except FloatingPointError as exc:  # every run being trained diverged
        reporter.close()
        print(f"error: {diverged_message(exc, todo)}", file=sys.stderr)
        raise typer.Exit(1) from None
    finally:
        reporter.close()
    n = config.train_length
    for run_config, outcome in zip(configs, outcomes):
        label = f"{task} x {config.pe}" + ("" if len(configs) == 1 else f", seed {run_config.seed} lr {run_config.lr:g}")
        if outcome.status == "failed":
            out.print(f"\n{label}: failed: {outcome.record['error']}", highlight=False)
            continue
        record = outcome.record
        if outcome.status == "skipped":
            out.print(f"already finished (use --force to run again): {outcome.path}", highlight=False)
        out.print(Text.assemble("\n", (label, "bold"), f": unseen lengths {n + 1}..{config.max_test_length}: ",
                                (f"{100 * record['ood_accuracy']:.1f}%", "bold"),
                                f"   seen 1..{n}: {100 * record['in_distribution_accuracy']:.1f}%   "
                                f"chance {100 * record['chance_accuracy']:.0f}%"))
        for line in accuracy_chart(record["accuracy_by_length"], n):
            out.print("  " + line, highlight=False)
        out.print(f"result: {outcome.path}", highlight=False)
    if any(o.status == "failed" for o in outcomes):
        raise typer.Exit(1)


def _memory_message(config, runs: int, need: int, free: int) -> str:
    return (f"a training step of {config.task} at --train-length {config.train_length} with --batch-size "
            f"{config.batch_size}{f' x {runs} runs' if runs > 1 else ''} needs up to {need / 2**30:.1f} GiB; "
            f"{free / 2**30:.1f} GiB are free: lower --batch-size or --train-length")


def _evaluation_memory_message(config, runs: int, need: int, free: int) -> str:
    return (f"evaluating {config.task} at --max-test-length {config.max_test_length} needs up to "
            f"{need / 2**30:.1f} GiB for a single example{f' of {runs} runs' if runs > 1 else ''}; "
            f"{free / 2**30:.1f} GiB are free: lower --max-test-length")


@contextlib.contextmanager
def _allocation_failures(config, runs: int, need: int, free: int):
    """An allocation that fails (torch.OutOfMemoryError, "can't allocate memory") as one line, naming
    what training and evaluation need."""
    try:
        yield
    except (RuntimeError, MemoryError) as exc:
        if not isinstance(exc, MemoryError) and "memory" not in str(exc).lower():
            raise
        from che.registry import TASKS
        from che.runners.estimate import evaluation_memory_bytes

        evaluation = evaluation_memory_bytes(config, TASKS.get(config.task), runs)
        raise CheError(f"an allocation failed: a training step needs up to {need / 2**30:.1f} GiB and evaluating "
                       f"one example at length {config.max_test_length} up to {evaluation / 2**30:.1f} GiB; "
                       f"{free / 2**30:.1f} GiB are free: lower --batch-size, --train-length or "
                       f"--max-test-length") from None


def _probe_sampler(task, config) -> None:
    """Sample a small batch at the shortest and longest lengths the run uses, so that a sampler
    that breaks its contract is refused (one line, from Task.sample's checks) before anything runs."""
    import torch

    for length in sorted({1, config.train_length, config.max_test_length}):
        task.sample(2, length, torch.Generator().manual_seed(0))


# -- che leaderboard --------------------------------------------------------------------------------
@app.command("leaderboard")
@user_errors
def leaderboard_command(
    results: ResultsFoldersOption = None,
    agg: Annotated[Literal["max", "mean"], typer.Option(
        help="Aggregate runs of a cell: max (as the papers) or mean with a 95% bootstrap interval.")] = "max",
    format: Annotated[Literal["table", "md", "csv", "html", "json"], typer.Option(
        "--format", help="Output format.")] = "table",
    out: Annotated[Optional[Path], typer.Option(help="Write to this file instead of the terminal.")] = None,
    reference: Annotated[Optional[str], typer.Option(
        help="Show a published table beside ours, e.g. dape2024_che_table2.")] = None,
    strict: Annotated[bool, typer.Option(help="With --reference: refuse results of another protocol.")] = False,
    plot: Annotated[Optional[Path], typer.Option(help="Save accuracy-against-length plots (.png, .pdf or .svg).")] = None,
    protocol: Annotated[Optional[str], typer.Option(
        help="Show the runs of this protocol only [default: every protocol, one table each].",
        show_default=False)] = None,
):
    """The tasks x PEs table of OOD accuracy, from a folder of results: one table per protocol
    (runs of different steps, lengths or model sizes never share a cell)."""
    import che
    from che import leaderboards as lb

    _check_output("--out", out)
    _check_output("--plot", plot, PLOT_FORMATS)
    runs = che.load_results(results or [DEFAULT_RESULTS])
    found = lb.protocols(runs)
    labels = [protocol] if protocol is not None else [p.label for p in found]
    if protocol is None and len(found) > 1:
        err_console.print("note: " + lb.mixed_protocols_line(found), soft_wrap=True)
    boards = [che.leaderboard(runs, agg=agg, reference=reference, strict=strict, protocol=label) for label in labels]
    _write_boards(boards, format, out)
    if plot is not None:
        from che.plots import accuracy_vs_length

        for board, label in zip(boards, labels):
            path = plot if len(boards) == 1 else plot.with_name(f"{plot.stem}-{label}{plot.suffix}")
            accuracy_vs_length(board, path)
            err_console.print(f"wrote {path}")


def _write_boards(boards, format: str, out: Path | None) -> None:
    """One leaderboard, or one per protocol (tables and md/html sections titled by protocol, csv rows
    with their protocol, json a list)."""
    from che import leaderboards as lb

    for board in boards:
        line = lb.protocol_line(board)
        if line and format == "table":
            err_console.print(line, soft_wrap=True)
    several = len(boards) > 1
    if format == "table":
        capture = Console(record=True, width=220, markup=False) if out is not None else Console(
            width=max(console.width, 200) if not console.is_terminal else None, markup=False)
        with capture.capture() if out is not None else contextlib.nullcontext():
            for board in boards:
                capture.print(lb.render(board, format, titled=several))
        text = capture.export_text() if out is not None else None
    elif format == "json" and several:
        text = "[\n" + ",\n".join(lb.render(board, format) for board in boards) + "\n]\n"
    elif format == "csv" and several:
        text = "".join(lb.render(board, format) if i == 0 else lb.render(board, format).split("\n", 1)[1]
                       for i, board in enumerate(boards))
    else:
        text = "\n".join(lb.render(board, format, titled=several) for board in boards)
    if out is not None:
        out.write_text(text)
        err_console.print(f"wrote {out}")
    elif text is not None:
        print(text, end="" if text.endswith("\n") else "\n")


# -- che compare ------------------------------------------------------------------------------------
@app.command("compare")
@user_errors
def compare_command(
    pes: Annotated[str, typer.Option(help="Two PEs, A,B: is A better than B?", show_default=False)],
    tasks: Annotated[Optional[str], typer.Option(help="Tasks, comma-separated [default: every task with both].",
                                                 show_default=False)] = None,
    results: ResultsFoldersOption = None,
    format: Annotated[Literal["table", "md", "csv", "json"], typer.Option("--format", help="Output format.")] = "table",
    protocol: Annotated[Optional[str], typer.Option(
        help="The protocol whose runs to compare, where the results hold several (`che leaderboard` names them).",
        show_default=False)] = None,
):
    """Per task: the difference of mean OOD accuracy of two PEs over their runs, its 95% bootstrap
    interval, an exact permutation test, p-values adjusted for the number of tasks (Holm), and how
    many tasks A wins significantly."""
    import che
    from che.comparisons import single_run_note, summary
    from che.models.positional import canonical_pe_name

    names = [canonical_pe_name(p.strip()) for p in pes.split(",") if p.strip()]
    if len(names) != 2 or names[0] == names[1]:
        raise CheError(f"--pes takes two different PEs, A,B; got {pes!r}")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    table = che.compare(che.load_results(results or [DEFAULT_RESULTS]), names[0], names[1], tasks=task_list,
                        protocol=protocol)
    note = single_run_note(table)
    if note:
        err_console.print(note, highlight=False, soft_wrap=True)
    if format == "json":
        print(table.to_json(orient="records", indent=2))
        return
    if format == "csv":
        from che.leaderboards import csv_safe

        print(csv_safe(table).to_csv(index=False, float_format="%.4g"), end="")
        return

    def number(value, spec):
        return "n/a" if value != value else f"{value:{spec}}"  # nan: no statistic

    shown = table.assign(**{
        "A - B (pp)": table.difference.map("{:+.1f}".format),
        "95% CI": ["n/a" if lo != lo else f"[{lo:+.1f}, {hi:+.1f}]" for lo, hi in zip(table.ci_low, table.ci_high)],
        "p": [number(v, ".3g") for v in table.p_value], "p (Holm)": [number(v, ".3g") for v in table.p_adjusted],
        "runs": [f"{a}/{b}" for a, b in zip(table.runs_a, table.runs_b)],
        "significant": table.significant.map({True: "yes", False: ""})})
    shown = shown[["task", "A - B (pp)", "95% CI", "p", "p (Holm)", "runs", "significant"]]
    text = summary(table, *names)
    if format == "md":
        from che.leaderboards import md_escape

        print(shown.assign(task=shown.task.map(md_escape)).to_markdown(index=False)
              + md_escape(f"\n\nA = {names[0]}, B = {names[1]}. {text}"))
        return
    rich = Table(title=f"{names[0]} (A) vs {names[1]} (B): OOD accuracy over runs")
    for column in shown.columns:
        rich.add_column(column, justify="left" if column == "task" else "right")
    for row in shown.itertuples(index=False):
        rich.add_row(*[str(v) for v in row])
    console.print(rich)
    console.print(text, highlight=False, soft_wrap=True)


# -- che eval / che show ---------------------------------------------------------------------------
RunArgument = Annotated[str, typer.Argument(help="A run: its result file, or its run id (found under --results).",
                                            show_default=False)]


@app.command("eval")
@user_errors
def eval_command(
    run: RunArgument,
    results: ResultsOption = DEFAULT_RESULTS,
    out_results: Annotated[Path, typer.Option("--out-results", help="Where to write the evaluation result.")] = Path(
        "results/evals"),
    max_test_length: Annotated[Optional[int], typer.Option(help="Evaluate on lengths 1..M.", show_default=False)] = None,
    eval_samples: Annotated[Optional[int], typer.Option(help="Test examples per length.", show_default=False)] = None,
    eval_dropout: Annotated[Optional[bool], typer.Option(
        "--eval-dropout/--no-eval-dropout", help="Keep dropout on at evaluation [default: as the run].",
        show_default=False)] = None,
    rand_at_eval: Annotated[Optional[bool], typer.Option(
        "--rand-at-eval/--no-rand-at-eval", help="Randomized PEs randomize at evaluation [default: as the run].",
        show_default=False)] = None,
    eval_memory_gb: Annotated[Optional[float], typer.Option(help="Memory budget of evaluation chunks.",
                                                            show_default=False)] = None,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "auto",
    quiet: Annotated[bool, typer.Option(help="Plain log lines instead of a live display.")] = False,
    plugin: PluginOption = None,
):
    """Evaluate a stored run again on longer lengths or other settings.

    The run's kept model is evaluated; writes an evaluation result, linked to the run, that `che leaderboard --results` reads like any
    result."""
    from che.progress import LogReporter, RichReporter, accuracy_chart
    from che.runners.estimate import format_duration
    from che.runners.inspection import evaluation_seconds, reevaluate
    from che.runners.run import check_writable, pick_device
    from che.runners.stored import find_run, read_weights, stored_config

    _load_plugins(plugin)
    record, path = find_run(run, results)
    changes = dict(max_test_length=max_test_length, eval_samples=eval_samples, eval_dropout=eval_dropout,
                   rand_at_eval=rand_at_eval, eval_memory_gb=eval_memory_gb)
    # everything that can be refused is refused before the evaluation: the run's stored configuration,
    # its weights, the new settings, the output folder
    length = stored_config(record, changes).max_test_length
    read_weights(record, path)
    check_writable(out_results)
    out = err_console if quiet else console
    reporter = LogReporter(out) if quiet else RichReporter(console)
    torch_device = pick_device(device)
    seconds = evaluation_seconds(record, torch_device, **changes)
    out.print(f"{record['task']} x {record['pe']} (run {record['run_id']}): evaluating lengths 1..{length} on "
              f"{torch_device}, estimated cost ~{format_duration(seconds)}", soft_wrap=True)
    reporter.evaluation_started(length)
    try:
        written = reevaluate(record, path, torch_device, out_results, on_length=reporter.length_done, **changes)
    finally:
        if hasattr(reporter, "close"):
            reporter.close()
    evaluation = json.loads(written.read_text())
    n = evaluation["config"]["train_length"]
    out.print(f"{evaluation['task']} x {evaluation['pe']} (run {record['run_id']}): unseen lengths "
                     f"{n + 1}..{length}: {100 * evaluation['ood_accuracy']:.1f}%", highlight=False, soft_wrap=True)
    for line in accuracy_chart(evaluation["accuracy_by_length"], n):
        out.print("  " + line, highlight=False)
    out.print(f"result: {written}", highlight=False, soft_wrap=True)


@app.command("show")
@user_errors
def show_command(
    run: RunArgument,
    out: Annotated[Path, typer.Option(help="The picture to write (.png, .pdf or .svg).", show_default=False)],
    results: ResultsOption = DEFAULT_RESULTS,
    layer: Annotated[int, typer.Option(help="Attention layer (0 = the first).")] = 0,
    heads: Annotated[Optional[str], typer.Option(help="Heads to draw, e.g. 0,1,2 [default: the first 8].",
                                                 show_default=False)] = None,
    length: Annotated[Optional[int], typer.Option(help="Input length N [default: the training length].",
                                                  show_default=False)] = None,
    sample: Annotated[int, typer.Option(help="Which test example of that length.", min=0, max=10_000)] = 0,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "cpu",
    plugin: PluginOption = None,
):
    """Draw what a run's PE learned: bias, DAPE's correction, attention.

    For one test input, per head: the PE's bias B, DAPE's correction f(S, B) and the attention (as
    the DAPE paper's figures)."""
    from che.runners.inspection import show
    from che.runners.run import pick_device
    from che.runners.stored import find_run

    _load_plugins(plugin)
    _check_output("--out", out, PLOT_FORMATS)
    record, path = find_run(run, results)
    head_list = None
    if heads is not None:
        try:
            head_list = [int(h) for h in heads.split(",") if h.strip()]
        except ValueError:
            head_list = []
        if not head_list:
            raise CheError(f"--heads must be head numbers such as 0,1,2, got {heads!r}")
    show(record, path, out, pick_device(device), layer, head_list, length, sample)
    err_console.print(f"wrote {out}", highlight=False)


# -- che bench --------------------------------------------------------------------------------------
@app.command("bench")
@user_errors
def bench_command(
    pes: Annotated[Optional[str], typer.Option(help="Comma-separated PEs [default: the zoo's main ones].")] = None,
    task: Annotated[str, typer.Option(help="Task whose batches are timed.")] = "reverse_string",
    length: Annotated[int, typer.Option(help="Training length N of the timed batch.")] = 40,
    batch_size: Annotated[int, typer.Option(help="Training batch size.")] = 128,
    eval_length: Annotated[int, typer.Option(help="Test length for evaluation throughput.")] = 500,
    eval_batch: Annotated[int, typer.Option(help="Sequences in the timed evaluation batch.")] = 16,
    repeats: Annotated[int, typer.Option(help="Timed steps per configuration (median reported).")] = 5,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "auto",
    literal: Annotated[bool, typer.Option("--literal/--no-literal",
                                          help="Also time DAPE's literal formulation.")] = True,
    d_model: Annotated[Optional[int], typer.Option(help="Model width (64 = the CHE model).")] = None,
    dape_width: Annotated[Optional[int], typer.Option(help="DAPE MLP width D.")] = None,
    eval_memory_gb: Annotated[float, typer.Option(help="Memory budget of evaluation chunks.")] = 4.0,
    pack: Annotated[Optional[int], typer.Option(help="Also time packs of K runs trained as one model.")] = None,
    attention: Annotated[Literal["fused", "explicit"], typer.Option(
        help="fused (SDPA) or explicit (materialised scores) attention.")] = "fused",
    tf32: Annotated[bool, typer.Option("--tf32/--no-tf32", help="TF32 matmuls on CUDA [default: on].")] = True,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Also time CUDA-graph-captured steps.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Also time torch.compile'd steps.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the JSON to this file.")] = None,
    plugin: PluginOption = None,
):
    """Step time, tokens/s, evaluation throughput and peak memory per PE, side by side."""
    from che.models.positional import canonical_pe_name
    from che.registry import TASKS
    from che.runners.bench import DEFAULT_PES, benchmark, summary_lines
    from che.runners.run import pick_device

    _load_plugins(plugin)
    TASKS.get(task)
    names = [canonical_pe_name(p.strip()) for p in pes.split(",")] if pes else DEFAULT_PES
    _check_range("--length", length, 1, 10_000)
    _check_range("--eval-length", eval_length, 1, 10_000)
    _check_range("--batch-size", batch_size, 1, 1_000_000)
    _check_range("--eval-batch", eval_batch, 1, 1_000_000)
    _check_range("--repeats", repeats, 1, 1000)
    _check_output("--out", out)
    torch_device = pick_device(device)
    if pack is not None:
        _check_range("--pack", pack, 1, 1024)
    if cuda_graphs and torch_device.type != "cuda":
        raise CheError("--cuda-graphs needs a CUDA device (choices here: leave it out)")
    modes = ("eager",) + (("graphs",) if cuda_graphs else ()) + (("compile",) if compile else ())
    packs = (1,) if pack in (None, 1) else (1, pack)
    overrides = {k: v for k, v in {"d_model": d_model, "dape_width": dape_width}.items() if v is not None}
    overrides.update(attention=attention, tf32=tf32)
    log = (lambda msg: err_console.print(msg, highlight=False)) if not as_json else (lambda msg: None)
    report = benchmark(names, task, length, batch_size, eval_length, eval_batch, repeats,
                       str(torch_device), literal, eval_memory_gb, overrides, packs=packs, modes=modes, log=log)
    text = json.dumps(report, indent=1)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    if as_json:
        print(json.dumps(report["records"], indent=1))
        return
    console.print(Text.assemble((report["machine"]["device"], "bold"), f", torch {report['machine']['torch']}; "
                                f"{task}, N = {length}, batch {batch_size}, float32"))
    table = Table(show_lines=False)
    for column in ("pe", "impl", "mode", "pack", "step ms", "x none", "x base", "run-steps/s", "tokens/s",
                   f"eval seq/s @{eval_length}", "eval peak MB"):
        table.add_column(column, justify="left" if column in ("pe", "impl", "mode") else "right")
    for r in report["records"]:
        table.add_row(r["pe"], r["impl"], r["mode"], str(r["pack"]), f"{r['step_ms']:.1f}", f"{r['step_vs_none']:.2f}",
                      "" if r["step_vs_base"] is None else f"{r['step_vs_base']:.2f}",
                      f"{r['run_steps_per_s']:,.1f}", f"{r['tokens_per_s']:,.0f}",
                      "–" if r["eval_seq_per_s"] is None else f"{r['eval_seq_per_s']:.2f}",
                      "–" if r["peak_mem_mb"] is None else f"{r['peak_mem_mb']:,.0f}")
    console.print(table)
    for line in summary_lines(report):
        console.print(line, highlight=False)


# -- che sweep --------------------------------------------------------------------------------------
@app.command("sweep")
@user_errors
def sweep_command(
    spec: Annotated[Optional[str], typer.Argument(
        help="A sweep file (TOML), or the name of one that ships with che: cpu_leaderboard, dape_table2. "
             "Options given here override the file.", show_default=False)] = None,
    tasks: Annotated[Optional[str], typer.Option(help="'all' (the 15 CHE tasks) or task names, comma-separated.")] = None,
    pes: Annotated[Optional[str], typer.Option(help="Positional encodings, comma-separated (`che pes`).")] = None,
    seeds: Annotated[Optional[str], typer.Option(
        help="A count N (seeds 0..N-1) or seeds, comma-separated (default: 1).")] = None,
    lrs: Annotated[Optional[str], typer.Option(
        help="Learning rates, comma-separated (default: the preset's).")] = None,
    preset: Annotated[Optional[Preset], typer.Option(help="The preset (default: cpu).", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Training steps of every run.")] = None,
    results: Annotated[Optional[Path], typer.Option(
        help="Results folder (default: the sweep file's, else results/runs).")] = None,
    executor: Annotated[str, typer.Option(help="local (a process pool), ray or slurm (a SLURM job per pack).")] = "local",
    jobs: Annotated[Optional[int], typer.Option(
        help="Runs at a time (default: one per CPU core, or --jobs-per-gpu per GPU); with slurm, SLURM jobs "
             "(one per pack) submitted at a time (default: up to 1000).")] = None,
    jobs_per_gpu: Annotated[int, typer.Option(help="Runs sharing each GPU.")] = 1,
    ray_address: Annotated[Optional[str], typer.Option(
        help="Join the Ray cluster at this address (default: RAY_ADDRESS if set, else start a local one).")] = None,
    slurm_partition: Annotated[Optional[str], typer.Option(
        help="SLURM partition of the jobs (default: the cluster's).")] = None,
    slurm_gpus_per_job: Annotated[Optional[int], typer.Option(
        help="GPUs per SLURM job (default: 1 with --device cuda or auto, 0 with cpu).")] = None,
    slurm_cpus_per_job: Annotated[Optional[int], typer.Option(
        help="CPUs per SLURM job, also its torch threads (default: 4 with a GPU, else 1).")] = None,
    slurm_time: Annotated[Optional[int], typer.Option(
        help="Minutes per SLURM job (default: 1440). A job out of time saves a checkpoint; its runs are "
             "recorded as failed and resume on the next sweep.")] = None,
    slurm_mem_gb: Annotated[Optional[int], typer.Option(
        help="Memory per SLURM job in GB (default: the partition's).")] = None,
    slurm_array_parallelism: Annotated[Optional[int], typer.Option(
        help="Jobs of one SLURM job array running at once (default: 256).")] = None,
    slurm_local: Annotated[bool, typer.Option(
        help="Run the slurm executor's jobs as local processes (submitit's local executor), to try it out.")] = False,
    device: Annotated[Device, typer.Option(help="Where to compute.")] = "auto",
    pack: Annotated[str, typer.Option(
        help="Train runs that differ only in seed and lr together as one model: auto (on a GPU as many "
             "as fit, on a CPU up to 4), off, or a number K.")] = "auto",
    force: Annotated[bool, typer.Option(help="Run finished runs again, from the start.")] = False,
    dry_run: Annotated[bool, typer.Option(help="List the runs and the estimated cost; run nothing.")] = False,
    estimate: Annotated[bool, typer.Option(
        "--estimate/--no-estimate", help="With --dry-run: the estimated cost (from a calibration of the device).")] = True,
    quiet: Annotated[bool, typer.Option(help="Plain log lines instead of a progress bar.")] = False,
    plugin: PluginOption = None,
):
    """Run a grid of tasks x PEs x learning rates x seeds; finished runs are skipped, failures recorded.

    Each run is exactly `che run --resume` with its configuration. Ctrl-C stops cleanly: running
    runs save a checkpoint and the same command continues them. Exit code: 0, 1 if a run failed,
    130 after Ctrl-C.
    """
    from che.registry import loaded_plugins
    from che.progress import LogSweepReporter, RichSweepReporter
    from che.runners import grid as grids
    from che.runners import sweep as sw
    from che.runners.executors import EXECUTORS, make_executor
    from che.runners.packs import parse_pack
    from che.runners.run import check_writable

    if executor not in EXECUTORS:
        raise CheError(f"unknown executor '{executor}' (choices: {', '.join(EXECUTORS)})")
    if jobs is not None:
        _check_range("--jobs", jobs, 1, 4096)
    _check_range("--jobs-per-gpu", jobs_per_gpu, 1, 64)
    slurm = _slurm_options(executor, device, slurm_partition, slurm_gpus_per_job, slurm_cpus_per_job, slurm_time,
                           slurm_mem_gb, slurm_array_parallelism, slurm_local)
    label, values = grids.read_spec(spec) if spec else ("command line", {})
    grid = grids.build_grid(values, label, tasks=tasks, pes=pes, seeds=seeds, lrs=lrs, preset=preset,
                         results=results, plugins=plugin, steps=steps)
    configs = grid.configs()
    out = err_console if quiet else console
    out.print(f"sweep {label}: {len(configs)} runs ({grid.describe()}), results in {grid.results}",
              highlight=False, soft_wrap=True)
    measure_on = _measuring_device(device, slurm)
    pack_size = parse_pack(pack, configs, measure_on)
    if slurm and slurm.gpus and pack == "auto":
        out.print("--pack auto: nothing is measured on the machine that submits SLURM jobs, so each job "
                  "trains one run (--pack K trains K runs per job)", soft_wrap=True)
    if pack_size > 1:
        out.print(f"runs that differ only in seed and lr train in packs of up to {pack_size}", highlight=False)
    if dry_run:
        try:
            _sweep_dry_run(grid, configs, executor, jobs, jobs_per_gpu, device, pack_size, slurm, estimate)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None
        return
    factory = make_executor(executor, grid.results, loaded_plugins(), device, jobs, jobs_per_gpu, ray_address,
                            slurm, force=force)
    check_writable(grid.results)  # before any run starts, not in every worker after it trained
    live = not quiet and console.is_terminal
    reporter = RichSweepReporter(console) if live else LogSweepReporter(err_console)
    summary = sw.run_sweep(configs, grid.results, factory, reporter, pack=pack_size, force=force)
    console.print(summary.line(), highlight=False, soft_wrap=True)
    if summary.failures:
        console.print("failed runs are recorded (config, error, traceback) in:", highlight=False, soft_wrap=True)
        for path in summary.failures[:20]:
            console.print(f"  {path}", highlight=False, soft_wrap=True)
        if len(summary.failures) > 20:
            console.print(f"  ... and {len(summary.failures) - 20} more *.failed.json under {grid.results}",
                          highlight=False, soft_wrap=True)
        console.print("they are retried when the sweep runs again", highlight=False, soft_wrap=True)
    if summary.stopped:
        err_console.print("stopped: run the same command again to continue (interrupted runs resume "
                          "from their checkpoints)", highlight=False, soft_wrap=True)
    if summary.exit_code:
        raise typer.Exit(summary.exit_code)


def _slurm_options(executor: str, device: str, partition, gpus, cpus, time_min, mem_gb, array_parallelism, local):
    """The checked --slurm-* options as SlurmOptions (None for the other executors, which refuse them)."""
    from che.runners.executors.slurm import slurm_options

    given = {"--slurm-partition": partition, "--slurm-gpus-per-job": gpus, "--slurm-cpus-per-job": cpus,
             "--slurm-time": time_min, "--slurm-mem-gb": mem_gb, "--slurm-array-parallelism": array_parallelism,
             "--slurm-local": local or None}
    if executor != "slurm":
        option = next((name for name, value in given.items() if value is not None), None)
        if option:
            raise CheError(f"{option} is an option of the slurm executor (add --executor slurm)")
        return None
    for option, low, high in (("--slurm-gpus-per-job", 0, 64), ("--slurm-cpus-per-job", 1, 1024),
                              ("--slurm-time", 1, 366 * 24 * 60), ("--slurm-mem-gb", 1, 65536),
                              ("--slurm-array-parallelism", 1, 100_000)):
        if given[option] is not None:
            _check_range(option, given[option], low, high)
    if partition is not None and not partition.strip():
        raise CheError("--slurm-partition is empty")
    return slurm_options(device, gpus, cpus, time_min, partition, mem_gb, array_parallelism, local)


def _measuring_device(device: str, slurm) -> str:
    """Where to measure a pack's memory: the sweep's device; for SLURM jobs none (this machine, a
    login node, trains nothing), so `--pack auto` gives one run per job there."""
    return device if slurm is None else "cpu"


def _sweep_dry_run(grid, configs, executor: str, jobs: int | None, jobs_per_gpu: int, device: str,
                   pack: int = 1, slurm=None, estimate: bool = True) -> None:
    """The runs with their state, and the estimated cost of those left (`che.runners.cost`: counted
    work x a calibration of the device; nothing is trained to estimate it)."""
    from che.runners import cost
    from che.runners import planning as sw
    from che.runners.estimate import format_duration
    from che.runners.packs import make_packs
    from che.runners.executors import local_plan
    from che.runners.executors.slurm import SLURM_MAX_IN_FLIGHT

    rows = sw.plan(configs, grid.results)
    table = Table(title=f"che sweep --dry-run: {len(rows)} runs")
    for column in ("task", "pe", "seed", "lr", "run id", "state"):
        table.add_column(column, no_wrap=True)
    for r in rows:
        table.add_row(r["task"], r["pe"], str(r["seed"]), f"{r['lr']:g}", r["run_id"], r["state"])
    Console(width=max(console.width, 120) if not console.is_terminal else None, markup=False).print(table)
    todo = [c for c, r in zip(configs, rows) if r["state"] not in ("finished", "running elsewhere")]
    counts = {s: sum(r["state"] == s for r in rows) for s in dict.fromkeys(r["state"] for r in rows)}
    console.print(", ".join(f"{n} {s}" for s, n in counts.items()), soft_wrap=True)
    if not todo:
        console.print("nothing to run", soft_wrap=True)
        return
    if not estimate:
        return
    packs = make_packs(todo, pack)
    if slurm is None:  # where the runs will go: this machine's device, measured once and cached
        import torch

        plan = local_plan(device, jobs, jobs_per_gpu, len(packs))
        calibration = cost.for_device(torch.device(plan.device), plan.threads)
        where = f"{plan.device} ({calibration.device}, {calibration.source})"
    else:  # the nodes' devices: a calibration shipped or cached, never a measurement on a login node
        calibration = cost.any_gpu_calibration() if slurm.gpus else cost.cpu_calibration(slurm.cpus)
        cost.require(calibration, "the jobs' GPUs" if slurm.gpus else "a CPU")
        where = f"nodes like {calibration.device} ({calibration.source})"
    seconds = cost.grid_seconds(todo, calibration, pack)
    by_run = {c.run_id: s for c, s in zip(todo, seconds)}
    per_pack = [sum(by_run[c.run_id] for c in p) for p in packs]
    console.print(f"estimated cost of the {len(todo)} runs left: {format_duration(sum(seconds))} of device time "
                  f"on {where}", soft_wrap=True)
    if executor == "local":
        wall = sw.expected_wall(per_pack, plan.jobs)
        console.print(f"about {format_duration(wall)} here with {plan.describe()}", soft_wrap=True)
    elif executor == "slurm":
        at_once = min(jobs or SLURM_MAX_IN_FLIGHT, slurm.array_parallelism, len(packs))
        longest = max(per_pack)
        console.print(f"on SLURM: {len(packs)} job(s), the longest about {format_duration(longest)} "
                      f"(--slurm-time {slurm.time_min} min); about "
                      f"{format_duration(sw.expected_wall(per_pack, at_once))} if {at_once} run at once", soft_wrap=True)
        if longest > 60 * slurm.time_min:
            console.print("a job out of time saves a checkpoint and the next sweep resumes its runs: raise "
                          "--slurm-time, or run the sweep again until it is done", soft_wrap=True)
    elif jobs:
        console.print(f"about {format_duration(sw.expected_wall(per_pack, jobs))} with {jobs} "
                      f"parallel packs of this speed on the Ray cluster", soft_wrap=True)
    else:
        console.print("on Ray: divide by the number of runs the cluster holds at once (--jobs to say)", soft_wrap=True)


@app.callback(invoke_without_command=True)
def main_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="Torch threads [default: OMP_NUM_THREADS, else the usable cores].", min=1, max=1024,
    )] = None,
):
    """Chomsky Hierarchy Evaluation: how well does a positional encoding let a transformer generalize
    to longer inputs?"""
    if version:
        from che import __version__

        print(f"che (distribution che-bench) {__version__}")
        raise typer.Exit(0)
    # Before any command imports torch: passive OpenMP waiting and a thread count that fits the machine.
    configure_threads(threads)
    if ctx.invoked_subcommand is None:
        print(ctx.get_help())
        raise typer.Exit(0)


def main(args: list[str] | None = None) -> None:
    """The `che` command (`args`: the arguments, default sys.argv[1:]): usage errors are one line,
    `error: ...`, with exit code 2; exits with the command's code."""
    from typer.exceptions import TyperException

    args = sys.argv[1:] if args is None else list(args)
    os.environ["CHE_COMMAND"] = shlex.join(["che", *args])  # stored with each result
    try:
        code = typer.main.get_command(app).main(args=args, prog_name="che", standalone_mode=False)
    except TyperException as exc:  # click's usage errors (exit code 2) and other reported errors
        ctx = getattr(exc, "ctx", None)
        where = f"che {ctx.command_path.split(' ', 1)[1]}" if ctx is not None and " " in ctx.command_path else "che"
        print(f"error: {exc.format_message()} (see {where} --help)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort:
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
