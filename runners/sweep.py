"""`che sweep`: a grid of tasks x PEs x learning rates x seeds, run locally, on Ray or as SLURM jobs.

Every run of a sweep is exactly `che run` with that configuration: the workers call
`che.runners.run.execute` (with resume), which is idempotent and writes its result atomically. The
sweep adds what a grid needs around it:

- a grid from command-line options or a TOML file (`runners/sweeps/*.toml`; see `Grid`);
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
import importlib.resources
import json
import os
import signal
import socket
import threading
import time
import tomllib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from che.config import AXES, PRESETS, SETTINGS, RunConfig, make_config, typed_value
from che.errors import CheError, unknown_name_error
from che.locks import claim, is_locked, release
from che.results import DEFAULT_RESULTS, checkpoint_path, failure_path, is_finished, result_path, write_json_atomic

# -- the grid -------------------------------------------------------------------------------------
SPEC_KEYS = ("description", "preset", "tasks", "pes", "seeds", "lrs", "results", "plugins", "overrides")
MAX_SEEDS, MAX_RUNS = 10_000, 100_000  # bounds on what a grid may ask for (and a dry run list)


@dataclass
class Grid:
    """What a sweep runs: every task x PE x learning rate x seed, with the preset and overrides."""

    preset: str
    tasks: list[str]
    pes: list[str]
    seeds: list[int]
    lrs: list[float | None]          # None: the preset's learning rate
    results: Path
    overrides: dict = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)

    def configs(self) -> list[RunConfig]:
        """One validated RunConfig per distinct run, in grid order (task, PE, lr, seed)."""
        from che.registry import TASKS

        configs, seen = [], set()
        for task in self.tasks:
            for pe in self.pes:
                for lr in self.lrs:
                    for seed in self.seeds:
                        config = make_config(task, pe, self.preset, seed=seed, lr=lr, **self.overrides)
                        config.validate_for(TASKS.get(task))
                        if config.run_id not in seen:  # the run id covers task and PE too
                            seen.add(config.run_id)
                            configs.append(config)
        return configs

    def describe(self) -> str:
        lrs = ", ".join("preset" if lr is None else f"{lr:g}" for lr in self.lrs)
        return (f"{len(self.tasks)} task(s) x {len(self.pes)} PE(s) x {len(self.lrs)} lr ({lrs}) x "
                f"{len(self.seeds)} seed(s), preset {self.preset}")


def shipped_sweeps() -> list[str]:
    """The names of the sweep files that ship with che (`che sweep NAME`)."""
    folder = importlib.resources.files("che.runners") / "sweeps"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_spec(spec: str, what: str = "sweep file") -> tuple[str, dict]:
    """(label, values) of a sweep file given as a path or as the name of a shipped sweep (`what`
    names it in messages: a `che run --config` file is a "config file")."""
    path = Path(spec)
    if path.is_file():
        label, text = str(path), _read_text(path, what)
    elif what != "sweep file":
        raise CheError(f"{what} '{spec}' does not exist")
    elif spec.endswith(".toml") or os.sep in spec:
        raise CheError(f"sweep file '{spec}' does not exist (shipped sweeps: {', '.join(shipped_sweeps())})")
    elif spec in shipped_sweeps():
        label = spec
        text = (importlib.resources.files("che.runners") / "sweeps" / f"{spec}.toml").read_text()
    else:
        raise unknown_name_error("sweep", spec, shipped_sweeps())
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CheError(f"{label}: not valid TOML: {exc}") from None
    unknown = [key for key in values if key not in SPEC_KEYS]
    if unknown:
        raise CheError(f"{label}: {unknown_name_error('sweep-file key', unknown[0], SPEC_KEYS)}")
    return label, values


def _read_text(path: Path, what: str = "sweep file") -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheError(f"cannot read {what} '{path}': {exc}") from None


def build_grid(values: dict | None = None, label: str = "command line", *, tasks=None, pes=None,
               seeds=None, lrs=None, preset=None, results=None, plugins=None, require_tasks: str = "--tasks all",
               require_pes: str = "--pes", options: dict[str, str] | None = None, **overrides) -> Grid:
    """A Grid from a sweep file's values, with the options given on the command line winning.

    Command-line values are strings as typed (`"a,b"`, `"3"`); file values are TOML lists, numbers
    or strings. Keyword `overrides` with a value other than None override RunConfig fields.
    Plugins are loaded here, so that plugin tasks and PEs are known when names are checked.
    `options` names the command's options in messages where they are not `--<key>` (che run's
    `--task` and `--pe`).
    """
    from che.registry import load_plugins

    values = dict(values or {})
    where = f"{label}: " if label != "command line" else ""

    def pick(name, given):
        option = (options or {}).get(name, "--" + name)
        return (given, option) if given is not None else (values.get(name), f"{where}{name}")

    plugin_specs = list(_string_list(values.get("plugins", []), f"{where}plugins")) + list(plugins or [])
    load_plugins(plugin_specs)

    preset_value, what = pick("preset", preset)
    preset_value = "cpu" if preset_value is None else preset_value
    if not isinstance(preset_value, str) or preset_value not in PRESETS:
        raise CheError(f"{what}: {unknown_name_error('preset', str(preset_value), PRESETS)}")

    task_value, what = pick("tasks", tasks)
    if task_value is None:
        raise CheError(f"no task: pass {require_tasks} (or give `tasks` in a sweep or config file)")
    pe_value, what_pe = pick("pes", pes)
    if pe_value is None:
        raise CheError(f"no positional encoding: pass {require_pes} (or give `pes` in a sweep or config file)")
    seed_value, what_seed = pick("seeds", seeds)
    lr_value, what_lr = pick("lrs", lrs)
    results_value, what_results = pick("results", results)
    if results_value is not None and not isinstance(results_value, (str, Path)):
        raise CheError(f"{what_results} must be a folder path, got {results_value!r}")

    file_overrides = values.get("overrides", {})
    if not isinstance(file_overrides, dict):
        raise CheError(f"{where}overrides must be a table of RunConfig fields, got {file_overrides!r}")
    merged = dict(file_overrides)
    merged.update({k: v for k, v in overrides.items() if v is not None})
    grid = Grid(
        preset=preset_value,
        tasks=parse_tasks(task_value, what),
        pes=parse_pes(pe_value, what_pe),
        seeds=parse_seeds(1 if seed_value is None else seed_value, what_seed),
        lrs=parse_lrs(lr_value, what_lr),
        results=Path(results_value) if results_value is not None else DEFAULT_RESULTS,
        overrides=check_overrides(merged, f"{where}overrides"),
        plugins=plugin_specs,
    )
    size = len(grid.tasks) * len(grid.pes) * len(grid.seeds) * len(grid.lrs)
    if size > MAX_RUNS:
        raise CheError(f"the grid has {size:,} runs, more than a sweep takes ({MAX_RUNS:,}); split it")
    return grid


def _string_list(value, what: str) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b']."""
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [s.strip() for s in value]
    else:
        raise CheError(f"{what} must be a list of names or a comma-separated string, got {value!r}")
    return [s for s in items if s]


