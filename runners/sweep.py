"""`che sweep`: a grid of tasks x PEs x learning rates x seeds, run locally, on Ray or as SLURM jobs.

Every run of a sweep is exactly `che run` with that configuration: the workers call
`che.runners.run.execute_pack` (with resume), which is idempotent and writes its result atomically. The
sweep adds what a grid needs around it:

- a grid from command-line options or a TOML file (`che.runners.grid`), run in packs
  (`che.runners.packs`) by an executor (`che.runners.executors`);
- skipping finished runs, so that a sweep run again only does what is left;
- a lock per run (`che.locks`: an OS file lock, released when its process ends), so that two
  sweeps (or a sweep and a `che run`) over the same folder share the work instead of repeating it;
  a held lock means the run is "running elsewhere" and is left alone this time;
- a failure record per failed run (`<run-id>.failed.json`), written by the sweep and removed when a
  later attempt succeeds; the rest of the grid goes on;
- Ctrl-C: the first stops dispatching and asks running runs to save a checkpoint (they continue
  from it next time); a second abandons them;
- a progress display and the closing summary.

The dispatcher keeps at most `executor.slots` runs in flight and claims a run's lock just before
submitting it, so a run is never locked while it waits in a queue.
"""

from __future__ import annotations

import datetime as dt
import json
import socket
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from che.config import RunConfig
from che.locks import claim, is_locked, release
from che.results import checkpoint_path, failure_path, is_finished, result_path, write_json_atomic
from che.runners.packs import make_packs
from che.runners.stopping import SignalCount

# -- the state of a run on disk -------------------------------------------------------------------
def run_state(results: Path, config: RunConfig) -> str:
    """finished, running elsewhere, failed before, resumable (a checkpoint) or pending."""
    if is_finished(result_path(results, config)):
        return "finished"
    if is_locked(results, config):
        return "running elsewhere"
    if failure_path(results, config).exists():
        return "failed before"
    if checkpoint_path(results, config).exists():
        return "resumable"
    return "pending"


def record_failure(results: Path, config: RunConfig, outcome: dict) -> Path:
    """Write `<run-id>.failed.json`: the config, the error, where and when; attempts are counted."""
    path = failure_path(results, config)
    attempts = 1
    try:
        attempts += int(json.loads(path.read_text()).get("attempts", 0))
    except (OSError, ValueError, AttributeError, TypeError):
        pass
    write_json_atomic(path, {
        "status": "failed",
        "run_id": config.run_id,
        "task": config.task,
        "pe": config.pe,
        "seed": config.seed,
        "lr": config.lr,
        "error_type": outcome.get("error_type", "Error"),
        "error": outcome.get("error", ""),
        "traceback": outcome.get("traceback", ""),
        "host": outcome.get("host", socket.gethostname()),
        "pid": outcome.get("pid"),
        "device": outcome.get("device"),
        "failed_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "attempts": attempts,
        "config": config.to_dict(),
    })
    return path


def record_success(results: Path, config: RunConfig, outcome: dict) -> None:
    """Clear an earlier failure; on a cluster without a shared filesystem, also write the result
    (the worker returns its record), so the results always end up in the sweep's folder."""
    path = result_path(results, config)
    record = outcome.get("record")
    if record is not None and not is_finished(path):
        write_json_atomic(path, record)
    failure_path(results, config).unlink(missing_ok=True)


# -- dispatch -------------------------------------------------------------------------------------
@dataclass
class Summary:
    done: int = 0
    skipped: int = 0
    failed: int = 0
    interrupted: int = 0
    elsewhere: int = 0
    not_started: int = 0
    stopped: bool = False                      # Ctrl-C or SIGTERM
    signal: int = 2                            # the first of them (SIGINT 2, SIGTERM 15)
    failures: list[Path] = field(default_factory=list)

    def line(self) -> str:
        text = f"done {self.done}, skipped {self.skipped}, failed {self.failed}, interrupted {self.interrupted}"
        if self.elsewhere:
            text += f", running elsewhere {self.elsewhere}"
        if self.not_started:
            text += f", not started {self.not_started}"
        return text

    @property
    def exit_code(self) -> int:
        return 128 + self.signal if self.stopped else 1 if self.failed else 0  # 130 (Ctrl-C), 143 (SIGTERM)


class SweepReporter:
    """Progress callbacks of a sweep; the default reports nothing."""

    def start(self, summary: Summary, pending: int) -> None: ...
    def run_started(self, config: RunConfig) -> None: ...
    def run_ended(self, config: RunConfig, status: str, outcome: dict, summary: Summary) -> None: ...
    def note(self, text: str) -> None: ...
    def tick(self, running: int, summary: Summary) -> None: ...
    def close(self) -> None: ...


