"""The tasks x PEs table that papers print, built from a table of runs (`che.results.results_frame`).

Cells are the OOD score (mean accuracy over the unseen lengths N+1..M, in %) aggregated over the
runs of a (task, PE) pair: `max` over seeds and learning rates, as the CHE papers report, or `mean`
with a 95% confidence interval (bootstrap over runs). Both show the number of runs. Rows are grouped
by Chomsky level, with per-level and overall averages; the best PE of each row is marked, except in
a table of smoke runs, which checks that everything runs and measures nothing (`plumbing_check`). With a
reference table (`results/reference`) each cell shows ours beside the published number and the
difference, and a protocol that differs from the reference's is said above the table and in its
caption (`strict` refuses it).
"""

from __future__ import annotations

import html
import importlib.resources
import json
import math
import re
from dataclasses import dataclass, field

import pandas as pd

from che.errors import CheError, unknown_name_error
from che.protocol import PLUMBING, PLUMBING_TITLE, plumbing_check, select_protocol
from che.stats import bootstrap_mean_ci
from che.tasks.base import LEVEL_NAMES, LEVELS

AGGREGATIONS = ("max", "mean")
FORMATS = ("table", "md", "csv", "html", "json")


def pe_sort_key(pe: str):
    """Where a PE's column sorts: as its spec says (`che.pe_names.sort_key_of`): plain PEs in the
    papers' order, each causal column beside its bidirectional one; then the modified ones."""
    from che.pe_names import sort_key_of

    return sort_key_of(pe)


def task_sort_key(task: str, level: str):
    """The CHE papers' rows: by level, then the row each task declares (`Task.order`); a task that is
    not registered (a plugin's, not loaded) after them, by name."""
    from che.registry import TASKS

    level_rank = LEVELS.index(level) if level in LEVELS else len(LEVELS)
    order = getattr(TASKS.get(task), "order", math.inf) if task in TASKS else math.inf
    return (level_rank, order, task)


@dataclass
class Leaderboard:
    """`cells`: one row per (task, PE) with runs: value (the aggregate, %), mean, ci_low, ci_high,
    std, runs, best_run (its run id); `runs` is the table of runs it was built from."""

    cells: pd.DataFrame
    runs: pd.DataFrame
    aggregation: str
    tasks: list[str]
    pes: list[str]
    levels: dict[str, str]
    chance: dict[str, float]
    reference_name: str | None = None
    reference: dict[tuple[str, str], float] = field(default_factory=dict)
    protocol_differences: list[str] = field(default_factory=list)
    protocol: str = ""   # the protocol of its runs, described (`Protocol.describe`)
    plumbing: bool = False  # smoke runs: a check that everything runs, not a measurement

    def to_markdown(self) -> str:
        """The table as `che leaderboard --format md` prints it (one protocol), caption included."""
        return render(self, "md")

    def to_frame(self) -> pd.DataFrame:
        """The table as printed (level, task, chance, a column per PE, then the averages), as text
        cells; the numbers themselves are in `cells`."""
        header, body = rows(self)
        return pd.DataFrame(body, columns=header)

    def cell(self, task: str, pe: str):
        key = (task, pe)
        return self.cells.loc[key] if key in self.cells.index else None

    def best_pe(self, task: str) -> str | None:
        """The PE with the highest value in a task's row; None in a plumbing check (nothing is measured)."""
        if self.plumbing or task not in self.cells.index.get_level_values(0):
            return None
        values = self.cells.xs(task, level="task")["value"]
        return str(values.idxmax())

    def averages(self) -> dict[tuple[str, str], tuple[pd.Series, pd.Series, int]]:
        """{(level, label): (mean per PE, tasks counted per PE, tasks in the group)} per level, then
        over all tasks (level "all")."""
        table = self.cells["value"].unstack("pe").reindex(index=self.tasks, columns=self.pes)
        groups = [((lv, LEVEL_NAMES.get(lv, lv)), [t for t in self.tasks if self.levels[t] == lv])
                  for lv in _level_order(self.levels.values())] + [(("all", "All tasks"), list(self.tasks))]
        return {key: (table.loc[tasks].mean(), table.loc[tasks].count(), len(tasks)) for key, tasks in groups if tasks}

    def curve(self, task: str, pe: str) -> list[float]:
        """Accuracy by length: the best run's (max), or the mean over runs (mean)."""
        runs = self.runs[(self.runs.task == task) & (self.runs.pe == pe)]
        if self.aggregation == "max":
            return list(runs.set_index("run_id").loc[self.cell(task, pe)["best_run"], "accuracy_by_length"])
        return [sum(v) / len(v) for v in zip(*runs["accuracy_by_length"])]


