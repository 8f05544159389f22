"""The local executor: a pool of worker processes on this machine, one run (or pack) each at a time.

Why not `concurrent.futures.ProcessPoolExecutor` (measured, torch 2.13, Python 3.11): when the OS
kills one of its workers (the OOM killer, kill -9) every run in flight fails with BrokenProcessPool
and the pool takes no more work, where a sweep must fail only that worker's pack and go on; and it
has no way to send Ctrl-C to the worker of one run. submitit's LocalExecutor (which `--executor
slurm --set slurm.local=true` uses) starts a process per pack, 2.5-3 s of Python and torch imports
each on this project's CPU: minutes over a leaderboard's 60 packs. Here a worker serves pack after
pack, a dead one fails its own pack and is replaced, and each busy worker gets Ctrl-C once.
"""

from __future__ import annotations

import itertools
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from che.results import command_line
from che.runners.executors.plan import Plan
from che.runners.executors.worker import run_pack
from che.threads import THREAD_VARIABLES, WAIT_POLICY


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
                          "force": self.force, "command": command_line()})
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
