"""The slurm executor: each pack a SLURM job, through submitit (or local processes, to try it)."""

from __future__ import annotations

import itertools
import os
import pickle
import signal
import subprocess
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

from che.errors import CheError
from che.results import command_line
from che.runners.executors.worker import run_pack
from che.runners.stopping import as_ctrl_c, sigint_blocked
from che.threads import configure as configure_threads


SLURM_TIME_MIN = 24 * 60       # per job, unless slurm.time says otherwise
SLURM_MAX_IN_FLIGHT = 1000     # SLURM's default MaxArraySize is 1001: a whole first round fits one array
SLURM_ARRAY_PARALLELISM = 256  # jobs of one array running at once (submitit's default)
SLURM_CHECK_S = 10.0           # between looks at the jobs: each stats a file per job on a shared filesystem
RESULT_WAIT_S = 30.0           # a shared filesystem may show a job's result file after SLURM says it ended


def import_submitit():
    """submitit, or a one-line CheError that says how to install it."""
    try:
        import submitit
    except ImportError:
        raise CheError("the slurm executor needs submitit: pip install 'che-bench[slurm]'") from None
    return submitit


@dataclass
class SlurmOptions:
    """What each SLURM job asks for (`slurm_options` fills in the defaults)."""

    gpus: int
    cpus: int                              # also the job's torch threads
    time_min: int = SLURM_TIME_MIN
    partition: str | None = None           # None: the cluster's default partition
    mem_gb: int | None = None              # None: the partition's default memory
    array_parallelism: int = SLURM_ARRAY_PARALLELISM
    local: bool = False                    # local processes (submitit's LocalExecutor) instead of sbatch

    def describe(self) -> str:
        parts = [f"{self.gpus} GPU(s)", f"{self.cpus} CPU(s)", f"{self.time_min} min"]
        if self.mem_gb:
            parts.append(f"{self.mem_gb} GB")
        if self.partition:
            parts.append(f"partition {self.partition}")
        return ", ".join(parts)


# The keys of a sweep's [slurm] table (`--set slurm.KEY=VALUE`): (SlurmOptions field, type, low, high).
TABLE = {"partition": ("partition", str, None, None), "time": ("time_min", int, 1, 366 * 24 * 60),
         "gpus_per_job": ("gpus", int, 0, 64), "cpus_per_job": ("cpus", int, 1, 1024),
         "mem_gb": ("mem_gb", int, 1, 65536), "array_parallelism": ("array_parallelism", int, 1, 100_000),
         "local": ("local", bool, None, None)}


