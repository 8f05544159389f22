"""Where the runs of a sweep execute: a local pool of worker processes, a Ray cluster, or SLURM jobs.

All run `run_pack`, the worker entry (a pack of configs -> `execute_pack` -> result files), and
offer the small interface that `che.runners.sweep.run_sweep` drives:

    slots                          how many packs to keep in flight
    submit(configs) -> key         start a pack (one run or several that train together)
    poll(timeout) -> [(key, outcome)]   the packs that ended; outcome is run_pack's dict, or one
                                   dict for every run of the pack when its worker died
    interrupt()                    ask the running runs to save a checkpoint and stop (Ctrl-C)
    kill()                         abandon them (a second Ctrl-C)
    close()
    describe() -> str              one line about where the runs go

Nothing here imports torch at module level: a worker sets its thread counts (and the GPU it may
see) in its environment before torch is loaded.
"""

from __future__ import annotations

import _thread
import itertools
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import shutil
import signal
import socket
import subprocess
import threading
import time
import traceback
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

from che.errors import CheError
from che.threads import THREAD_VARIABLES, WAIT_POLICY, usable_cores
from che.threads import configure as configure_threads

EXECUTORS = ("local", "ray", "slurm")


# -- the worker entry -----------------------------------------------------------------------------
_stop_pending = False  # a Ctrl-C that arrived while no training loop was listening


def run_pack(configs: list[dict], results: str, device: str = "auto", plugins: list[str] | tuple = (),
             threads: int | None = None, force: bool = False) -> dict:
    """Run a pack of configurations exactly as `che run --resume` does, and say how each ended.

    Loads the plugins, sets torch's thread count, rebuilds the RunConfigs and calls `execute_pack`.
    Never raises for a failed run: returns {"runs": [one outcome per config]}, each
    {"status": "finished" | "skipped" | "interrupted" | "failed", ...} with the result record, or
    the error and its traceback. Ctrl-C (SIGINT) during training saves a checkpoint (status
    "interrupted"); one that comes before training starts is kept and stops it after its first step;
    one during evaluation lets the pack finish.
    """
    global _stop_pending
    _stop_pending = False
    started = time.perf_counter()
    common = {"host": socket.gethostname(), "pid": os.getpid(), "device": device}
    outcomes = [dict(common, run_id=None) for _ in configs]
    for name, value in WAIT_POLICY.items():
        os.environ.setdefault(name, value)  # effective where torch is not loaded yet
    with _sigint_deferred():
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
                                        reporter=_stop_relay(), lock=False)
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


