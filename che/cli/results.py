"""`che leaderboard` and `che compare`: the tables and the statistics of a folder of results."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from che.cli.common import (ResultsFoldersOption, app, console, err_console, fitted_tables, plain_text,
                            print_tables, terminal_width, user_errors)
from che.errors import CheError
from che.results import DEFAULT_RESULTS, select_runs

ProtocolOption = Annotated[Optional[str], typer.Option(
    help="Take the runs of this protocol only, where the results hold several (`che leaderboard` names them).",
    show_default=False)]


SeedsOption = Annotated[Optional[str], typer.Option(
    help="Only the runs of these seeds, comma-separated or a range 3..9 (e.g. to test a claim on runs other "
         "than those that suggested it) [default: all].", show_default=False)]


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
    protocol: ProtocolOption = None,
    pes: Annotated[Optional[str], typer.Option(
        help="Only these PEs' columns, comma-separated [default: every PE with runs].", show_default=False)] = None,
    seeds: SeedsOption = None,
):
    """The tasks x PEs table of OOD accuracy, from a folder of results.

    One table per protocol: runs of different steps, lengths or model sizes never share a cell."""
    from che import api
    from che import leaderboards as lb
    from che import protocol as pr
    from che.plots import FORMATS
    from che.results import check_output

    check_output("--out", out)
    check_output("--plot", plot, FORMATS)
    pe_list = [p.strip() for p in pes.split(",") if p.strip()] if pes is not None else None
    runs = select_runs(api.load_results(results or [DEFAULT_RESULTS]), pe_list, parse_seed_list(seeds))
    found = pr.protocols(runs)
    labels = [protocol] if protocol is not None else [p.label for p in found]
    if protocol is None and len(found) > 1:
        err_console.print("note: " + pr.mixed_protocols_line(found), soft_wrap=True)
    if pr.outdated_note(runs):
        err_console.print(pr.outdated_note(runs), soft_wrap=True)
    boards = [api.leaderboard(runs, agg=agg, reference=reference, strict=strict, protocol=label) for label in labels]
    for board in boards:
        if format == "table" and lb.protocol_line(board):
            err_console.print(lb.protocol_line(board), soft_wrap=True)
    if format != "table":
        rendered = lb.render_all(boards, format)
    else:  # in a terminal, a board's PEs spread over as many tables as it takes to fit its width
        width = terminal_width() if out is None else None
        titled = len(boards) > 1
        tables = [table for board in boards
                  for table in fitted_tables(functools.partial(lb.rich_table, board, titled), board.pes, width)]
        rendered = "".join(plain_text(table) for table in tables) if out is not None else None
        if out is None:
            print_tables(tables)
    if out is not None:
        out.write_text(rendered)
        err_console.print(f"wrote {out}")
    elif rendered is not None:
        print(rendered, end="" if rendered.endswith("\n") else "\n")
    if plot is not None:
        from che.plots import accuracy_vs_length

        for board, label in zip(boards, labels):
            path = plot if len(boards) == 1 else plot.with_name(f"{plot.stem}-{label}{plot.suffix}")
            accuracy_vs_length(board, path)
            err_console.print(f"wrote {path}")


@app.command("compare")
@user_errors
def compare_command(
    pes: Annotated[str, typer.Option(help="Two PEs, A,B: is A better than B?", show_default=False)],
    tasks: Annotated[Optional[str], typer.Option(help="Tasks, comma-separated [default: every task with both].",
                                                 show_default=False)] = None,
    results: ResultsFoldersOption = None,
    format: Annotated[Literal["table", "md", "csv", "json"], typer.Option("--format", help="Output format.")] = "table",
    protocol: ProtocolOption = None,
    alternative: Annotated[Literal["two-sided", "greater", "less"], typer.Option(
        help="The test's alternative: two-sided (A differs from B), greater (A is better), less (B is better). "
             "One-sided only for a claim stated before the runs were made.")] = "two-sided",
    seeds: SeedsOption = None,
):
    """Per task: A against B, the difference of mean OOD accuracy over their runs.

    With its 95% bootstrap interval, an exact permutation test, p-values adjusted for the number of
    tasks (Holm), how many tasks A wins significantly, and a sign-flip test across tasks."""
    from che import api
    from che.comparisons import plumbing_note, render, single_run_note

    names = [p.strip() for p in pes.split(",") if p.strip()]
    if len(names) != 2:
        raise CheError(f"--pes takes two different PEs, A,B; got {pes!r}")
    task_list = [t.strip() for t in tasks.split(",") if t.strip()] if tasks else None
    from che.protocol import outdated_note

    runs = api.load_results(results or [DEFAULT_RESULTS])
    table = api.compare(runs, names[0], names[1], tasks=task_list, protocol=protocol, alternative=alternative,
                        seeds=parse_seed_list(seeds))
    for note in (outdated_note(runs), plumbing_note(table), single_run_note(table)):
        if note:
            err_console.print(note, soft_wrap=True)
    a, b = table.attrs["pes"]
    rendered = render(table, a, b, format)
    if format == "table":
        print_tables([rendered[0]])
        console.print(rendered[1], soft_wrap=True)
    else:
        print(rendered, end="" if rendered.endswith("\n") else "\n")


def parse_seed_list(text: str | None) -> list[int] | None:
    """`3,5,8` or `3..9` (both ends included) as a list of seeds; None for None."""
    if text is None:
        return None
    try:
        if ".." in text:
            low, high = (int(part) for part in text.split(".."))
            return list(range(low, high + 1))
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CheError(f"--seeds takes seeds, comma-separated (3,5,8) or a range (3..9), got {text!r}") from None
