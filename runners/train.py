"""Training as the CHE reference does it (neural_networks_chomsky_hierarchy's training loop), for a
pack of runs at once, with checkpoints that resume exactly.

A pack is K >= 1 runs that differ only in their seed and learning rate (`RunConfig.pack_key`); one
run alone is the pack of one, through the same code. Each step draws one length uniformly from
1..train_length, samples each run's batch at that length, and minimises each run's mean
cross-entropy over all output positions (padding included, as the reference), with Adam,
global-norm gradient clipping per run and each run's constant learning rate (`PackedAdam`).

Randomness, per run, so that a run computes the same alone or in a pack:
- its weights are initialised from its seed (`Transformer(config, seeds=...)`);
- its batches come from a CPU generator seeded with its seed;
- its dropout masks and randomized positions from a generator of its own on the device;
- the per-step lengths from one generator seeded with `length_seed`, the same for every seed by
  default, so that the runs of a pack agree on every step's length (the reference draws lengths
  and batches from one RNG; the distribution of lengths is the same).

On CUDA each step (forward, backward, clipping, Adam, the statistics) is captured as a CUDA graph
per training shape and replayed (`che.runners.cuda_graphs`); the host reads the statistics back
only when it reports, so it samples the next batches while the GPU computes.

A checkpoint holds the weights, the optimiser, every generator and the torch thread count (sums
split across threads round differently), so a resumed run continues bit for bit; a sha256 of its
contents refuses one damaged since it was written.
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from che.config import RunConfig
from che.errors import CheError
from che.models import Transformer
from che.models.positional import parse_pe
from che.registry import CheWarning
from che.results import disk_problem
from che.runners.optim import PackedAdam
from che.runners.precision import matmul_precision, numerics
from che.runners.stopping import StopRequested, signal_name

# The stacked weights of a pack are views with gaps between the runs (see PackedAdam); autograd
# notes that their gradients' strides are unusual, which is harmless here.
warnings.filterwarnings("ignore", message="grad and param do not obey the gradient layout contract")

def train_tokens(config: RunConfig, task) -> int:
    """The longest sequence the model trains on: inputs and output tokens at train_length."""
    return task.input_length(config.train_length) + task.output_length(config.train_length)


def noise_generator(seed: int, device: torch.device) -> torch.Generator:
    """The generator of a run's dropout masks and random positions (distinct from its data's)."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + 7)


