"""The ray executor: runs as Ray tasks, on a local Ray instance or a cluster."""

from __future__ import annotations

import itertools
import logging
import os
import socket
from pathlib import Path

from che.errors import CheError
from che.results import command_line
from che.runners.executors.plan import Plan
from che.runners.executors.worker import run_pack
from che.runners.stopping import sigint_blocked
from che.threads import usable_cores


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
                    with sigint_blocked():  # Ray's daemons inherit the mask: Ctrl-C is ours to handle
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
        from che.config import DEVICES

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
                                                   self.plan.device, self.plugins, self.plan.threads, self.force,
                                                   command_line())
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