def _level_order(levels) -> list[str]:
    present = set(levels)
    return [lv for lv in LEVELS if lv in present] + sorted(present - set(LEVELS))


# -- building -------------------------------------------------------------------------------------
def build(runs: pd.DataFrame, aggregation: str = "max", reference: str | None = None,
          strict: bool = False, protocol: str | None = None) -> Leaderboard:
    """The leaderboard of a table of runs (`che.results.results_frame`) of one protocol: runs of
    several protocols are never aggregated together; `protocol` picks one (`protocols(runs)`)."""
    if aggregation not in AGGREGATIONS:
        raise unknown_name_error("aggregation", aggregation, AGGREGATIONS)
    if runs.empty:
        raise CheError("no runs to build a leaderboard from")
    chosen = select_protocol(runs, protocol)
    runs = chosen.runs
    scores = runs.assign(score=100 * runs["ood_accuracy"])

    def summarise(group: pd.DataFrame) -> pd.Series:
        low, high = bootstrap_mean_ci(group["score"].to_numpy())
        best = group.loc[group["score"].idxmax()]
        mean = group["score"].mean()
        return pd.Series({"value": best["score"] if aggregation == "max" else mean, "mean": mean,
                          "ci_low": low, "ci_high": high, "std": group["score"].std(ddof=1) if len(group) > 1 else 0.0,
                          "runs": len(group), "best_run": best["run_id"]})

    cells = scores.groupby(["task", "pe"]).apply(summarise, include_groups=False)
    levels = dict(zip(runs.task, runs.level))
    board = Leaderboard(
        cells=cells, runs=runs, aggregation=aggregation,
        tasks=sorted(levels, key=lambda t: task_sort_key(t, levels[t])),
        pes=sorted(set(runs.pe), key=pe_sort_key), levels=levels,
        chance=dict(zip(runs.task, 100 * runs.chance_accuracy)),
        protocol=chosen.describe(), plumbing=plumbing_check(runs),
    )
    if reference:
        _attach_reference(board, reference, strict)
    return board


def reference_tables() -> dict:
    """Published tables shipped in results/reference (the package data che.reference), by name."""
    folder = importlib.resources.files("che.reference")
    return {p.name.removesuffix(".csv"): p for p in folder.iterdir() if p.name.endswith(".csv")}


def load_reference(name: str) -> tuple[str, dict[tuple[str, str], float], dict]:
    """(full table name, {(task, canonical PE): published %}, its protocol); `name` may be a unique
    prefix."""
    from che.models.positional import canonical_pe_name

    tables = reference_tables()
    matches = [stem for stem in tables if stem == name or stem.startswith(name)]
    if len(matches) != 1:
        raise unknown_name_error("reference table", name, tables)
    with tables[matches[0]].open() as file:
        table = pd.read_csv(file)
    values = {}
    for _, row in table.iterrows():
        for column in table.columns:
            if column in ("level", "task") or pd.isna(row[column]):
                continue
            values[(row["task"], canonical_pe_name(column))] = float(row[column])
    protocol_file = importlib.resources.files("che.reference") / f"{matches[0]}.protocol.json"
    protocol = json.loads(protocol_file.read_text()) if protocol_file.is_file() else {}
    return matches[0], values, protocol


def protocol_differences(runs: pd.DataFrame, protocol: dict) -> list[str]:
    """'setting ours vs theirs' for every protocol setting that the table's protocol states and in
    which our runs differ from it (a setting that only some PEs read, rand_mode say, counts for those)."""
    from che.config import protocol_settings
    from che.pe_names import read_by_some_pe, reads_setting

    differences = []
    for setting in protocol_settings():
        if setting not in protocol or setting not in runs:
            continue
        column = runs[setting]
        if read_by_some_pe(setting):
            column = column[runs.pe.map(lambda pe: reads_setting(pe, setting))]
        ours = sorted({str(v) for v in column})
        if ours and ours != [str(protocol[setting])]:
            differences.append(f"{setting} {'/'.join(ours)} vs {protocol[setting]}")
    return differences


def _attach_reference(board: Leaderboard, name: str, strict: bool) -> None:
    board.reference_name, board.reference, protocol = load_reference(name)
    board.protocol_differences = protocol_differences(board.runs, protocol)
    if strict and board.protocol_differences:
        raise CheError(f"the results' protocol differs from {board.reference_name}'s: "
                       f"{', '.join(board.protocol_differences)} (leave out --strict to compare anyway)")
    for (task, pe) in board.reference:
        if task in board.levels and pe not in board.pes:
            board.pes.append(pe)
    board.pes.sort(key=pe_sort_key)