def parse_tasks(value, what: str = "--tasks") -> list[str]:
    """'all' (the built-in CHE tasks, in the papers' order) or names; each is checked."""
    from che.registry import BUILTIN, TASKS

    names = _string_list(value, what)
    if not names:
        raise CheError(f"{what} is empty (choices: all, {', '.join(TASKS.names())})")
    tasks = []
    for name in names:
        if name == "all":
            tasks += [e.name for e in TASKS.entries() if e.source == BUILTIN]
            continue
        try:
            TASKS.get(name)
        except CheError as exc:
            raise CheError(f"{what}: {exc}") from None
        tasks.append(name)
    return list(dict.fromkeys(tasks))


def parse_pes(value, what: str = "--pes") -> list[str]:
    """PE names, in canonical form (`dape-kerple` -> `dape-kerple-log`); each is checked."""
    from che.models.positional import canonical_pe_name

    names = _string_list(value, what)
    if not names:
        raise CheError(f"{what} is empty (`che pes` lists the positional encodings)")
    pes = []
    for name in names:
        try:
            pes.append(canonical_pe_name(name))
        except CheError as exc:
            raise CheError(f"{what}: {exc}") from None
    return list(dict.fromkeys(pes))


def parse_seeds(value, what: str = "--seeds") -> list[int]:
    """A count N (seeds 0..N-1), or a list: `3`, `"0,4,7"`, `[0, 4, 7]`."""
    bad = CheError(f"{what} must be a count N (seeds 0..N-1) or a list of seeds such as 0,4,7; got {value!r}")
    if isinstance(value, str):
        text = value.strip()
        if "," not in text:
            try:
                value = int(text)
            except ValueError:
                raise bad from None
        else:
            try:
                value = [int(s) for s in text.split(",") if s.strip()]
            except ValueError:
                raise bad from None
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        if not 1 <= value <= MAX_SEEDS:
            raise CheError(f"{what} must be between 1 and {MAX_SEEDS}, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if min(value) < 0 or max(value) >= 2**32:
            raise CheError(f"{what}: seeds must be in [0, 2^32), got {min(value) if min(value) < 0 else max(value)}")
        if len(value) > MAX_SEEDS:
            raise CheError(f"{what}: at most {MAX_SEEDS} seeds, got {len(value)}")
        return list(dict.fromkeys(value))
    raise bad


def parse_lrs(value, what: str = "--lrs") -> list[float | None]:
    """Learning rates: `"1e-4,3e-4"`, `[1e-4, 3e-4]` or one number; None means the preset's."""
    if value is None:
        return [None]
    bad = CheError(f"{what} must be learning rates such as 1e-4,3e-4; got {value!r}")
    if isinstance(value, str):
        try:
            value = [float(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise bad from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise bad
    for lr in value:
        if not 0 < lr < 1:
            raise CheError(f"{what}: a learning rate must be in (0, 1), got {lr:g}")
    return list(dict.fromkeys(float(v) for v in value))


def check_overrides(overrides: dict, what: str) -> dict:
    """Settings (`che settings`) with values of the setting's type; grid axes are refused with a hint."""
    checked = {}
    for key, value in overrides.items():
        if key in AXES:
            raise CheError(f"{what}: '{key}' is a grid axis; set `{AXES[key]}` instead")
        if key not in SETTINGS:
            raise CheError(f"{what}: {unknown_name_error('setting', key, set(SETTINGS) - set(AXES), 'che settings')}")
        checked[key] = typed_value(key, value, what)
    return checked


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
    stopped: bool = False                      # Ctrl-C
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
        return 130 if self.stopped else 1 if self.failed else 0


class SweepReporter:
    """Progress callbacks of a sweep; the default reports nothing."""

    def start(self, summary: Summary, pending: int) -> None: ...
    def run_started(self, config: RunConfig) -> None: ...
    def run_ended(self, config: RunConfig, status: str, outcome: dict, summary: Summary) -> None: ...
    def note(self, text: str) -> None: ...
    def tick(self, running: int, summary: Summary) -> None: ...
    def close(self) -> None: ...


class _Signals:
    """Counts SIGINT/SIGTERM while dispatching (in the main thread); the loop acts on the count."""

    def __init__(self):
        self.count = 0
        self._previous = {}

    def _handle(self, signum, frame):
        self.count += 1

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                if signal.getsignal(sig) is not signal.SIG_IGN:  # e.g. `che sweep &` in a script
                    self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def make_packs(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """Runs that differ only in seed and learning rate, in grid order, in packs of at most `size`."""
    groups: dict[str, list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(config.pack_key(), []).append(config)
    packs = []
    for group in groups.values():  # as even as possible: 9 runs in packs of up to 8 are 5 + 4
        count = -(-len(group) // max(1, size))
        bounds = [round(i * len(group) / count) for i in range(count + 1)]
        packs += [group[a:b] for a, b in zip(bounds, bounds[1:])]
    return packs


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
        with _Signals() as signals:
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
            reporter.note(f"{_label(config)}: running elsewhere ({holder}), left to it; the lock is the OS's "
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


def _label(config: RunConfig) -> str:
    return f"{config.task} x {config.pe} seed {config.seed} lr {config.lr:g}"


# -- dry run --------------------------------------------------------------------------------------
def plan(configs: list[RunConfig], results: Path) -> list[dict]:
    """One row per run: task, pe, seed, lr, run id and its state on disk."""
    return [{"task": c.task, "pe": c.pe, "seed": c.seed, "lr": c.lr, "run_id": c.run_id,
             "state": run_state(results, c)} for c in configs]


CPU_PACK = 4  # at the cpu preset a pack of 3 runs makes 1.3-1.5x the run-steps/s of one run (2 cores)


def auto_pack_size(configs: list[RunConfig], device: str) -> int:
    """How many runs to train as one pack: on a CPU up to CPU_PACK (the batched operations of a
    pack use the cores better than one small run does); on a GPU as many as 40% of its memory
    holds, at most 16. A run's memory is measured: one
    training step of the most demanding configuration of the grid (by `bytes_per_example` at its
    longest training sequence), weights and Adam's state included; the 40% leaves room for the
    captured graphs' pool beside the eager allocations."""
    from che.runners.run import pick_device

    torch_device = pick_device(device)
    if not configs:
        return 1
    if torch_device.type != "cuda":
        return CPU_PACK
    import torch

    from che.registry import TASKS
    from che.runners.evaluate import bytes_per_example
    from che.runners.train import Trainer, train_tokens

    def demand(config):
        task = TASKS.get(config.task)
        return config.batch_size * bytes_per_example(config.model_for(task), train_tokens(config, task), "cuda")

    worst = max({c.pack_key(): c for c in configs}.values(), key=demand)
    task = TASKS.get(worst.task)
    probe = RunConfig.from_dict(worst.to_dict() | {"cuda_graphs": False})
    torch.cuda.synchronize(torch_device)
    before = torch.cuda.memory_allocated(torch_device)
    torch.cuda.reset_peak_memory_stats(torch_device)
    with torch.random.fork_rng(devices=[torch_device]):
        trainer = Trainer([probe], task, torch_device)
        batch = task.sample(probe.batch_size, probe.train_length, torch.Generator().manual_seed(0))
        trainer.step(tuple(getattr(batch, name)[None] for name in ("inputs", "targets", "mask")))
    torch.cuda.synchronize(torch_device)
    per_run = torch.cuda.max_memory_allocated(torch_device) - before
    del trainer
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(torch_device).total_memory
    return max(1, min(16, int(0.4 * total // max(per_run, 1))))


def parse_pack(value: str, configs: list[RunConfig], device: str) -> int:
    """--pack: auto, off (1) or a size K."""
    if value == "auto":
        return auto_pack_size(configs, device)
    if value == "off":
        return 1
    try:
        size = int(value)
    except ValueError:
        raise CheError(f"--pack must be auto, off or a number of runs, got {value!r}") from None
    if not 1 <= size <= 1024:
        raise CheError(f"--pack must be between 1 and 1024, got {size}")
    return size


def expected_wall(seconds: list[float], jobs: int) -> float:
    """Wall time of runs of these lengths on `jobs` parallel workers, longest first (a greedy
    schedule, which is what a queue with free workers picking the next run does)."""
    if not seconds:
        return 0.0
    loads = [0.0] * max(1, jobs)
    for s in sorted(seconds, reverse=True):
        loads[loads.index(min(loads))] += s
    return max(loads)


def eta(elapsed: float, finished: int, remaining: int) -> float | None:
    """Seconds left at the rate runs have finished so far (None before the first)."""
    if finished <= 0:
        return None
    return elapsed / finished * remaining if remaining else 0.0


# -- progress -------------------------------------------------------------------------------------
def describe_outcome(config: RunConfig, status: str, outcome: dict) -> str:
    """One line about a run that ended."""
    text = f"{status} {_label(config)}"
    record = outcome.get("record")
    if status == "finished" and record:
        text += f": unseen lengths {100 * record['ood_accuracy']:.1f}%"
    elif status == "failed":
        text += f": {outcome.get('error_type', 'Error')}: {outcome.get('error', '')}"
    elif status == "interrupted" and outcome.get("step") is not None:
        text += f" at step {outcome['step']} (checkpoint saved)"
    if outcome.get("seconds") is not None:
        text += f" ({outcome['seconds']:.0f} s)"
    return text


class _Counts:
    """What the progress displays share: runs settled this sweep, and the ETA from their rate."""

    def start(self, summary: Summary, pending: int) -> None:
        self.pending, self.skipped_before = pending, summary.skipped
        self.started_at = time.monotonic()

    def settled(self, summary: Summary) -> int:
        return (summary.done + summary.failed + summary.interrupted + summary.elsewhere
                + summary.skipped - self.skipped_before)

    def eta_text(self, summary: Summary) -> str:
        from che.runners.estimate import format_duration

        settled = self.settled(summary)
        left = eta(time.monotonic() - self.started_at, settled, self.pending - settled)
        return "eta ?" if left is None else f"eta {format_duration(left)}"


class RichSweepReporter(_Counts, SweepReporter):
    """A live bar: runs settled / to run, running, failed, elapsed and ETA; lines above it for
    failures and notes."""

    def __init__(self, console):
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.console = console
        self.progress = Progress(
            TextColumn("[bold]sweep"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
            TextColumn("{task.fields[info]}"), TimeElapsedColumn(), TextColumn("{task.fields[eta]}"),
            console=console, transient=False,
        )
        self.bar = None

    def start(self, summary, pending):
        super().start(summary, pending)
        if pending:
            self.progress.start()
            self.bar = self.progress.add_task("sweep", total=pending, info="", eta="eta ?")

    def run_ended(self, config, status, outcome, summary):
        if status in ("failed", "interrupted"):
            self.progress.console.print(describe_outcome(config, status, outcome), highlight=False, markup=False)

    def note(self, text):
        self.progress.console.print(text, highlight=False, markup=False)

    def tick(self, running, summary):
        if self.bar is None:
            return
        info = f"running {running}  done {summary.done}  failed {summary.failed}"
        self.progress.update(self.bar, completed=self.settled(summary), info=info, eta=self.eta_text(summary))

    def close(self):
        self.progress.stop()


class LogSweepReporter(_Counts, SweepReporter):
    """Plain lines, one when a run starts and one when it ends (for logs and --quiet)."""

    def __init__(self, console):
        self.console = console

    def _print(self, text):
        self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def run_started(self, config):
        self._print(f"started {_label(config)}")

    def run_ended(self, config, status, outcome, summary):
        self._print(f"[{self.settled(summary)}/{self.pending}, {self.eta_text(summary)}] "
                    + describe_outcome(config, status, outcome))

    def note(self, text):
        self._print(text)
