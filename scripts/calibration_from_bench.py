"""Derive a device's cost calibration (`che.runners.cost.Calibration`) from `che bench` results, and
print it as an entry of che/data/calibrations.json (the calibrations che ships for devices a
machine may not have, such as a cluster's GPUs).

    python scripts/calibration_from_bench.py results/bench/h200/packs/bench_d64.json \
        results/bench/h200/packs/bench_d256.json --mode graphs

Each benchmark record is one training step of a pack at one length; the fit is the least-squares
non-negative solution of
    step_s = overhead + pack x (dense / dense_rate + scores / score_rate + dape / dape_rate)
over the records, in relative error
(of the mode the runs use: captured graphs on CUDA, eager on CPUs), with the FLOPs counted by the
cost model.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import scipy.optimize

from che.config import make_config
from che.registry import TASKS
from che.runners.cost import Calibration, _key, train_work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bench", nargs="+", type=Path, help="che bench --out files")
    parser.add_argument("--mode", default="graphs", help="which records: eager, graphs or compile")
    args = parser.parse_args()
    rows, times, device = [], [], None
    for path in args.bench:
        report = json.loads(path.read_text())
        device = report["machine"]["device"]
        settings = report["settings"]
        for record in report["records"]:
            if record["mode"] != args.mode or record["impl"] != "fast":
                continue
            task = TASKS.get(record["task"])
            config = make_config(record["task"], record["pe"], "cpu", batch_size=record["batch_size"],
                                 train_length=settings["length"], d_model=settings.get("d_model") or 64)
            dense, scores, dape = train_work(config, task, settings["length"])
            rows.append([1.0, record["pack"] * dense, record["pack"] * scores, record["pack"] * dape])
            times.append(record["step_ms"] / 1000)
    # relative errors: every record counts alike, the fast ones as the slow ones
    weights = 1 / np.array(times)
    solution, *_ = scipy.optimize.nnls(np.array(rows) * weights[:, None], np.ones(len(times)))
    overhead, inverse_dense, inverse_scores, inverse_dape = solution
    calibration = Calibration(
        device=device, threads=0, overhead_s=float(overhead), dense_rate=float(1 / inverse_dense),
        score_rate=float(1 / inverse_scores), dape_rate=float(1 / inverse_dape),
        source=f"fitted to che bench records ({args.mode}) in " + ", ".join(str(p) for p in args.bench))
    predicted = np.array(rows) @ solution
    for row, seconds, guess in zip(rows, times, predicted):
        print(f"# measured {1000 * seconds:8.2f} ms, model {1000 * guess:8.2f} ms", flush=True)
    print(json.dumps({_key(calibration.device, calibration.threads): asdict(calibration)}, indent=1))


if __name__ == "__main__":
    main()
