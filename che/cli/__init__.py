"""The `che` command line: a thin layer over the Python API and the runners. A command parses its
options, calls one function, and prints; one module per group of commands:

    catalog.py   che tasks, che sample, che pes, che settings
    run.py       che run, che eval, che show
    results.py   che leaderboard, che compare
    sweep.py     che sweep
    bench.py     che bench
"""

from __future__ import annotations

import sys
from typing import Annotated, Optional

import typer

# Each module registers its commands, in the order `che --help` lists them.
# isort: off
from che.cli import catalog, run, results, sweep, bench  # noqa: F401,E402
# isort: on
from che.cli.common import app
from che.threads import configure as configure_threads


@app.callback(invoke_without_command=True)
def main_options(
    ctx: typer.Context,
    version: Annotated[bool, typer.Option("--version", help="Print the version and exit.")] = False,
    threads: Annotated[Optional[int], typer.Option(
        "--threads", help="Torch threads, of each run in a sweep [default: OMP_NUM_THREADS, else the usable cores; "
                          "a sweep splits them between its runs].", min=1, max=1024,
    )] = None,
):
    """Chomsky Hierarchy Evaluation: how well does a positional encoding let a transformer generalize
    to longer inputs?"""
    if version:
        from che.version import __version__

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

    from che.results import set_command
    from che.runners.stopping import exit_code, signal_name, sigterm_as_ctrl_c

    args = sys.argv[1:] if args is None else list(args)
    set_command(["che", *args])  # stored with each result
    try:
        with sigterm_as_ctrl_c():  # `che run` then saves its checkpoint on SIGTERM as on Ctrl-C
            code = typer.main.get_command(app).main(args=args, prog_name="che", standalone_mode=False)
    except TyperException as exc:  # click's usage errors (exit code 2) and other reported errors
        from che.errors import echo_words

        ctx = getattr(exc, "ctx", None)
        where = f"che {ctx.command_path.split(' ', 1)[1]}" if ctx is not None and " " in ctx.command_path else "che"
        message = setting_given_as_option(exc, args) or exc.format_message()
        print(f"error: {echo_words(message)} (see {where} --help)", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except typer.Abort as exc:  # Ctrl-C, or SIGTERM (`Stopped`), where the command does not handle it
        if signal_name(exc.__cause__):
            print(f"stopped by {signal_name(exc.__cause__)}", file=sys.stderr)
        sys.exit(exit_code(exc.__cause__))
    sys.exit(code if isinstance(code, int) else 0)


def setting_given_as_option(exc: Exception, args: list[str]) -> str | None:
    """An unknown option that names a setting (`--batch-size 64`, `--seed 3`, with - or _) on
    a command that takes --set: the message says how to give it (`--set batch_size=64`); `--seed`
    also says what --seeds means, which click would suggest. None for any other error."""
    from che.config import AXES, SETTINGS

    # typer vendors click, whose exception classes it does not export: known by name
    if type(exc).__name__ != "NoSuchOption" or exc.ctx is None:
        return None
    if not any("--set" in getattr(param, "opts", ()) for param in exc.ctx.command.params):
        return None
    option = exc.option_name
    key = option.lstrip("-").replace("-", "_")
    if key not in SETTINGS or (key in AXES and key not in ("seed", "lr")):  # --task on che sweep: click's hint
        return None
    value = "true" if str(SETTINGS[key].type) == "bool" else "VALUE"
    for i, arg in enumerate(args):
        if arg.startswith(option + "="):
            value = arg.split("=", 1)[1]
        elif arg == option and i + 1 < len(args) and not args[i + 1].startswith("--"):
            value = args[i + 1]
    if key == "seed":
        return (f"no such option {option}: one seed is --set seed={value} (--seeds N trains N seeds, 0..N-1; "
                f"--seeds 0,4,7 those seeds)")
    return f"no such option {option}: {key} is a setting, given as --set {key}={value} (`che settings` lists them)"


if __name__ == "__main__":
    main()
