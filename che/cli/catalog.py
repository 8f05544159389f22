"""`che tasks`, `che sample`, `che pes`, `che settings`: what che offers. Without plugins the listings
come from files generated from the code (`che.listings`), so these answer without loading torch."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.table import Table

from che.cli.common import (PluginOption, app, console, err_console, fitted_tables, load_plugins, print_tables,
                            terminal_width, user_errors)
from che.errors import CheError


def _plugins_in_play(plugin: list[str] | None, group: str) -> bool:
    """Whether a command must import plugins (and so torch) to list everything."""
    from che.registry import plugin_entry_points, env_plugins

    return bool(plugin) or bool(env_plugins()) or bool(plugin_entry_points(group))


@app.command("tasks")
@user_errors
def tasks_command(name: Annotated[Optional[str], typer.Argument(help="A task to describe in full.",
                                                                show_default=False)] = None,
                  plugin: PluginOption = None,
                  as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """List the tasks (built-in and plugin), or describe one with its docstring (`che tasks NAME`)."""
    from che import listings

    if _plugins_in_play(plugin, "che.tasks"):
        load_plugins(plugin)
        rows = listings.describe_tasks()
    else:
        rows = listings.builtin_tasks()
    if name is not None:
        lines = listings.describe_task(name, rows)
        if as_json:
            print(json.dumps(next(r for r in rows if r["name"] == name), indent=2))
        else:
            console.print("\n".join(lines), soft_wrap=True)
        return
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
    print_tables([table])


@app.command("sample")
@user_errors
def sample_command(
    task: Annotated[str, typer.Option(help="Task name (`che tasks`).")],
    length: Annotated[int, typer.Option(help="Length N.")],
    count: Annotated[int, typer.Option(help="Number of samples.")] = 5,
    seed: Annotated[int, typer.Option(help="Sampler seed.")] = 0,
    format: Annotated[Literal["jsonl", "text"], typer.Option("--format", help="jsonl or text.")] = "text",
    plugin: PluginOption = None,
):
    """Print samples of a task: `jsonl` (one JSON object per line) or `text` (the task's symbols)."""
    from che.registry import TASKS

    load_plugins(plugin)
    task_obj = TASKS.get(task)
    batch = task_obj.examples(count, length, seed)
    for inputs, targets in zip(batch.inputs.tolist(), batch.targets.tolist()):
        if format == "jsonl":
            print(json.dumps({"task": task, "length": length, "input": inputs, "target": targets}))
        else:
            print(f"{task_obj.render(inputs, task_obj.input_symbols)}  ->  "
                  f"{task_obj.render(targets, task_obj.output_symbols)}")


@app.command("pes")
@user_errors
def pes_command(
    name: Annotated[Optional[str], typer.Argument(help="A PE to describe in full.", show_default=False)] = None,
    show: Annotated[Optional[str], typer.Option(help="Show the bias this PE adds at initialisation.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="With --show: draw the bias (.png, .pdf or .svg).",
                                                 show_default=False)] = None,
    length: Annotated[int, typer.Option(help="Sequence length T for --show.")] = 8,
    n_heads: Annotated[int, typer.Option(
        "--n-heads", help="For --show: how many heads the model has (the PE's n_heads; ALiBi's slopes depend on "
                          "it), all shown.")] = 8,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    plugin: PluginOption = None,
):
    """List the positional encodings, describe one (`che pes NAME`), or show one's attention bias
    (`--show NAME --length T`)."""
    from che import listings

    if plot is not None and show is None:
        raise CheError("--plot draws the bias of --show NAME; give --show")
    if show is not None:
        _show_bias(show, length, n_heads, as_json, plugin, plot)
        return
    if name is not None or _plugins_in_play(plugin, "che.positional_encodings"):
        load_plugins(plugin)
    if name is not None:
        data, lines = listings.describe_pe(name)
        if as_json:
            print(json.dumps(data, indent=2))
        else:
            console.print("\n".join(lines), soft_wrap=False)
        return
    rows = listings.describe_all_pes() if _plugins_in_play(plugin, "che.positional_encodings") else listings.builtin_pes()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(title="Positional encodings (`--pe NAME`; `che pes NAME` for details)")
    for column in ("name", "family", "parameters", "source of the PE"):
        table.add_column(column, overflow="fold", no_wrap=column == "name")
    for row in rows:
        table.add_row(row["name"], row["family"], row["parameters"], row["cite"]
                      + ("" if row["source"] == "builtin" else f" [{row['source']}]"))
    print_tables([table])
    aliases = ", ".join(f"{a} = {n}" for r in rows for a, n in r.get("aliases", {}).items())
    console.print(f"Aliases: {aliases}", soft_wrap=True)


def _show_bias(show: str, length: int, n_heads: int, as_json: bool, plugin, plot: Path | None = None) -> None:
    from che.runners.inspection import initial_bias
    from che.plots import FORMATS
    from che.results import check_output

    load_plugins(plugin)
    check_output("--plot", plot, FORMATS)
    bias, note = initial_bias(show, length, n_heads)
    if plot is not None:
        if bias is None:
            raise CheError(f"{show}: {note}; there is no bias to draw")
        from che.plots import heatmaps

        heatmaps([(f"head {h}", [("bias B at initialisation", bias[h].numpy())]) for h in range(min(n_heads, 8))],
                 plot, f"{show}, T = {length}" + (f" ({note})" if note else ""))
        err_console.print(f"wrote {plot}")
        return
    if as_json:
        print(json.dumps({"pe": show, "length": length,
                          "bias": None if bias is None else [[[round(float(v), 6) + 0.0 for v in row] for row in head]
                                                             for head in bias.tolist()]}  # + 0.0: no -0.0
                         | ({"note": note} if note else {})))
        return
    if note:
        console.print(f"{show}: {note}", soft_wrap=True)
    for h, head in enumerate([] if bias is None else bias.tolist()):
        cells = _numbers(head)

        def table(keys: list[int], part: int, parts: int) -> Table:
            title = f"{show}, head {h} (rows: query i, columns: key j)"
            if parts > 1:
                title += f", keys {keys[0]}..{keys[-1]}"
            shown = Table(title=title)
            shown.add_column("i\\j")
            for j in keys:
                shown.add_column(str(j), justify="right", no_wrap=True)
            for i, row in enumerate(cells):
                shown.add_row(str(i), *[row[j] for j in keys])
            return shown

        print_tables(fitted_tables(table, list(range(length)), terminal_width()))


def _numbers(rows: list[list[float]]) -> list[list[str]]:
    """A table's numbers as text, all with the decimals that give its largest magnitude three
    significant digits; no "-0"."""
    largest = max((abs(v) for row in rows for v in row if math.isfinite(v)), default=0.0)
    decimals = 0 if largest == 0 else min(6, max(0, 2 - math.floor(math.log10(largest))))
    zero = f"{0:.{decimals}f}"

    def text(value: float) -> str:
        shown = f"{value:.{decimals}f}"
        return zero if shown.lstrip("-") == zero else shown

    return [[text(v) for v in row] for row in rows]


@app.command("settings")
@user_errors
def settings_command(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False):
    """List every setting of a run: `--set key=value`, and a sweep file's [overrides] table.

    Each with its type, its value under each preset (cpu, the default, first) and what it does."""
    from che import listings
    from che.config import DEFAULT_PRESET, PRESETS

    rows = listings.describe_settings()
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    presets = [DEFAULT_PRESET] + [p for p in PRESETS if p != DEFAULT_PRESET]
    table = Table(title="Settings (`che run --set key=value`; a sweep file's [overrides])",
                  caption=f"{', '.join(presets)}: the value of each setting under --preset NAME; {DEFAULT_PRESET}, "
                          f"the default, is what a run without --preset gets.")
    table.add_column("setting", no_wrap=True)
    table.add_column("type")
    for preset in presets:
        table.add_column(f"{preset}\n(default)" if preset == DEFAULT_PRESET else preset, overflow="fold")
    table.add_column("what it does", overflow="fold")
    for row in rows:
        about = row["about"] + (f" (choices: {', '.join(row['choices'])})" if row["choices"] else "")
        table.add_row(row["name"], row["type"], *[json.dumps(row["presets"][p]) for p in presets], about)
    print_tables([table])
