"""`che bench`: training-step time, tokens/s, evaluation throughput and memory per PE, side by side."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from che.cli.common import PluginOption, app, err_console, load_plugins, print_tables, say, settings, user_errors
from che.config import Device


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
    pack: Annotated[Optional[int], typer.Option(help="Also time packs of K runs trained as one model.")] = None,
    cuda_graphs: Annotated[bool, typer.Option("--cuda-graphs", help="Also time CUDA-graph-captured steps.")] = False,
    compile: Annotated[bool, typer.Option("--compile", help="Also time torch.compile'd steps.")] = False,
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="A setting of the timed model, key=value: d_model, dape_width, attention, precision, "
                      "eval_memory_gb.", show_default=False)] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the records as JSON.")] = False,
    out: Annotated[Optional[Path], typer.Option(help="Also write the JSON to this file.")] = None,
    plugin: PluginOption = None,
):
    """Step time, tokens/s, evaluation throughput and peak memory per PE, side by side."""
    from che.results import check_output
    from che.runners.bench import run_benchmark, summary_lines

    load_plugins(plugin)
    check_output("--out", out)
    log = (lambda msg: err_console.print(msg)) if not as_json else (lambda msg: None)
    report = run_benchmark(pes, task, length, batch_size, eval_length, eval_batch, repeats, device, literal, pack,
                           cuda_graphs, compile, settings(set_), log=log)
    if out is not None:
        out.write_text(json.dumps(report, indent=1) + "\n")
    if as_json:
        print(json.dumps(report["records"], indent=1))
        return
    machine = report["machine"]
    say(Text.assemble((machine["device"], "bold"), f", torch {machine['torch']}, timed with "
                      f"{machine['torch_threads']} thread(s); {task}, N = {length}, batch {batch_size}, "
                      f"{report['settings']['dtype']}"))
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
    print_tables([table])
    for line in summary_lines(report):
        say(line)
