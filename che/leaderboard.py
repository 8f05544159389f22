"""The tasks x PEs table that papers print, built from a folder of result files.

Cells are the OOD score (mean accuracy over the unseen lengths N+1..M, in %) aggregated over the
runs of a (task, PE) pair: `max` over seeds and learning rates, as the CHE papers report, or
`mean` (with the standard deviation). Rows are grouped by Chomsky level, with per-level and
overall averages; the best PE of each row is marked. With a reference table (`results/reference`)
each cell shows ours beside the published number and the difference.
"""

from __future__ import annotations

import csv
import html
import importlib.resources
import io
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from che.errors import unknown_name_error
from che.registry import CheWarning
from che.results import load_results
from che.tasks.base import LEVEL_NAMES, LEVELS

# The row order of the CHE papers' tables.
TASK_ORDER = [
    "even_pairs", "modular_arithmetic", "parity_check", "cycle_navigation",
    "stack_manipulation", "reverse_string", "modular_arithmetic_brackets", "solve_equation",
    "duplicate_string", "missing_duplicate_string", "odds_first", "binary_addition",
    "binary_multiplication", "compute_sqrt", "bucket_sort",
]
PE_ORDER = ["none", "sin-cos", "learned", "rope", "relative", "t5", "alibi", "kerple-log",
            "kerple-power", "sandwich", "fire", "cope"]
AGGREGATIONS = ("max", "mean")
FORMATS = ("table", "md", "csv", "html", "json")
# Settings that must agree within a cell: seeds and learning rates are what a cell aggregates over.
CELL_SETTINGS = ("steps", "batch_size", "train_length", "max_test_length", "eval_samples", "n_layers",
                 "d_model", "n_heads", "dape_width", "dape_variant", "eval_dropout", "bf16")


@dataclass
class Cell:
    value: float               # aggregated OOD accuracy, %
    std: float | None          # over runs (mean aggregation)
    records: list[dict] = field(repr=False)  # every run of the cell
    best_run: dict = field(repr=False)       # the run with the highest score

    @property
    def runs(self) -> int:
        return len(self.records)

    def curve(self, aggregation: str) -> list[float]:
        """Accuracy by length: the best run's (max), or the mean over runs (mean)."""
        if aggregation == "max":
            return self.best_run["accuracy_by_length"]
        return [sum(v) / len(v) for v in zip(*[r["accuracy_by_length"] for r in self.records])]


@dataclass
class Leaderboard:
    tasks: list[str]
    pes: list[str]
    levels: dict[str, str]           # task -> level
    chance: dict[str, float]         # task -> chance accuracy, %
    cells: dict[tuple[str, str], Cell]
    aggregation: str
    reference_name: str | None = None
    reference: dict[tuple[str, str], float] = field(default_factory=dict)

    def value(self, task: str, pe: str) -> float | None:
        cell = self.cells.get((task, pe))
        return cell.value if cell else None

    def best_pe(self, task: str) -> str | None:
        values = {pe: self.value(task, pe) for pe in self.pes if self.value(task, pe) is not None}
        return max(values, key=values.get) if values else None

    def averages(self) -> list[tuple[str, list[str], dict[str, tuple[float | None, int]]]]:
        """(label, tasks, {pe: (mean, tasks counted)}) for each level present, then overall."""
        groups = [(LEVEL_NAMES.get(level, level), [t for t in self.tasks if self.levels[t] == level])
                  for level in _level_order(self.levels.values())]
        groups.append(("All tasks", list(self.tasks)))
        rows = []
        for label, tasks in groups:
            if not tasks:
                continue
            stats = {}
            for pe in self.pes:
                values = [self.value(t, pe) for t in tasks if self.value(t, pe) is not None]
                stats[pe] = (sum(values) / len(values) if values else None, len(values))
            rows.append((label, tasks, stats))
        return rows


def _level_order(levels) -> list[str]:
    present = set(levels)
    return [lv for lv in LEVELS if lv in present] + sorted(present - set(LEVELS))


def pe_sort_key(pe: str):
    dape = 2 if pe.startswith("dape2-") else 1 if pe.startswith("dape-") else 0
    base = pe.split("-", 1)[1] if dape else pe
    rand = base.startswith("rand-")
    base = base[5:] if rand else base
    return (dape, rand, PE_ORDER.index(base) if base in PE_ORDER else len(PE_ORDER), base)


def task_sort_key(task: str, level: str):
    level_rank = LEVELS.index(level) if level in LEVELS else len(LEVELS)
    return (level_rank, TASK_ORDER.index(task) if task in TASK_ORDER else len(TASK_ORDER), task)