def options_from_table(device: str, table: dict) -> SlurmOptions:
    """SlurmOptions from a sweep's [slurm] table, each value checked (one-line errors naming it)."""
    from che.errors import check_range, echo, unknown_name_error

    values = {}
    for key, value in table.items():
        if key not in TABLE:
            raise CheError(f"[slurm]: {unknown_name_error('key', key, TABLE)}")
        name, kind, low, high = TABLE[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise CheError(f"[slurm]: {key} must be {kind.__name__}, got {echo(repr(value))}")
        if low is not None:
            check_range(f"slurm.{key}", value, low, high)
        if kind is str and not value.strip():
            raise CheError(f"[slurm]: {key} is empty")
        values[name] = value
    return slurm_options(device, **values)


def slurm_options(device: str, gpus: int | None = None, cpus: int | None = None, time_min: int | None = None,
                  partition: str | None = None, mem_gb: int | None = None, array_parallelism: int | None = None,
                  local: bool = False) -> SlurmOptions:
    """SlurmOptions with the defaults: one GPU per job unless --device cpu; 4 CPUs beside a GPU (for
    its host work: sampling batches, evaluation), else 1 (one thread per run uses cores best, as in the
    local pool)."""
    from che.config import DEVICES

    if device not in DEVICES:
        raise CheError(f"unknown device '{device}' (choices: {', '.join(DEVICES)})")
    if gpus is None:
        gpus = 0 if device == "cpu" else 1
    if device == "cuda" and not gpus:
        raise CheError("--device cuda needs GPUs: slurm.gpus_per_job must be at least 1")
    if device == "cpu" and gpus:
        raise CheError(f"--device cpu: the jobs would hold {gpus} GPU(s) they do not use "
                       f"(slurm.gpus_per_job = 0, or --device auto)")
    if cpus is None:
        cpus = 4 if gpus else 1
    return SlurmOptions(gpus, cpus, time_min or SLURM_TIME_MIN, partition, mem_gb,
                        array_parallelism or SLURM_ARRAY_PARALLELISM, local)


def slurm_job(job: dict) -> dict:
    """A SLURM job: `run_pack(**job)`, with its thread count set before torch loads.

    SLURM stops a job with SIGTERM (scancel, a preemption, the end of its time) and, as submitit asks
    it to, with SIGUSR2 shortly before its time is up. Both act as Ctrl-C here: the first saves a
    checkpoint and stops the runs, a second abandons them (submitit's own handlers would ignore
    SIGTERM, and fail or requeue the job on SIGUSR2 without a checkpoint).
    """
    configure_threads(job["threads"])
    for signum in (signal.SIGTERM, signal.SIGUSR2):
        signal.signal(signum, as_ctrl_c)
    return run_pack(**job)


class SlurmExecutor:
    """Runs each pack as a SLURM job, through submitit. The packs submitted in one dispatch round go
    to SLURM together, as one job array (one sbatch); each job asks for `options`' GPUs, CPUs, time,
    memory and partition. Jobs must have che (and any plugin files, at the same paths) installed,
    and see the results folder, as on the sweep's machine (a shared filesystem). submitit keeps its
    scripts, pickles and logs in `<results>/.slurm/`, named by job id.

    With `options.local`, submitit's LocalExecutor runs the jobs as local processes instead (to try
    it out, and for tests); the rest is the same.
    """

    def __init__(self, results: Path, plugins: list[str], device: str, jobs: int | None, options: SlurmOptions,
                 pending: int, force: bool = False):
        self.submitit = submitit = import_submitit()
        self.results, self.plugins, self.device, self.options = Path(results), list(plugins), device, options
        self.force = force
        self.folder = self.results / ".slurm"
        self.slots = max(1, min(jobs or SLURM_MAX_IN_FLIGHT, pending))
        try:
            self._executor = submitit.AutoExecutor(folder=self.folder, cluster="local" if options.local else "slurm")
        except RuntimeError as exc:  # SLURM's srun is missing
            raise CheError(f"cannot submit SLURM jobs: {exc}") from None
        self._executor.update_parameters(  # None leaves a value to the cluster (or to submitit)
            name="che-sweep", timeout_min=options.time_min, gpus_per_node=options.gpus, cpus_per_task=options.cpus,
            mem_gb=options.mem_gb, slurm_partition=options.partition,
            slurm_array_parallelism=options.array_parallelism)
        self._queued: dict[str, dict] = {}
        self._in_flight: dict[str, object] = {}
        self._keys = itertools.count()
        self._check_every = 0.1 if options.local else SLURM_CHECK_S
        self._next_check = 0.0
        self._stopping = self._killed = False

    def describe(self) -> str:
        how = "local processes through submitit" if self.options.local else "sbatch, a job array per round"
        return (f"slurm ({how}): up to {self.slots} job(s) in flight, each {self.options.describe()}; "
                f"logs in {self.folder}")

    def submit(self, configs) -> str:
        """Queue a pack; `poll` submits the queue as one array."""
        key = str(next(self._keys))
        self._queued[key] = {"configs": [c.to_dict() for c in configs], "results": str(self.results),
                             "device": self.device, "plugins": self.plugins, "threads": self.options.cpus,
                             "force": self.force, "command": command_line()}
        return key

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        # Local jobs share the terminal's process group: with SIGINT blocked (the mask is inherited)
        # a Ctrl-C reaches only the sweep, which stops them through `interrupt`.
        blocked = sigint_blocked() if self.options.local else nullcontext()
        try:
            with blocked, self._executor.batch():
                jobs = {key: self._executor.submit(slurm_job, job) for key, job in queued.items()}
        except (RuntimeError, OSError) as exc:  # sbatch refused: an unknown partition, too long a time...
            message = " ".join(str(exc).split()) or type(exc).__name__
            raise CheError(f"submitting {len(queued)} SLURM job(s) failed: {message}") from None
        self._in_flight.update(jobs)

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        """Submit what was queued, then wait up to `timeout` for jobs to end (looking at them every
        `_check_every` seconds)."""
        if self._stopping:  # nothing new starts after Ctrl-C
            ended = [(key, {"status": "interrupted"}) for key in self._queued]
            self._queued.clear()
        else:
            ended = []
            if self._queued:
                self._flush()
        deadline = time.monotonic() + timeout
        while self._in_flight:
            if time.monotonic() >= self._next_check:
                self._next_check = time.monotonic() + self._check_every
                ended += self._ended()
            left = deadline - time.monotonic()
            if ended or left <= 0:
                break
            time.sleep(max(0.0, min(left, self._next_check - time.monotonic())))
        return ended

    def _ended(self) -> list[tuple[str, dict]]:
        if self._stopping and not self.options.local:
            # one sacct call now: submitit alone would look again only minutes later
            self.submitit.SlurmJob.watcher.update()
        ended = []
        for key, job in list(self._in_flight.items()):
            if job.done():
                del self._in_flight[key]
                ended.append((key, self._outcome(job)))
        return ended

    def _outcome(self, job) -> dict:
        """run_pack's outcome of a job that ended. A job that raised outside run_pack (che missing
        on the node, say) or ended without an outcome (killed at its time limit or for memory, its
        node lost) fails its runs; so does a job SLURM stopped without the sweep asking. After
        Ctrl-C, a job without an outcome (cancelled before it started) counts as interrupted."""
        result = job.paths.result_pickle
        if not result.exists() and not self.options.local and job.state in ("COMPLETED", "FAILED"):
            _wait_for(result, RESULT_WAIT_S)  # the job wrote it; a shared filesystem may show it late
        if result.exists():
            with result.open("rb") as f:
                kind, value = pickle.load(f)  # submitit's ("success", what slurm_job returned) or ("error", traceback)
            if kind != "success":
                return _raised(value)
            return value if self._stopping else _stopped_by_slurm(value, job.job_id, self.options.time_min)
        if self._stopping:
            return {"status": "interrupted"}
        how = "its process exited" if self.options.local else f"SLURM state {job.state}"
        return {"status": "failed", "error_type": "SlurmJobFailed",
                "error": f"job {job.job_id} ended without a result ({how}); its log: {job.paths.stderr}",
                "traceback": _tail(job.paths.stderr)}

    def interrupt(self) -> None:
        """Running jobs get SIGTERM (`slurm_job` takes it as Ctrl-C: a checkpoint, then stop);
        jobs still waiting in SLURM's queue are cancelled."""
        self._stopping = True
        self._stop(first=True)

    def kill(self) -> None:
        """Jobs get a second SIGTERM (a pending checkpoint is abandoned) or, on SLURM, are cancelled."""
        self._stopping = self._killed = True
        self._stop(first=False)

    def _stop(self, first: bool) -> None:
        jobs = list(self._in_flight.values())
        if self.options.local:
            for job in jobs:
                if not job.done():
                    try:
                        os.kill(int(job.job_id), signal.SIGTERM)  # the job's controller passes it on
                    except ProcessLookupError:
                        pass
            return
        ids = [job.job_id for job in jobs]
        if first:
            _scancel(ids, "--state=PENDING")
            _scancel(ids, "--state=RUNNING", "--signal=TERM")  # to the job steps: the batch script lives on
        else:
            _scancel(ids)  # SIGTERM, then SIGKILL after the cluster's KillWait

    def close(self) -> None:
        """Jobs the sweep leaves behind (after an error) are stopped, since their locks are released."""
        if self._in_flight and not self._killed:
            self.kill()


def _scancel(ids: list[str], *options: str) -> None:
    """scancel, quietly: a job that ended meanwhile is no error."""
    if ids:
        subprocess.run(["scancel", *options, *ids], capture_output=True, check=False, timeout=60)


def _wait_for(path: Path, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(1.0)


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _raised(trace: str) -> dict:
    """A failed outcome from the traceback of a job that raised outside run_pack."""
    last = trace.strip().splitlines()[-1] if trace.strip() else "Error"
    error_type, _, error = last.partition(": ")
    return {"status": "failed", "error_type": error_type, "error": error or last, "traceback": trace}


def _stopped_by_slurm(outcome: dict, job_id: str, time_min: int) -> dict:
    """Runs of a job that stopped although the sweep did not ask (its time was up, a preemption, an
    scancel) failed: they are not done, and the exit code must say so. The next sweep resumes them."""
    for run in outcome["runs"]:
        if run["status"] == "interrupted":
            at = f" at step {run['step']}" if run.get("step") is not None else ""
            run.update(status="failed", error_type="SlurmJobStopped",
                       error=f"SLURM stopped job {job_id}{at} (its time limit of {time_min} min, a preemption or "
                             f"scancel); the next sweep resumes the run from its last checkpoint")
    return outcome