def masked_accuracy_counts(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """Each run's (correct, counted) per-token counts, pooled over its batch, as the reference:
    logits [K, B, T_out, C], targets and mask [K, B, T_out] -> two [K] tensors."""
    correct = (logits.argmax(dim=-1) == targets) & mask
    return correct.flatten(1).sum(1), mask.flatten(1).sum(1)


def check_pack(configs: list[RunConfig]) -> None:
    keys = {c.pack_key() for c in configs}
    if len(keys) != 1:
        raise ValueError("the runs of a pack must differ only in seed and learning rate")
    if len({c.run_id for c in configs}) != len(configs):
        raise ValueError("a pack holds each run once")


class Interrupted(Exception):
    """Training stopped on request (by signal `signum`: Ctrl-C's SIGINT, or one that acts as it); the
    checkpoint holds its progress (unless `saved` is False)."""

    def __init__(self, step: int, checkpoint: Path, saved: bool = True, signum: int | None = None):
        self.step, self.checkpoint, self.saved, self.signum = step, checkpoint, saved, signum
        by = signal_name(self)
        super().__init__(f"interrupted{f' by {by}' if by else ''} at step {step}; " + (
            f"checkpoint saved to {checkpoint}" if saved else
            "the checkpoint could not be saved, so the next start begins at the last one"))


class Diverged(FloatingPointError):
    """Every run of the pack produced a non-finite loss (`step`: the first such step)."""

    def __init__(self, message: str, step: int):
        super().__init__(message)
        self.step = step


@dataclass
class TrainState:
    step: int = 0
    train_time_s: float = 0.0
    curves: list = field(default_factory=list)   # per run: [step, mean loss, mean accuracy] per interval
    failed: dict = field(default_factory=dict)   # run index (as str) -> the step whose loss was not finite

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Statistics:
    """Running sums of each run's loss and accuracy counts on the device, read back only when asked
    (one host synchronisation), and the first step at which each run's loss was not finite."""

    def __init__(self, pack: int, device: torch.device):
        self.loss = torch.zeros(pack, dtype=torch.float64, device=device)
        self.correct = torch.zeros(pack, dtype=torch.long, device=device)
        self.counted = torch.zeros(pack, dtype=torch.long, device=device)
        self.steps = torch.zeros((), dtype=torch.long, device=device)
        self.step = torch.zeros((), dtype=torch.long, device=device)         # the global step
        self.first_bad = torch.zeros(pack, dtype=torch.long, device=device)  # 0: none

    @torch.no_grad()
    def add(self, losses, correct, counted) -> None:
        self.step += 1
        self.steps += 1
        self.loss += losses.double()
        self.correct += correct
        self.counted += counted
        bad = ~torch.isfinite(losses) & (self.first_bad == 0)
        self.first_bad.copy_(torch.where(bad, self.step, self.first_bad))

    def read(self, reset: bool) -> dict:
        values = torch.cat([self.loss, self.correct.double(), self.counted.double(), self.steps.double()[None],
                            self.first_bad.double()]).tolist()
        pack = self.loss.shape[0]
        out = {"loss": values[:pack], "correct": values[pack:2 * pack], "counted": values[2 * pack:3 * pack],
               "steps": values[3 * pack], "first_bad": [int(v) for v in values[3 * pack + 1:]]}
        if reset:
            for t in (self.loss, self.correct, self.counted, self.steps):
                t.zero_()
        return out

    def state_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            getattr(self, k).copy_(v)


def check_device(config: RunConfig, device: torch.device) -> None:
    """Refuse, in one line, settings this device cannot train with."""
    if config.model.attention == "flex" and device.type != "cuda":
        raise CheError("attention=flex trains on CUDA only (torch has no FlexAttention backward on a CPU; "
                       "choices here: auto, fused, explicit)")
    if config.model.dape_impl == "triton" and parse_pe(config.pe, None).pe.reads("dape_impl"):
        from che.models.positional.dape_triton import available

        if not available(device):
            raise CheError(f"dape_impl=triton needs triton and a CUDA device (or TRITON_INTERPRET=1); "
                           f"choices here: fast, literal")


class Trainer:
    def __init__(self, configs: list[RunConfig] | RunConfig, task, device: torch.device,
                 dtype: torch.dtype = torch.float32):
        """`dtype`: of the weights and the computation (float64 to check equalities tightly)."""
        configs = [configs] if isinstance(configs, RunConfig) else list(configs)
        check_pack(configs)
        check_device(configs[0], device)
        self.configs, self.config, self.task, self.device = configs, configs[0], task, device
        self.pack = len(configs)
        self.model = Transformer(self.config.model_for(task), seeds=[c.seed for c in configs]).to(device, dtype)
        self.optimizer = PackedAdam(self.model, [c.lr for c in configs], self.config.max_grad_norm)
        self.data_rngs = [torch.Generator().manual_seed(c.seed) for c in configs]
        self.length_rng = torch.Generator().manual_seed(self.config.length_seed)
        self.noise = [noise_generator(c.seed, device) for c in configs]
        self.stats = Statistics(self.pack, device)
        self.state = TrainState(curves=[[] for _ in configs])
        self.checkpoint_threads: int | None = None  # the torch threads of the checkpoint resumed from
        self.curve_every = max(1, self.config.steps // 100)
        self.forward = torch.compile(self.model) if self.config.compile else self.model
        self.graphs = None
        if device.type == "cuda" and self.config.cuda_graphs:
            from che.runners.cuda_graphs import GraphedStep

            if GraphedStep.supported():
                self.graphs = GraphedStep(self._step_on_device, self.noise)
            else:
                warnings.warn(f"torch {torch.__version__} cannot capture per-run generators in a CUDA graph "
                              f"(needs CUDAGraph.register_generator_state); training eagerly", stacklevel=2)

    # -- one update -----------------------------------------------------------------------------
    def sample(self):
        """The next step's batches, one per run, at one shared length: [K, B, ...] on the CPU."""
        length = int(torch.randint(1, self.config.train_length + 1, (1,), generator=self.length_rng))
        batches = [self.task.sample(self.config.batch_size, length, g) for g in self.data_rngs]
        return tuple(torch.stack([getattr(b, name) for b in batches]) for name in ("inputs", "targets", "mask"))

    def _step_on_device(self, inputs, targets, mask) -> None:
        """Forward, backward, clipping, Adam and the statistics, with no host synchronisation (this
        is what a CUDA graph captures)."""
        self.model.train()
        self.optimizer.zero_grad()
        with numerics(self.device, self.config.precision):
            logits = self.forward(inputs, targets.shape[-1], self.noise)
        losses = F.cross_entropy(logits.float().flatten(0, 2), targets.flatten(),
                                 reduction="none").view(self.pack, -1).mean(1)
        losses.sum().backward()  # the runs are independent: each gets its own loss's gradient
        self.optimizer.step()
        self.model.project_()
        correct, counted = masked_accuracy_counts(logits.detach(), targets, mask)
        self.stats.add(losses.detach(), correct, counted)

    def step(self, batch) -> None:
        if self.device.type == "cuda":
            batch = [t.pin_memory().to(self.device, non_blocking=True) for t in batch]
        with matmul_precision(self.device, self.config.precision):
            if self.graphs is not None:
                self.graphs(*batch)
            else:
                self._step_on_device(*batch)

    # -- the loop -------------------------------------------------------------------------------
    def train(self, checkpoint: Path | None = None, on_step=None) -> TrainState:
        """Run the remaining steps. Saves a checkpoint every `checkpoint_every` steps and when
        Ctrl-C asks to stop (then raises Interrupted). `on_step(state, loss, accuracy)` reports the
        mean over the live runs since the last curve point: every step on a CPU, about twice a
        second on a GPU (each report waits for the GPU)."""
        config, state = self.config, self.state
        report_every_s = 0.0 if self.device.type == "cpu" else 0.5
        last_report = time.perf_counter()
        with StopRequested() as stop:
            started = time.perf_counter()
            while state.step < config.steps:
                self.step(self.sample())
                state.step += 1
                boundary = state.step % self.curve_every == 0 or state.step == config.steps
                periodic = checkpoint is not None and state.step % config.checkpoint_every == 0
                report = on_step is not None and time.perf_counter() - last_report >= report_every_s
                if boundary or periodic or stop.requested or report:
                    stats = self.stats.read(reset=boundary)
                    state.train_time_s += time.perf_counter() - started
                    started = time.perf_counter()
                    self._note_failures(stats["first_bad"])
                    if boundary:
                        self._add_curve_point(stats)
                    if on_step is not None:
                        loss, accuracy = self._live_means(stats)
                        on_step(state, loss, accuracy)
                    last_report = time.perf_counter()
                # Read once, after the report (where a stop may be asked: a signal while it prints, or
                # `relay_stop`): a stop is never taken without the checkpoint it was asked for.
                stopping = stop.requested and state.step < config.steps
                saving = checkpoint is not None and state.step < config.steps and (periodic or stopping)
                saved = saving and self.save_or_warn(checkpoint)
                if stopping:
                    raise Interrupted(state.step, checkpoint, saved, stop.signum)
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            state.train_time_s += time.perf_counter() - started
        return state

    def live_runs(self) -> list[int]:
        return [k for k in range(self.pack) if str(k) not in self.state.failed]

    def _note_failures(self, first_bad: list[int]) -> None:
        for k, step in enumerate(first_bad):
            if step and str(k) not in self.state.failed:
                self.state.failed[str(k)] = step
        if not self.live_runs():
            step = min(self.state.failed.values())
            raise Diverged(f"the training loss became non-finite (nan or inf) at step {step}", step)

    def _add_curve_point(self, stats: dict) -> None:
        for k in range(self.pack):
            steps = max(stats["steps"], 1)
            self.state.curves[k].append([self.state.step, stats["loss"][k] / steps,
                                         stats["correct"][k] / max(stats["counted"][k], 1)])

    def _live_means(self, stats: dict) -> tuple[float, float]:
        live = self.live_runs()
        steps = max(stats["steps"], 1)
        if not stats["steps"]:  # just after a curve point: its values
            last = [self.state.curves[k][-1] for k in live]
            return sum(c[1] for c in last) / len(live), sum(c[2] for c in last) / len(live)
        loss = sum(stats["loss"][k] for k in live) / steps / len(live)
        accuracy = sum(stats["correct"][k] / max(stats["counted"][k], 1) for k in live) / len(live)
        return loss, accuracy

    # -- one run's weights ----------------------------------------------------------------------
    def run_state_dict(self, run: int) -> dict:
        return self.model.run_state_dict(run)

    # -- checkpoints ----------------------------------------------------------------------------
    def identity(self) -> list[str]:
        return [c.config_hash() + f"/seed{c.seed}/lr{c.lr:g}" for c in self.configs]

    def save(self, path: Path) -> None:
        write_checkpoint(path, {
            "identity": self.identity(),
            "step": self.state.step,
            "threads": torch.get_num_threads(),  # a resumed run continues with it: the same sums, the same bits
            "state": self.state.to_dict(),
            "optimizer": self.optimizer.state_dict(),
            "statistics": self.stats.state_dict(),
            "data_rngs": [g.get_state() for g in self.data_rngs],
            "length_rng": self.length_rng.get_state(),
            "noise": [g.get_state() for g in self.noise],
        })

    def save_or_warn(self, path: Path) -> bool:
        """Save a checkpoint; one that cannot be written (a full disk) is a warning, not the end of
        the training: its result can still be written, or rescued. Returns whether it was saved."""
        try:
            self.save(path)
            return True
        except OSError as exc:
            warnings.warn(f"could not save the checkpoint {path}: {disk_problem(path, exc)}; training goes on "
                          f"(an interruption now loses the steps since the last checkpoint)", CheWarning, stacklevel=2)
            return False

    def load(self, path: Path) -> None:
        """Continue from a checkpoint, after checking that it is intact (its checksum), belongs to these
        runs and is sane; a checkpoint written before checkpoints carried a checksum is a warning.
        Raises CheckpointError (the reason, in words) for one that cannot be resumed from."""
        payload, verified = read_checkpoint(path, self.device)
        if not verified:
            warnings.warn(f"the checkpoint {path} was written before checkpoints carried a checksum: it cannot be "
                          f"verified, resuming from it as it is", CheWarning, stacklevel=2)
        try:
            self._load_payload(payload)
        except CheckpointError:
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError) as exc:
            raise CheckpointError(f"it does not hold what a checkpoint of these runs holds ({first_line(exc)})") from None

    def _load_payload(self, payload: dict) -> None:
        if payload.get("identity") != self.identity():
            raise CheckpointError("it belongs to another configuration")
        step = payload["step"]
        if not isinstance(step, int) or not 0 <= step <= self.config.steps or payload["state"]["step"] != step:
            raise CheckpointError(f"it is at step {step!r}, outside 0..{self.config.steps}")
        # The optimiser counts its own steps and the curve has a point per interval: a step number
        # that disagrees with them is not this run's (a checkpoint edited or mixed up).
        adam_steps = int(payload["optimizer"]["count"])
        points = step // self.curve_every + (step == self.config.steps and step % self.curve_every != 0)
        if adam_steps != step or any(len(curve) != points for curve in payload["state"]["curves"]):
            raise CheckpointError(f"it says step {step}, but its optimiser made {adam_steps} steps")
        self.optimizer.load_state_dict(payload["optimizer"])
        self.stats.load_state_dict(payload["statistics"])
        for g, s in zip(self.data_rngs, payload["data_rngs"], strict=True):
            g.set_state(s.cpu())
        self.length_rng.set_state(payload["length_rng"].cpu())
        for g, s in zip(self.noise, payload["noise"], strict=True):
            g.set_state(s.cpu())
        self.state = TrainState(**payload["state"])
        self.checkpoint_threads = payload.get("threads")  # None: written before checkpoints recorded it


# -- checkpoint files ---------------------------------------------------------------------------------
# A checkpoint file is one header line, CHECKPOINT_HEADER and the sha256 of what follows (64 hex
# digits), then the bytes torch.save wrote for the payload: the digest is checked before torch reads
# anything, so damaged data is refused instead of resumed from. Files without the header are
# checkpoints written before it existed (torch.save's zip archive, as they are).
CHECKPOINT_HEADER = b"che checkpoint sha256 "
_ZIP_MAGIC = b"PK\x03\x04"


class CheckpointError(ValueError):
    """A checkpoint that cannot be resumed from; the message says why, in words."""


def first_line(exc: BaseException) -> str:
    """An exception in one line: its type and the first line of its message (torch's are paragraphs)."""
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


def write_checkpoint(path: Path, payload: dict) -> None:
    """The payload behind its checksum header, atomically (a temporary file renamed)."""
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getbuffer()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(CHECKPOINT_HEADER + hashlib.sha256(data).hexdigest().encode() + b"\n")
            f.write(data)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def read_checkpoint(path: Path, device: torch.device | str = "cpu") -> tuple[dict, bool]:
    """(the payload, whether its checksum was verified: False for a checkpoint written before
    checkpoints carried one). Raises CheckpointError for a file that is damaged, truncated or not a
    checkpoint."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise CheckpointError(f"it cannot be read ({exc.strerror or exc})") from None
    if data.startswith(CHECKPOINT_HEADER):
        header, _, body = data.partition(b"\n")
        if hashlib.sha256(body).hexdigest().encode() != header.removeprefix(CHECKPOINT_HEADER):
            raise CheckpointError("its contents do not match their checksum (the file was damaged or truncated "
                                  "after it was written)")
        verified = True
    elif data.startswith(_ZIP_MAGIC):
        body, verified = data, False
    else:
        raise CheckpointError("the file is empty" if not data else "it is not a che checkpoint (no checkpoint header)")
    try:
        payload = torch.load(io.BytesIO(body), map_location=device, weights_only=True)
    except pickle.UnpicklingError:  # torch's weights_only refusal: a paragraph about trusting the source
        raise CheckpointError("it holds objects other than tensors and plain values: not a che checkpoint") from None
    except Exception:  # noqa: BLE001 - torch's readers raise many types, with paragraphs about miniz
        raise CheckpointError("it is damaged or truncated (torch cannot read it)") from None
    if not isinstance(payload, dict):
        raise CheckpointError("it is not a che checkpoint (no checkpoint payload)")
    return payload, verified