@contextmanager
def _sigint_deferred():
    """While a run is set up or evaluated, SIGINT only leaves a note (`_stop_pending`); during
    training, the training loop's own handler takes it (and restores this one afterwards)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def note(signum, frame):
        global _stop_pending
        _stop_pending = True

    previous = signal.signal(signal.SIGINT, note)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _stop_relay():
    """A Reporter that passes a Ctrl-C noted before training started on to the training loop,
    after its first step, so that it saves a checkpoint and stops."""
    from che.runners.run import Reporter

    class StopRelay(Reporter):
        def step(self, state, loss, accuracy):
            global _stop_pending
            if _stop_pending and threading.current_thread() is threading.main_thread():
                _stop_pending = False
                _thread.interrupt_main(signal.SIGINT)  # runs the training loop's SIGINT handler

    return StopRelay()


# -- resources ------------------------------------------------------------------------------------
def visible_gpus() -> list[str]:
    """The CUDA devices this process sees, as CUDA_VISIBLE_DEVICES entries for one worker each."""
    import torch

    if not torch.cuda.is_available():
        return []
    count = torch.cuda.device_count()
    listed = [d.strip() for d in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return listed[:count] if listed else [str(i) for i in range(count)]


@dataclass
class Plan:
    """How a sweep uses the machine: device, parallel runs, torch threads per run, GPUs per slot."""

    device: str            # "cpu" or "cuda"
    jobs: int
    threads: int
    gpus: list[str]        # local CUDA: the device of each slot; empty otherwise
    gpu_share: float = 0   # Ray: the fraction of a GPU each run declares

    def describe(self) -> str:
        where = self.device
        if self.gpus:
            where = f"cuda ({len(set(self.gpus))} GPU(s))"
        elif self.gpu_share:
            where = f"cuda ({self.gpu_share:g} GPU per run)"
        return f"{self.jobs} parallel run(s) x {self.threads} torch thread(s) on {where}"


def local_plan(device: str, jobs: int | None, jobs_per_gpu: int, pending: int) -> Plan:
    """Local defaults: with CUDA, jobs_per_gpu runs per GPU, each worker pinned to one GPU; on a
    CPU, one run per core. Never more workers than runs; threads = cores // jobs, at least 1, so
    that workers don't oversubscribe the cores (OpenMP threads that spin against each other make
    training many times slower)."""
    from che.runners.run import pick_device

    resolved = pick_device(device).type
    cores = usable_cores()
    gpus = visible_gpus() if resolved == "cuda" else []
    capacity = len(gpus) * jobs_per_gpu if gpus else cores
    count = max(1, min(jobs or capacity, pending))
    threads = max(1, cores // count)
    slots = [gpus[i % len(gpus)] for i in range(count)] if gpus else []
    return Plan(resolved, count, threads, slots)


# -- local executor -------------------------------------------------------------------------------
def _worker_main(conn, parent_pid: int) -> None:
    """A local worker: runs jobs from the pipe until told to stop or the sweep goes away.

    It leaves the terminal's process group, so that a Ctrl-C reaches only the sweep, which passes
    it on to each busy worker exactly once (a second SIGINT would abandon the training step); and
    if the sweep dies, it stops its run as Ctrl-C would (saving a checkpoint) and exits.
    """
    if hasattr(os, "setpgid"):
        try:
            os.setpgid(0, 0)
        except OSError:
            pass
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True).start()
    while True:
        try:
            job = conn.recv()
        except (EOFError, OSError):
            return
        if job is None:
            return
        outcome = run_pack(**job)
        try:
            conn.send(outcome)
        except OSError:
            return


def _watch_parent(parent_pid: int) -> None:
    while os.getppid() == parent_pid:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGINT)


@contextmanager
def _environment(values: dict[str, str]):
    """Set environment variables for a child started inside (spawn copies the environment)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


class _Worker:
    def __init__(self, context, slot: int, env: dict[str, str]):
        parent_end, child_end = context.Pipe()
        self.process = context.Process(target=_worker_main, args=(child_end, os.getpid()),
                                       name=f"che-sweep-worker-{slot}", daemon=True)
        with _environment(env):
            self.process.start()
        child_end.close()
        self.conn = parent_end
        self.key: str | None = None