# -- building -------------------------------------------------------------------------------------
def build(results: Path, aggregation: str = "max", reference: str | None = None) -> Leaderboard:
    if aggregation not in AGGREGATIONS:
        raise unknown_name_error("aggregation", aggregation, AGGREGATIONS)
    records = load_results(results)
    by_cell: dict[tuple[str, str], list[dict]] = {}
    levels, chance = {}, {}
    for record in records:
        by_cell.setdefault((record["task"], record["pe"]), []).append(record)
        levels[record["task"]] = record.get("level", "other")
        chance[record["task"]] = 100 * record.get("chance_accuracy", math.nan)
    cells = {}
    for key, runs in by_cell.items():
        _warn_if_mixed(key, runs)
        scores = [100 * r["ood_accuracy"] for r in runs]
        best = max(range(len(runs)), key=lambda i: scores[i])
        if aggregation == "max":
            value, std = scores[best], None
        else:
            value = sum(scores) / len(scores)
            std = math.sqrt(sum((s - value) ** 2 for s in scores) / (len(scores) - 1)) if len(scores) > 1 else 0.0
        cells[key] = Cell(value, std, runs, runs[best])
    board = Leaderboard(
        tasks=sorted(levels, key=lambda t: task_sort_key(t, levels[t])),
        pes=sorted({pe for _, pe in by_cell}, key=pe_sort_key),
        levels=levels, chance=chance, cells=cells, aggregation=aggregation,
    )
    if reference:
        _attach_reference(board, reference)
    return board


def _warn_if_mixed(key, runs) -> None:
    for setting in CELL_SETTINGS:
        values = {json.dumps(r["config"].get(setting)) for r in runs}
        if len(values) > 1:
            warnings.warn(f"{key[0]} x {key[1]} mixes runs with different {setting} ({', '.join(sorted(values))}); "
                          f"aggregating them anyway — use separate --results folders", CheWarning, stacklevel=3)


def reference_tables() -> dict[str, Path]:
    """Published tables shipped in results/reference (the package data che.reference), by name."""
    folder = importlib.resources.files("che.reference")
    return {Path(str(p)).stem: Path(str(p)) for p in folder.iterdir() if str(p).endswith(".csv")}


def load_reference(name: str) -> tuple[str, dict[tuple[str, str], float]]:
    """(full table name, {(task, canonical PE): published %}); `name` may be a unique prefix."""
    from che.models.positional import canonical_pe_name

    tables = reference_tables()
    matches = [stem for stem in tables if stem == name or stem.startswith(name)]
    if len(matches) != 1:
        raise unknown_name_error("reference table", name, tables)
    values = {}
    with tables[matches[0]].open() as f:
        for row in csv.DictReader(f):
            for column, cell in row.items():
                if column in ("level", "task") or cell in ("", None):
                    continue
                values[(row["task"], canonical_pe_name(column))] = float(cell)
    return matches[0], values


def _attach_reference(board: Leaderboard, name: str) -> None:
    board.reference_name, board.reference = load_reference(name)
    for (task, pe) in board.reference:
        if task in board.levels and pe not in board.pes:
            board.pes.append(pe)
    board.pes.sort(key=pe_sort_key)


# -- rendering ------------------------------------------------------------------------------------
def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def cell_text(board: Leaderboard, task: str, pe: str) -> str:
    cell = board.cells.get((task, pe))
    ours = "–" if cell is None else _fmt(cell.value)
    if cell is not None:
        if cell.std is not None and cell.runs > 1:
            ours += f" ± {cell.std:.1f}"
        ours += f" ({cell.runs})"
    ref = board.reference.get((task, pe))
    if board.reference_name and ref is not None:
        diff = "" if cell is None else f", {cell.value - ref:+.1f}"
        ours += f" [ref {ref:.1f}{diff}]"
    return ours


def rows(board: Leaderboard, mark_best: str = "", quote=str) -> tuple[list[str], list[list[str]]]:
    """Header and rows as text; `quote` escapes what comes from the results (task and PE names, cell
    texts) for the output's markup (html.escape for HTML, rich's escape for the terminal)."""
    header = ["level", "task", "chance"] + [quote(pe) for pe in board.pes]
    body = []
    for task in board.tasks:
        cells = []
        for pe in board.pes:
            text = quote(cell_text(board, task, pe))
            cells.append(mark_best.format(text) if mark_best and board.best_pe(task) == pe else text)
        body.append([quote(board.levels[task]), quote(task), _fmt(board.chance.get(task), 0)] + cells)
    for label, tasks, stats in board.averages():
        line = ["", f"average: {label}", ""]
        for pe in board.pes:
            mean, counted = stats[pe]
            text = _fmt(mean)
            if mean is not None and counted < len(tasks):
                text += f" ({counted}/{len(tasks)} tasks)"
            line.append(quote(text))
        body.append(line)
    return header, body


