"""The worker entry of every executor: a pack of configurations in, `che run --resume` on them, and
how each run ended out, never an exception."""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path

from che.runners import stopping
from che.threads import WAIT_POLICY, keep_freed_memory


def run_pack(configs: list[dict], results: str, device: str = "auto", plugins: list[str] | tuple = (),
             threads: int | None = None, force: bool = False, command: str | None = None) -> dict:
    """Run a pack of configurations exactly as `che run --resume` does, and say how each ended.

    Loads the plugins, sets torch's thread count, rebuilds the RunConfigs and calls `execute_pack`
    (`command`: the sweep's command line, which each result records).
    Never raises for a failed run: returns {"runs": [one outcome per config]}, each
    {"status": "finished" | "skipped" | "interrupted" | "failed", ...} with the result record, or
    the error and its traceback. Ctrl-C (SIGINT) during training saves a checkpoint (status
    "interrupted"); one that comes before training starts is kept and stops it after its first step;
    one during evaluation lets the pack finish.
    """
    started = time.perf_counter()
    common = {"host": socket.gethostname(), "pid": os.getpid(), "device": device}
    outcomes = [dict(common, run_id=None) for _ in configs]
    for name, value in WAIT_POLICY.items():
        os.environ.setdefault(name, value)  # effective where torch is not loaded yet
    keep_freed_memory()
    with stopping.deferred_until_training():
        try:
            import torch

            from che.config import RunConfig
            from che.registry import load_plugins
            from che.runners.run import execute_pack
            from che.runners.train import Interrupted

            if threads:
                torch.set_num_threads(threads)
            load_plugins(list(plugins))
            runs = [RunConfig.from_dict(dict(c)) for c in configs]
            for outcome, run in zip(outcomes, runs):
                outcome["run_id"] = run.run_id
            try:
                # the sweep's dispatcher holds the runs' locks
                results_ = execute_pack(runs, Path(results), device=device, force=force, resume=not force,
                                        reporter=stopping.relay_stop(), lock=False, command=command)
            except Interrupted as stop:
                for outcome in outcomes:
                    outcome.update(status="interrupted", step=stop.step, checkpoint=str(stop.checkpoint))
            else:
                for outcome, result in zip(outcomes, results_):
                    if result.status == "failed":
                        outcome.update(status="failed", **result.record)
                    else:
                        outcome.update(status=result.status, path=str(result.path), record=result.record,
                                       device=result.record.get("device", device))
        except KeyboardInterrupt:  # a second Ctrl-C inside a training step
            for outcome in outcomes:
                outcome.update(status="interrupted")
        except Exception as exc:
            for outcome in outcomes:
                outcome.update(status="failed", error_type=type(exc).__name__, error=str(exc),
                               traceback=traceback.format_exc())
    seconds = round(time.perf_counter() - started, 3)
    for outcome in outcomes:
        outcome["seconds"] = seconds
    return {"runs": outcomes}