class LocalExecutor:
    """A pool of `plan.jobs` worker processes ("spawn" context: safe with torch and CUDA).

    Each worker serves one slot; on CUDA a slot is pinned to one GPU (its CUDA_VISIBLE_DEVICES),
    so jobs_per_gpu slots share each GPU. A worker that dies (killed, out of memory) fails only
    its own run, and a fresh one takes its slot.
    """

    def __init__(self, plan: Plan, results: Path, plugins: list[str], force: bool = False):
        self.plan, self.results, self.plugins, self.force = plan, Path(results), list(plugins), force
        self.slots = plan.jobs
        self._context = multiprocessing.get_context("spawn")
        self._workers: list[_Worker | None] = [None] * plan.jobs
        self._keys = itertools.count()
        self._killing = False

    def describe(self) -> str:
        return f"local: {self.plan.describe()}"

    def _env(self, slot: int) -> dict[str, str]:
        env = {name: str(self.plan.threads) for name in THREAD_VARIABLES}
        env.update({k: v for k, v in WAIT_POLICY.items() if k not in os.environ})
        if self.plan.gpus:
            env["CUDA_VISIBLE_DEVICES"] = self.plan.gpus[slot]
        return env

    def submit(self, configs) -> str:
        slot = next((i for i, w in enumerate(self._workers) if w is not None and w.key is None), None)
        if slot is None:
            slot = self._workers.index(None)  # the dispatcher never submits more than `slots`
            self._workers[slot] = _Worker(self._context, slot, self._env(slot))
        worker = self._workers[slot]
        worker.key = f"{slot}:{next(self._keys)}"
        worker.conn.send({"configs": [c.to_dict() for c in configs], "results": str(self.results),
                          "device": self.plan.device, "plugins": self.plugins, "threads": self.plan.threads,
                          "force": self.force})
        return worker.key

    def _busy(self) -> list[_Worker]:
        return [w for w in self._workers if w is not None and w.key is not None]

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        busy = self._busy()
        if not busy:
            return []
        waitables = [w.conn for w in busy] + [w.process.sentinel for w in busy]
        ready = set(multiprocessing.connection.wait(waitables, timeout))
        ended = []
        for worker in busy:
            if worker.conn not in ready and worker.process.sentinel not in ready:
                continue
            outcome = self._receive(worker)
            if outcome is None:
                continue
            ended.append((worker.key, outcome))
            worker.key = None
        return ended

    def _receive(self, worker: _Worker) -> dict | None:
        try:
            if worker.conn.poll():
                return worker.conn.recv()
        except (EOFError, OSError):
            pass
        if worker.process.is_alive():
            return None  # woken by a partial message; the rest follows
        worker.process.join()
        slot = self._workers.index(worker)
        self._workers[slot] = None
        if self._killing:
            return {"status": "interrupted"}
        code = worker.process.exitcode
        return {"status": "failed", "error_type": "WorkerDied", "host": socket.gethostname(),
                "pid": worker.process.pid,
                "error": f"the worker process died (exit code {code}{_signal_name(code)}) during the run; "
                         f"it may have run out of memory"}

    def interrupt(self) -> None:
        for worker in self._busy():
            try:
                os.kill(worker.process.pid, signal.SIGINT)
            except ProcessLookupError:
                pass

    def kill(self) -> None:
        self._killing = True
        for worker in self._busy():
            worker.process.terminate()

    def close(self) -> None:
        """Stop the workers. Idle ones hold nothing, so they are terminated rather than left to
        unload torch; busy ones (only after a second Ctrl-C) were terminated by kill()."""
        for worker in self._workers:
            if worker is None:
                continue
            worker.process.terminate()
            worker.process.join(5)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self._workers = [None] * len(self._workers)