# -- text -----------------------------------------------------------------------------------------
def _fmt(value, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def cell_text(board: Leaderboard, task: str, pe: str) -> str:
    """Our cell: the aggregate, its interval (mean of several runs) and (runs); – without runs."""
    cell = board.cell(task, pe)
    if cell is None:
        return "–"
    text = _fmt(cell["value"])
    if board.aggregation == "mean" and cell["runs"] > 1:
        text += f" [{cell['ci_low']:.1f}, {cell['ci_high']:.1f}]"
    return text + f" ({int(cell['runs'])})"


def columns(board: Leaderboard, pes: list[str] | None = None) -> list[tuple[str, bool]]:
    """The number columns, (PE, published?): each PE with runs, and beside it, with a reference
    table, the published numbers of each PE the table has (only those, for a PE without runs)."""
    ran = set(board.cells.index.get_level_values("pe"))
    out = []
    for pe in board.pes if pes is None else pes:
        if pe in ran:
            out.append((pe, False))
        if any((task, pe) in board.reference for task in board.tasks):
            out.append((pe, True))
    return out


def rows(board: Leaderboard, mark_best=None, quote=str, pes: list[str] | None = None, pe_header=str,
         published_header="{} (published)".format, short_averages: bool = False) -> tuple[list[str], list[list[str]]]:
    """Header and rows as text, with the columns of `pes` (default: all); `quote` escapes the names
    that come from the results (task, level and PE) for the output's markup (html.escape for HTML,
    `md_escape` for markdown); the cells are numbers; `mark_best(text)` marks the best cell of a
    row; `pe_header(pe)` heads a PE's column, `published_header(pe)` a column of its published
    numbers. Average rows are labelled "average: Regular" in the task column, or with
    `short_averages` "average" beside the level's short name (a narrower task column)."""
    chosen = columns(board, pes)
    header = ["level", "task", "chance"] + [published_header(quote(pe)) if published else pe_header(quote(pe))
                                            for pe, published in chosen]
    body = []
    for task in board.tasks:
        best = board.best_pe(task)
        line = [quote(board.levels[task]), quote(task), _fmt(board.chance.get(task), 0)]
        for pe, published in chosen:
            if published:
                line.append(_fmt(board.reference.get((task, pe))))
            else:
                text = cell_text(board, task, pe)
                line.append(mark_best(text) if mark_best and best == pe else text)
        body.append(line)
    for (level, label), (means, counts, total) in board.averages().items():
        line = [quote(level), "average", ""] if short_averages else ["", quote(f"average: {label}"), ""]
        for pe, published in chosen:
            text = "" if published else _fmt(means.get(pe))
            if not published and not math.isnan(means.get(pe, math.nan)) and counts[pe] < total:
                text += f" ({counts[pe]}/{total} tasks)"
            line.append(text)
        if any(line[3:]):  # not for published numbers alone
            body.append(line)
    return header, body


def protocol_line(board: Leaderboard) -> str | None:
    if not board.protocol_differences:
        return None
    return (f"Not the protocol of {board.reference_name}: {', '.join(board.protocol_differences)} "
            f"(ours vs theirs); compare the numbers with that in mind.")


def caption(board: Leaderboard) -> str:
    agg = ("max over runs (seeds x learning rates), as the CHE papers report" if board.aggregation == "max"
           else "mean over runs with its 95% bootstrap confidence interval")
    text = (f"OOD accuracy (%): mean per-token accuracy over the unseen test lengths; cell = {agg}; "
            f"(n) = runs. {'Best per task marked. ' if not board.plumbing else ''}Protocol {board.protocol}.")
    if board.plumbing:
        text = f"These are {PLUMBING}. {text}"
    if board.reference_name:
        text += f" Published: the numbers of '{board.reference_name}', in columns of their own."
    line = protocol_line(board)
    return text + (f" {line}" if line else "")


def records(board: Leaderboard) -> pd.DataFrame:
    """One row per (task, PE) that has runs or a published number: what csv and json write."""
    out = []
    for task in board.tasks:
        best = board.best_pe(task)
        for pe in board.pes:
            cell, ref = board.cell(task, pe), board.reference.get((task, pe))
            if cell is None and ref is None:
                continue
            have = cell is not None
            out.append({
                "task": task, "level": board.levels[task], "pe": pe, "chance": board.chance.get(task),
                "ood_accuracy": float(cell["value"]) if have else None,
                "mean": float(cell["mean"]) if have else None,
                "ci_low": float(cell["ci_low"]) if have else None, "ci_high": float(cell["ci_high"]) if have else None,
                "std": float(cell["std"]) if have else None, "runs": int(cell["runs"]) if have else 0,
                "best": best == pe, "reference": ref, "protocol": board.protocol,
            })
    return pd.DataFrame(out)


def render(board: Leaderboard, fmt: str, titled: bool = False):
    """The leaderboard as text (md, html, csv, json) or as a rich Table (table); `titled`: md, html
    and table start with the protocol (for one leaderboard of several)."""
    if fmt not in FORMATS:
        raise unknown_name_error("format", fmt, FORMATS)
    if fmt == "md":
        header, body = rows(board, mark_best="**{}**".format, quote=md_escape)
        title = f"### Protocol {md_escape(board.protocol)}\n\n" if titled else ""
        return title + pd.DataFrame(body, columns=header).to_markdown(index=False) + f"\n\n{caption(board)}\n"
    if fmt == "html":
        header, body = rows(board, mark_best="<b>{}</b>".format, quote=html.escape)
        title = f"<h3>Protocol {html.escape(board.protocol)}</h3>\n" if titled else ""
        table = pd.DataFrame(body, columns=header).to_html(index=False, escape=False)  # cells escaped above
        return title + table + f"\n<p>{html.escape(caption(board))}</p>\n"
    if fmt == "csv":
        return csv_safe(records(board)).to_csv(index=False, float_format="%.3f")
    if fmt == "json":
        data = {"protocol": board.protocol, "plumbing_check": board.plumbing, "aggregation": board.aggregation,
                "reference": board.reference_name,
                "protocol_differences": board.protocol_differences,
                "cells": json.loads(records(board).to_json(orient="records"))}
        return json.dumps(data, indent=2)
    return rich_table(board, titled)


def md_escape(text: str) -> str:
    """Text for a markdown table: '|' would end a cell, and '*', '`', '[', '<' ... would format it or
    add links and HTML."""
    return MD_SPECIAL.sub(r"\\\1", text)


MD_SPECIAL = re.compile(r"([\\|*`\[\]<>])")
FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def csv_safe(table: pd.DataFrame) -> pd.DataFrame:
    """Text cells that a spreadsheet would run as a formula ('=HYPERLINK(...)') start with a quote."""
    def safe(value):
        return "'" + value if isinstance(value, str) and value.startswith(FORMULA_START) else value

    return table.assign(**{column: table[column].map(safe) for column in table.columns
                           if not pd.api.types.is_numeric_dtype(table[column])})


def rich_table(board: Leaderboard, titled: bool = False, pes: list[str] | None = None, part: int = 1,
               parts: int = 1):
    """A rich Table whose every cell is a Text (names from the results are never read as markup),
    with the columns of `pes` (default: all): part `part` of `parts` tables that show the board
    together, narrow enough for a terminal (the caption under the last)."""
    from rich.table import Table
    from rich.text import Text

    header, body = rows(board, mark_best=lambda text: Text(text, style="bold green"), pes=pes, pe_header=stacked,
                        published_header=lambda pe: f"{stacked(pe)}\npublished", short_averages=True)
    body = [[cell if isinstance(cell, Text) else Text(cell) for cell in line] for line in body]
    title = ("CHE leaderboard" + (f", protocol {board.protocol}" if titled else "")
             + (f" {PLUMBING_TITLE}" if board.plumbing else ""))
    if parts > 1:
        title += f" ({part} of {parts})"
    table = Table(title=Text(title), caption=Text(caption(board)) if part == parts else None, show_lines=False)
    for i, column in enumerate(header):
        table.add_column(Text(column), justify="left" if i < 2 else "right", no_wrap=i == 1)
    # a section per level, and one for the averages
    sections = [board.levels[task] for task in board.tasks] + ["averages"] * (len(body) - len(board.tasks))
    for i, (line, section) in enumerate(zip(body, sections)):
        if i and section != sections[i - 1]:
            table.add_section()
        table.add_row(*line)
    return table


def stacked(name: str, width: int = 8) -> str:
    """A PE name over lines of at most `width` characters where its hyphens allow (after a hyphen,
    before a '+'; dape-kerple-log as dape- / kerple- / log): a narrow column's header."""
    lines = []
    for piece in re.findall(r"\+?[^-+]*-?", name):
        if lines and len(lines[-1]) + len(piece) <= width:
            lines[-1] += piece
        elif piece:
            lines.append(piece)
    return "\n".join(lines)


def render_all(boards: list[Leaderboard], fmt: str):
    """One leaderboard, or one per protocol, in one output: rich Tables (table), md and html sections
    titled by their protocol, csv rows with their protocol, a json list."""
    several = len(boards) > 1
    if fmt == "table":
        return [render(board, fmt, titled=several) for board in boards]
    if fmt == "json" and several:
        return "[\n" + ",\n".join(render(board, fmt) for board in boards) + "\n]\n"
    if fmt == "csv" and several:
        return "".join(render(board, fmt) if i == 0 else render(board, fmt).split("\n", 1)[1]
                       for i, board in enumerate(boards))
    return "\n".join(render(board, fmt, titled=several) for board in boards)