def caption(board: Leaderboard) -> str:
    agg = ("max over runs (seeds x learning rates), as the CHE papers report" if board.aggregation == "max"
           else "mean ± std over runs")
    text = (f"OOD accuracy (%): mean per-token accuracy over the unseen test lengths; cell = {agg}; "
            f"(n) = runs. Best per task marked.")
    if board.reference_name:
        text += f" [ref x, ±d] = published number in '{board.reference_name}' and our difference."
    return text


def render(board: Leaderboard, fmt: str):
    """The leaderboard as text (md, html, csv, json) or as a rich Table (table)."""
    from tabulate import tabulate

    if fmt not in FORMATS:
        raise unknown_name_error("format", fmt, FORMATS)
    if fmt == "md":
        header, body = rows(board, mark_best="**{}**")
        return f"{tabulate(body, header, tablefmt='github')}\n\n{caption(board)}\n"
    if fmt == "html":
        header, body = rows(board, mark_best="<b>{}</b>", quote=html.escape)
        return tabulate(body, header, tablefmt="unsafehtml") + f"\n<p>{html.escape(caption(board))}</p>\n"
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["level", "task", "pe", "chance", "ood_accuracy", "std", "runs", "reference"])
        for task in board.tasks:
            for pe in board.pes:
                cell = board.cells.get((task, pe))
                ref = board.reference.get((task, pe))
                if cell is None and ref is None:
                    continue
                writer.writerow([board.levels[task], task, pe, _fmt(board.chance.get(task), 2),
                                 "" if cell is None else f"{cell.value:.3f}",
                                 "" if cell is None or cell.std is None else f"{cell.std:.3f}",
                                 0 if cell is None else cell.runs, "" if ref is None else ref])
        return out.getvalue()
    if fmt == "json":
        data = {"aggregation": board.aggregation, "reference": board.reference_name, "cells": []}
        for task in board.tasks:
            for pe in board.pes:
                cell = board.cells.get((task, pe))
                if cell is None and (task, pe) not in board.reference:
                    continue
                data["cells"].append({
                    "task": task, "level": board.levels[task], "pe": pe, "chance": board.chance.get(task),
                    "ood_accuracy": None if cell is None else cell.value,
                    "std": None if cell is None else cell.std, "runs": 0 if cell is None else cell.runs,
                    "best": board.best_pe(task) == pe, "reference": board.reference.get((task, pe)),
                })
        return json.dumps(data, indent=2)
    return rich_table(board)


def rich_table(board: Leaderboard):
    from rich.markup import escape
    from rich.table import Table

    header, body = rows(board, mark_best="[bold green]{}[/]", quote=escape)
    table = Table(title="CHE leaderboard", caption=escape(caption(board)), show_lines=False)
    for i, column in enumerate(header):
        table.add_column(column, justify="left" if i < 2 else "right", no_wrap=i == 1)
    previous_level = None
    for line in body:
        level = line[0]
        if previous_level is not None and level != previous_level:
            table.add_section()
        previous_level = level
        table.add_row(*line)
    return table


# -- plot -----------------------------------------------------------------------------------------
def plot(board: Leaderboard, path: Path) -> None:
    """Accuracy against test length: one panel per task, one line per PE (the best run for max,
    the mean over runs for mean), the training range shaded and chance dotted."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tasks = board.tasks
    columns = min(4, len(tasks))
    rows_ = math.ceil(len(tasks) / columns)
    fig, axes = plt.subplots(rows_, columns, figsize=(4.2 * columns, 3.0 * rows_), squeeze=False)
    pes = [pe for pe in board.pes if any((t, pe) in board.cells for t in tasks)]
    palette = plt.get_cmap("tab10" if len(pes) <= 10 else "tab20")
    colors = {pe: palette(i % palette.N) for i, pe in enumerate(pes)}
    for ax, task in zip(axes.flat, tasks):
        train_length = None
        for pe in pes:
            cell = board.cells.get((task, pe))
            if cell is None:
                continue
            curve = cell.curve(board.aggregation)
            train_length = cell.best_run["config"]["train_length"]
            ax.plot(range(1, len(curve) + 1), [100 * a for a in curve], label=pe, color=colors[pe], lw=1.2)
        if train_length:
            ax.axvspan(1, train_length, color="0.9", zorder=0)
        ax.axhline(board.chance.get(task, math.nan), color="0.4", ls=":", lw=1)
        ax.set_title(task, fontsize=10)
        ax.set_ylim(0, 102)
        ax.set_xlabel("test length", fontsize=8)
        ax.set_ylabel("accuracy (%)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    for ax in axes.flat:
        h, lab = ax.get_legend_handles_labels()
        for hh, ll in zip(h, lab):
            if ll not in labels:
                handles.append(hh)
                labels.append(ll)
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 6), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.06, 1, 1))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)

