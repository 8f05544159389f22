"""What every `che` command shares: the app, the consoles, the options several commands take, and
one-line errors (a CheError is `error: ...` on stderr with exit code 2, never a traceback)."""

from __future__ import annotations

import functools
import io
import sys
import warnings
from pathlib import Path
from typing import Annotated, Callable, Optional

import typer
from rich.console import Console
from typer.core import TyperCommand, TyperGroup

from che.errors import CheError
from che.results import DEFAULT_RESULTS


class _FlagsTakeNoValue:
    """typer's rich help shows a flag's type, `--quiet <bool>`, as if the flag took a value: none."""

    def format_help(self, ctx, formatter):
        for param in self.get_params(ctx):
            if getattr(param, "is_flag", False):
                param.metavar = ""  # the rich help prints a given metavar in place of the type
        super().format_help(ctx, formatter)


class _Command(_FlagsTakeNoValue, TyperCommand):
    pass


class _Group(_FlagsTakeNoValue, TyperGroup):
    pass


class _App(typer.Typer):
    def command(self, *args, **kwargs):
        kwargs.setdefault("cls", _Command)
        return super().command(*args, **kwargs)


app = _App(
    name="che",
    cls=_Group,
    # markdown: help texts keep their "[default: ...]" and brackets, and options group into panels
    rich_markup_mode="markdown",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
# No markup: task, PE, plugin and file names are the user's and print as they are ("[red]", "[/]").
console = Console(markup=False, highlight=False)
err_console = Console(stderr=True, markup=False, highlight=False)

PluginOption = Annotated[Optional[list[str]], typer.Option(
    "--plugin", help="A plugin to load: a .py file or a module name (repeatable; CHE_PLUGINS may also list them).",
    rich_help_panel="Plugins")]
SetOption = Annotated[Optional[list[str]], typer.Option(
    "--set", help="Any other setting, as key=value (repeatable; `che settings` lists them), e.g. "
                  "--set batch_size=64 --set dape_width=32.", show_default=False, rich_help_panel="Settings")]
ResultsOption = Annotated[Path, typer.Option("--results", help="Results folder.")]
ResultsFoldersOption = Annotated[Optional[list[Path]], typer.Option(
    "--results", help=f"Results folder; repeat it to read several (your runs beside committed baselines) "
                      f"[default: {DEFAULT_RESULTS}].", show_default=False)]

QUIET_HELP = "Plain log lines instead of a live display (which shows only where stderr is a terminal)."


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


def load_plugins(plugins: list[str] | None) -> None:
    from che.registry import load_plugins as load

    load(plugins)


def settings(pairs: list[str] | None) -> dict:
    """--set key=value ... as {key: value of the setting's type} (`che.config.parse_setting`); a key
    given twice is refused, rather than the last one silently winning."""
    from che.config import parse_setting
    from che.errors import echo

    parsed: dict = {}
    for pair in pairs or []:
        key, value = parse_setting(pair)
        if key in parsed:
            raise CheError(f"--set {echo(key)} is given twice ({echo(parsed[key])} and {echo(value)}); give it once")
        parsed[key] = value
    return parsed


# -- what goes where: the outcome on stdout, the rest on stderr ----------------------------------------
def say(text) -> None:
    """A line of the outcome (scores, result paths) on stdout: what a script reads."""
    console.print(text, soft_wrap=True)


def log(text) -> None:
    """A line about the work (plan, estimate, notes) on stderr."""
    err_console.print(text, soft_wrap=True)


def live_progress(quiet: bool) -> bool:
    """Whether progress shows as a live display, on stderr: where it is a terminal, unless --quiet.
    Otherwise plain lines, with no redraws or control sequences in a file."""
    return not quiet and err_console.is_terminal


# -- tables: fitted to a terminal, whole in a file or a pipe -----------------------------------------
def terminal_width() -> int | None:
    """The width tables must fit: the terminal's where stdout is one; None (as wide as they need)
    for a file or a pipe."""
    return console.width if console.is_terminal else None


def natural_width(renderable) -> int:
    """The columns a table needs to show every cell on one line."""
    return Console(width=1_000_000, markup=False).measure(renderable).maximum


def plain_text(renderable) -> str:
    """A table as plain text (no styles, no control sequences), as wide as it needs: no cell cut or
    wrapped."""
    out = Console(file=io.StringIO(), width=natural_width(renderable), markup=False, highlight=False,
                  color_system=None)
    out.print(renderable)
    return out.file.getvalue()


def print_tables(tables) -> None:
    """Tables on stdout: in a terminal as rich lays them out in its width (`fitted_tables` makes a
    wide one fit), else whole, as plain text."""
    for table in tables:
        if console.is_terminal:
            console.print(table)
        else:
            print(plain_text(table), end="")


def fitted_tables(build: Callable[[list, int, int], object], columns: list, width: int | None) -> list:
    """Tables `build(part, i, n)`, part i of n, over consecutive parts of `columns` (what varies
    across a table's columns: its PEs, its keys), each part as many as fit in `width` with every
    cell on one line (at least one); one table of all columns when `width` is None."""
    if width is None:
        return [build(columns, 1, 1)]
    bare = natural_width(build([], 1, 1))
    parts, used = [[]], bare
    for column in columns:
        extra = natural_width(build([column], 1, 1)) - bare  # the columns' widths add up
        if parts[-1] and used + extra > width:
            parts.append([])
            used = bare
        parts[-1].append(column)
        used += extra
    return [build(part, i, len(parts)) for i, part in enumerate(parts, 1)]
