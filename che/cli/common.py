"""What every `che` command shares: the app, the consoles, the options several commands take, and
one-line errors (a CheError is `error: ...` on stderr with exit code 2, never a traceback)."""

from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from che.errors import CheError
from che.results import DEFAULT_RESULTS

app = typer.Typer(
    name="che",
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


def wide_console() -> Console:
    """A console for a wide table: the terminal's width, or 200 columns when printing to a file."""
    return Console(width=max(console.width, 200) if not console.is_terminal else None, markup=False)
