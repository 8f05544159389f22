"""One lock per run, so that two processes never train the same run at once (`che run` and every
sweep take it).

The lock is an OS file lock (filelock, fcntl on Unix): the OS releases it when its process ends,
however it ends, so a lock is never stale and a reused PID never looks like a live owner. The lock
files live in `<results>/.locks/` and are left there (empty, tiny): removing a lock file while
another process may be opening it would let two processes hold "the" lock. Beside each, an
`.owner` file says who holds it (host, pid, since, command), for the message others print.
On a shared filesystem the lock works across hosts where the filesystem supports file locks
(NFSv4, Lustre and GPFS do).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from pathlib import Path

from filelock import FileLock, Timeout

from che.results import command_line, run_dir


def lock_path(results: Path, config) -> Path:
    return run_dir(Path(results) / ".locks", config.task, config.pe) / f"{config.run_id}.lock"


class RunLock:
    def __init__(self, path: Path, lock: FileLock):
        self.path, self._lock = path, lock

    def release(self) -> None:
        self.path.with_suffix(".owner").unlink(missing_ok=True)
        self._lock.release()


def claim(results: Path, config) -> tuple[RunLock | None, str | None]:
    """Take the run's lock: (lock, None), or (None, who holds it) when another process does."""
    path = lock_path(results, config)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0, is_singleton=False, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        return None, holder(path)
    owner = {"host": socket.gethostname(), "pid": os.getpid(),
             "since": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
             "command": command_line()}
    try:
        path.with_suffix(".owner").write_text(json.dumps(owner))
    except OSError:
        pass  # only the message of a process that finds the run locked loses its details
    return RunLock(path, lock), None


def release(lock: RunLock | None) -> None:
    if lock is not None:
        lock.release()


def holder(path: Path) -> str:
    """Who holds a lock, as its owner file says."""
    try:
        owner = json.loads(path.with_suffix(".owner").read_text())
        where = "" if owner.get("host") == socket.gethostname() else f" on {owner.get('host')}"
        return f"pid {owner.get('pid')}{where}, since {owner.get('since')}"
    except (OSError, ValueError, AttributeError):
        return "another process"


def is_locked(results: Path, config) -> str | None:
    """Who holds the run's lock now, or None (takes and releases it to find out; creates nothing
    where no lock file exists)."""
    if not lock_path(results, config).exists():
        return None
    lock, who = claim(results, config)
    release(lock)
    return who
