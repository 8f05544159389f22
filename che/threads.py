"""Threading (and the allocator), set before torch is imported: every `che` entry point calls
`configure` first.

OpenMP threads that spin while they wait starve each other when two processes share the cores
(measured on a 2-core machine: 0.64 steps/s spinning against 11.6 passive). So `che` makes idle
threads sleep (OMP_WAIT_POLICY=PASSIVE) and uses as many torch threads as the cores this process
may run on, unless the user says otherwise (OMP_NUM_THREADS, `--threads`). The count is never chosen
by timing steps: sums split across threads round differently, so a run's bits depend on it, and a
timing changes with the machine's load. A resumed run continues with the count it started with
(`che.runners.run.resume_threads`).
"""

from __future__ import annotations

import os
import sys

THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Idle OpenMP threads sleep instead of spinning (set unless the user set it): also for the workers
# a sweep starts, which may share cores with other workers, another sweep, anything else.
WAIT_POLICY = {"OMP_WAIT_POLICY": "PASSIVE"}


def usable_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return os.cpu_count() or 1


# What the environment said before `che` set anything (configure writes OMP_NUM_THREADS itself).
_USER_THREADS = os.environ.get("OMP_NUM_THREADS", "")
_chosen: int | None = None  # `che --threads`, once configure has seen it


def chosen_threads() -> int | None:
    """`che --threads N`, or None. A sweep gives N to each of its runs instead of splitting the
    cores between its workers (OMP_NUM_THREADS is not read for this: `che` sets it for the processes
    it starts, and a sweep's workers get theirs from the sweep)."""
    return _chosen


def keep_freed_memory() -> bool:
    """Ask glibc to keep freed blocks of up to 32 MB (its largest mmap threshold) in the process
    instead of returning each to the OS: a training step frees and allocates its [B, H, T, T]
    attention tensors again at every step, and memory returned to the OS comes back page fault by
    page fault (measured: 10-15% of a CPU step at batch 128, N = 40). Returns whether it could."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    return bool(libc.mallopt(m_mmap_threshold, 32 * 2**20)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def configure(threads: int | None = None) -> int:
    """Passive waiting, and `threads` torch threads (default: OMP_NUM_THREADS if set, else the usable
    cores: never a timing, since a run's bits depend on its thread count). Effective for OpenMP when
    called before torch is imported; torch's own thread count is set either way. Returns the thread
    count."""
    global _chosen
    for name, value in WAIT_POLICY.items():
        os.environ.setdefault(name, value)
    keep_freed_memory()
    if threads is not None:
        _chosen = threads
    given = _USER_THREADS
    if threads is None:
        threads = int(given) if given.isdigit() and int(given) > 0 else usable_cores()
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
    return threads

