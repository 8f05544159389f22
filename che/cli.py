"""The `che` command line: tasks, sample, pes, run, leaderboard, sweep, bench."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from che.errors import CheError

app = typer.Typer(
    name="che",
    help="Chomsky Hierarchy Evaluation: how well does a positional encoding let a transformer "
         "generalize to longer inputs?",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)

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


def _check_range(what: str, value: int, low: int, high: int | None = None) -> None:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CheError(f"{what} must be {bound}, got {value}")


# -- che tasks --------------------------------------------------------------------------------------
@app.command("tasks")
@user_errors
def tasks_command(plugin: PluginOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """List the tasks (built-in and plugin)."""
    from che.registry import TASKS
    from che.tasks import LEVELS

    _load_plugins(plugin)
    entries = sorted(TASKS.entries(),
                     key=lambda e: (LEVELS.index(e.obj.level) if e.obj.level in LEVELS else len(LEVELS), e.name))
    if as_json:
        print(json.dumps([e.obj.describe() | {"source": e.source} for e in entries], indent=2))
        return
    table = Table(title="CHE tasks")
    for column in ("task", "level", "input vocab", "output vocab", "output length", "kind", "chance", "source"):
        table.add_column(column)
    for e in entries:
        d = e.obj.describe()
        table.add_row(d["name"], d["level"], str(d["input_size"]), str(d["output_size"]),
                      d["output_length"] + (" (masked)" if d["masked"] else ""), d["kind"],
                      f"{100 * d['chance_accuracy']:.0f}%", e.source)
    console.print(table)


# -- che sample -------------------------------------------------------------------------------------
@app.command("sample")
@user_errors
def sample_command(
    task: Annotated[str, typer.Option(help="Task name (`che tasks`).")],
    length: Annotated[int, typer.Option(help="Length N.")],
    count: Annotated[int, typer.Option(help="Number of samples.")] = 5,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    format: Annotated[str, typer.Option("--format", help="jsonl or text.")] = "text",
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


def main() -> None:
    app()


if __name__ == "__main__":
    main()