def _signal_name(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f", {signal.Signals(-code).name}"
        except ValueError:
            pass
    return ""


@contextmanager
def _sigint_blocked():
    """Block SIGINT in this thread while children are started (they inherit the signal mask).

    A local Ray instance's daemons (gcs_server, raylet, agents) share the sweep's process group, so
    a Ctrl-C in the terminal would kill them, and with them the runs that are saving a checkpoint.
    Blocked, the terminal's SIGINT never reaches them; the sweep stops its runs through Ray
    (`ray.cancel`, which interrupts a task without an OS signal). Signals pending here when the
    mask is restored are delivered then.
    """
    if not hasattr(signal, "pthread_sigmask"):
        yield
        return
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


# -- Ray executor ---------------------------------------------------------------------------------
def import_ray():
    """Ray, or a one-line CheError that says how to install it."""
    try:
        import ray
    except ImportError:
        raise CheError("the ray executor needs Ray: pip install 'che-bench[ray]'") from None
    return ray


class RayExecutor:
    """Runs as Ray tasks with declared resources: `threads` CPUs each, and on CUDA 1/jobs_per_gpu
    of a GPU, so that several small runs pack one GPU. Joins the cluster at `address` (or
    RAY_ADDRESS), else starts a local Ray instance sized to this machine. Workers must have che
    (and any plugin files, at the same paths) installed, as on the driver.
    """

    def __init__(self, results: Path, plugins: list[str], device: str, jobs: int | None, jobs_per_gpu: int,
                 address: str | None, pending: int, force: bool = False):
        self.ray = ray = import_ray()
        self.results, self.plugins, self.force = Path(results), list(plugins), force
        address = address or os.environ.get("RAY_ADDRESS") or None
        self.address = address
        self._owns = not ray.is_initialized()
        if self._owns:
            quiet = dict(log_to_driver=False, logging_level=logging.ERROR, configure_logging=True)
            try:
                if address:
                    _check_reachable(address)
                    ray.init(address=address, **quiet)
                else:
                    with _sigint_blocked():  # Ray's daemons inherit the mask: Ctrl-C is ours to handle
                        ray.init(num_cpus=usable_cores(), include_dashboard=False, **quiet)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CheError(f"cannot start or join Ray{f' at {address}' if address else ''}: {exc}") from None
        try:
            self.plan = self._plan(device, jobs, jobs_per_gpu, pending)
        except BaseException:
            self.close()
            raise
        self.slots = self.plan.jobs
        self._remote = ray.remote(run_pack).options(
            num_cpus=self.plan.threads, num_gpus=self.plan.gpu_share, name="che-run")
        self._in_flight: dict[str, object] = {}
        self._keys = itertools.count()
        self._killing = False

    def describe(self) -> str:
        where = f"cluster at {self.address}" if self.address else "local instance"
        return f"ray ({where}): {self.plan.describe()}"

    def _plan(self, device: str, jobs: int | None, jobs_per_gpu: int, pending: int) -> Plan:
        from che.runners.run import DEVICES

        if device not in DEVICES:
            raise CheError(f"unknown device '{device}' (choices: {', '.join(DEVICES)})")
        resources = self.ray.cluster_resources()
        cpus, gpus = int(resources.get("CPU", 0)), resources.get("GPU", 0)
        use_cuda = device == "cuda" or (device == "auto" and gpus > 0)
        if use_cuda and gpus <= 0:
            raise CheError("--device cuda: the Ray cluster has no GPUs (choices: auto, cpu)")
        if use_cuda:
            count = max(1, min(jobs or int(gpus * jobs_per_gpu), pending))
            return Plan("cuda", count, 1, [], gpu_share=1 / jobs_per_gpu)
        count = max(1, min(jobs or cpus, pending))
        node_cpus = [n.get("Resources", {}).get("CPU", 0) for n in self.ray.nodes() if n.get("Alive")]
        threads = max(1, min(cpus // count, int(max(node_cpus, default=1))))
        return Plan("cpu", count, threads, [])

    def submit(self, configs) -> str:
        key = str(next(self._keys))
        self._in_flight[key] = self._remote.remote([c.to_dict() for c in configs], str(self.results),
                                                   self.plan.device, self.plugins, self.plan.threads, self.force)
        return key

    def poll(self, timeout: float) -> list[tuple[str, dict]]:
        if not self._in_flight:
            return []
        refs = list(self._in_flight.values())
        ready, _ = self.ray.wait(refs, num_returns=len(refs), timeout=timeout)
        ready = set(ready)
        ended = []
        for key, ref in list(self._in_flight.items()):
            if ref in ready:
                del self._in_flight[key]
                ended.append((key, self._outcome(ref)))
        return ended

    def _outcome(self, ref) -> dict:
        exceptions = self.ray.exceptions
        try:
            return self.ray.get(ref)
        except exceptions.TaskCancelledError:
            return {"status": "interrupted"}
        except exceptions.RayError as exc:
            if self._killing:
                return {"status": "interrupted"}
            return {"status": "failed", "error_type": type(exc).__name__, "error": str(exc).strip().splitlines()[0]
                    if str(exc).strip() else type(exc).__name__, "traceback": str(exc)}

    def interrupt(self) -> None:
        for ref in self._in_flight.values():
            self.ray.cancel(ref, force=False)

    def kill(self) -> None:
        self._killing = True
        for ref in self._in_flight.values():
            try:
                self.ray.cancel(ref, force=True)
            except Exception:  # already finished
                pass

    def close(self) -> None:
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()


# -- SLURM executor -------------------------------------------------------------------------------
SLURM_TIME_MIN = 24 * 60       # per job, unless --slurm-time says otherwise
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


def slurm_options(device: str, gpus: int | None = None, cpus: int | None = None, time_min: int | None = None,
                  partition: str | None = None, mem_gb: int | None = None, array_parallelism: int | None = None,
                  local: bool = False) -> SlurmOptions:
    """SlurmOptions with the defaults: one GPU per job unless --device cpu; 4 CPUs beside a GPU (for
    its host work: sampling batches, evaluation), else 1 (one thread per run uses cores best, as in the
    local pool)."""
    from che.runners.run import DEVICES

    if device not in DEVICES:
        raise CheError(f"unknown device '{device}' (choices: {', '.join(DEVICES)})")
    if gpus is None:
        gpus = 0 if device == "cpu" else 1
    if device == "cuda" and not gpus:
        raise CheError("--device cuda needs GPUs: --slurm-gpus-per-job must be at least 1")
    if device == "cpu" and gpus:
        raise CheError(f"--device cpu: the jobs would hold {gpus} GPU(s) they do not use "
                       f"(--slurm-gpus-per-job 0, or --device auto)")
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
        signal.signal(signum, _as_ctrl_c)
    return run_pack(**job)


def _as_ctrl_c(signum, frame) -> None:
    _thread.interrupt_main(signal.SIGINT)  # the handler run_pack or the training loop set for SIGINT


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
                             "force": self.force}
        return key

    def _flush(self) -> None:
        queued, self._queued = self._queued, {}
        # Local jobs share the terminal's process group: with SIGINT blocked (the mask is inherited)
        # a Ctrl-C reaches only the sweep, which stops them through `interrupt`.
        blocked = _sigint_blocked() if self.options.local else nullcontext()
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


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Refuse in seconds a Ray address nothing answers at (ray.init would wait minutes)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if address == "auto" or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise CheError(f"cannot reach Ray at {address}: {exc.strerror or exc} (is the cluster's head running, "
                       f"and is this its address?)") from None


def make_executor(kind: str, results: Path, plugins: list[str], device: str, jobs: int | None,
                  jobs_per_gpu: int, ray_address: str | None = None, slurm: SlurmOptions | None = None,
                  force: bool = False):
    """A factory `pending -> executor` for `run_sweep` (nothing starts unless runs are left).

    Workers get the results folder as an absolute path (a Ray worker runs in a folder of its own)
    and `plugins` as specs that another process can load (`che.registry.loaded_plugins()`).
    `slurm` says what each SLURM job asks for (default: `slurm_options(device)`).
    """
    results = Path(results).absolute()
    if kind not in EXECUTORS:
        raise CheError(f"unknown executor '{kind}' (choices: {', '.join(EXECUTORS)})")
    if kind == "ray":
        import_ray()  # fail before anything else happens
        return lambda pending: RayExecutor(results, plugins, device, jobs, jobs_per_gpu, ray_address, pending, force)
    if kind == "slurm":
        import_submitit()
        options = slurm or slurm_options(device)
        if not options.local and shutil.which("sbatch") is None:
            raise CheError("the slurm executor submits jobs with sbatch, which this machine does not have (run "
                           "the sweep on the cluster's login node, or add --slurm-local to run the jobs here)")
        return lambda pending: SlurmExecutor(results, plugins, device, jobs, options, pending, force)
    from che.runners.run import pick_device

    pick_device(device)  # an unknown or unavailable device fails before anything runs
    return lambda pending: LocalExecutor(local_plan(device, jobs, jobs_per_gpu, pending), results, plugins, force)