def run_sweep(configs: list[RunConfig], results: Path, executor_factory: Callable[[int], object],
              reporter: SweepReporter | None = None, poll_s: float = 0.25, pack: int = 1,
              force: bool = False) -> Summary:
    """Run every config not yet finished, in packs of up to `pack` runs (see `make_packs`), at most
    `executor.slots` packs at a time.

    `executor_factory(pending)` makes the executor (see `che.runners.executors`); it is only called
    when something is left to run. With `force`, finished runs run again from the start (the
    executor must pass force on to its workers). Returns the Summary; a Ctrl-C ends with
    `summary.stopped`.
    """
    reporter = reporter or SweepReporter()
    results = Path(results)
    summary = Summary()
    pending = [c for c in configs if force or not is_finished(result_path(results, c))]
    summary.skipped = len(configs) - len(pending)
    reporter.start(summary, len(pending))
    if not pending:
        reporter.close()
        return summary
    queue = make_packs(pending, pack)
    in_flight: dict[str, list[tuple[RunConfig, Path]]] = {}
    queue.reverse()  # pop() from the end keeps grid order
    executor, stopping = None, 0
    try:
        with SignalCount() as signals:
            executor = executor_factory(len(queue))
            reporter.note(executor.describe())
            while queue or in_flight:
                if signals.count > stopping:
                    stopping = _stop(executor, signals.count, in_flight, reporter)
                    if stopping >= 2:
                        break
                while queue and not stopping and len(in_flight) < executor.slots:
                    _dispatch(queue.pop(), results, executor, in_flight, summary, reporter, force)
                for key, outcome in executor.poll(poll_s):
                    claimed = in_flight.pop(key)
                    per_run = outcome["runs"] if "runs" in outcome else [outcome] * len(claimed)
                    for (config, lock), run_outcome in zip(claimed, per_run):
                        try:
                            _settle(config, results, run_outcome, summary, reporter)
                        finally:
                            release(lock)
                reporter.tick(sum(len(c) for c in in_flight.values()), summary)
                if stopping and not in_flight:
                    break
    finally:
        for claimed in in_flight.values():  # abandoned after a second Ctrl-C
            for _config, lock in claimed:
                summary.interrupted += 1
                release(lock)
        summary.not_started += sum(len(p) for p in queue)
        summary.stopped = stopping > 0
        summary.signal = signals.first or summary.signal
        if executor is not None:
            executor.close()
        reporter.close()
    return summary


def _stop(executor, count: int, in_flight: dict, reporter: SweepReporter) -> int:
    running = sum(len(c) for c in in_flight.values())
    if count == 1:
        reporter.note(f"stopping: no new runs; {running} running run(s) save a checkpoint "
                      f"(Ctrl-C again to abandon them)")
        executor.interrupt()
        return 1
    reporter.note("abandoning the running runs")
    executor.kill()
    return 2


def _dispatch(pack, results, executor, in_flight, summary, reporter, force: bool = False) -> None:
    """Claim each run of the pack and submit those claimed; a run finished (unless `force`) or
    running elsewhere meanwhile is left out of it."""
    claimed = []
    for config in pack:
        if not force and is_finished(result_path(results, config)):  # another sweep finished it meanwhile
            summary.skipped += 1
            continue
        lock, holder = claim(results, config)
        if lock is None:
            summary.elsewhere += 1
            reporter.note(f"{label(config)}: running elsewhere ({holder}), left to it; the lock is the OS's "
                          f"and ends with that process")
            continue
        if not force and is_finished(result_path(results, config)):  # finished between the check and the claim
            release(lock)
            summary.skipped += 1
            continue
        claimed.append((config, lock))
    if not claimed:
        return
    try:
        key = executor.submit([config for config, _ in claimed])
    except BaseException:
        for _, lock in claimed:
            release(lock)
        raise
    in_flight[key] = claimed
    for config, _ in claimed:
        reporter.run_started(config)


def _settle(config, results, outcome: dict, summary: Summary, reporter: SweepReporter) -> None:
    status = outcome.get("status")
    if status in ("finished", "skipped"):
        record_success(results, config, outcome)
        if status == "finished":
            summary.done += 1
        else:
            summary.skipped += 1
    elif status == "interrupted":
        summary.interrupted += 1
    else:
        status = "failed"
        summary.failed += 1
        summary.failures.append(record_failure(results, config, outcome))
    reporter.run_ended(config, status, outcome, summary)


def label(config: RunConfig) -> str:
    return f"{config.task} x {config.pe} seed {config.seed} lr {config.lr:g}"
