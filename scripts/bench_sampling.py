"""Median wall time to sample a batch from every registered task.

Usage: python scripts/bench_sampling.py [--repeats 7] [--threads N] [--json]

For each task it samples 128 x 40 (a training batch) and 512 x 500 (the longest evaluation
length) after one warm-up call, and prints the median of `--repeats` timed calls in milliseconds.
Times depend on the machine and its load; torch's intra-op threads matter for the small
tensors involved (`--threads 1` is often the fastest for sampling).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from che.registry import TASKS

SHAPES = ((128, 40), (512, 500))  # (batch size, length)


def median_ms(task, batch_size: int, length: int, repeats: int, seed: int = 0) -> float:
    generator = torch.Generator().manual_seed(seed)
    task.sample(batch_size, length, generator)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        task.sample(batch_size, length, generator)
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7, help="timed calls per shape (default 7)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (default: torch's own)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)

    rows = []
    for entry in TASKS.entries():
        times = {f"{b}x{n}": round(median_ms(entry.obj, b, n, args.repeats), 3) for b, n in SHAPES}
        rows.append({"task": entry.name, "level": entry.obj.level, **times})

    if args.json:
        print(json.dumps({"threads": torch.get_num_threads(), "unit": "ms", "median_of": args.repeats,
                          "results": rows}, indent=2))
        return
    headers = ["task", "level"] + [f"{b}x{n} ms" for b, n in SHAPES]
    widths = [max(len(headers[0]), *(len(r["task"]) for r in rows)), 7, 12, 12]
    print(f"median of {args.repeats} calls after a warm-up; torch threads = {torch.get_num_threads()}")
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths)))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [r["task"], r["level"]] + [f"{r[f'{b}x{n}']:.2f}" for b, n in SHAPES]
        aligned = [c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        print("  ".join(aligned))


if __name__ == "__main__":
    main()
