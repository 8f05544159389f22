"""Training as the CHE reference does it (spec §2.1), with checkpoints that resume exactly.

Each step draws one length uniformly from 1..train_length, samples the whole batch at that length,
and minimises the mean cross-entropy over all output positions (padding included, as the
reference), with Adam, global-norm gradient clipping and a constant learning rate.

Determinism: the data (lengths and batches) come from one `torch.Generator` seeded with the run's
seed; dropout and randomized positions use torch's global RNG, also seeded. A checkpoint holds the
model, the optimiser and both RNG states, so a resumed run continues bit for bit.
"""

from __future__ import annotations

import contextlib
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from che.config import RunConfig
from che.models import ModelConfig, Transformer


def model_config(config: RunConfig, task) -> ModelConfig:
    return ModelConfig(
        input_size=task.input_size, output_size=task.output_size, pe=config.pe,
        n_layers=config.n_layers, d_model=config.d_model, n_heads=config.n_heads,
        ffn_mult=config.ffn_mult, dropout=config.dropout, rand_max_length=config.rand_max_length,
        rand_at_eval=config.rand_at_eval, learned_max_length=config.learned_max_length,
        dape_width=config.dape_width, dape_variant=config.dape_variant, dape_kernel=config.dape_kernel,
        dape_impl=config.dape_impl,
    )


def masked_accuracy_counts(logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor):
    """(correct, counted) per-token counts, pooled over the batch (spec §2.4)."""
    correct = (logits.argmax(dim=-1) == targets) & mask
    return correct.sum(), mask.sum()


def autocast(device: torch.device, bf16: bool):
    if not bf16:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


class StopRequested:
    """Ctrl-C (SIGINT) asks the loop to stop at the next step boundary; a second one interrupts."""

    def __init__(self):
        self.requested = False
        self._previous = None

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.getsignal(signal.SIGINT)
            signal.signal(signal.SIGINT, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        return False


class Interrupted(Exception):
    """Training stopped on request; the checkpoint holds its progress."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"interrupted at step {step}; checkpoint saved to {checkpoint}")
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainState:
    step: int = 0
    train_time_s: float = 0.0
    curve: list = field(default_factory=list)  # [step, mean loss, mean accuracy] per interval
    # running sums since the last curve point
    loss_sum: float = 0.0
    correct: int = 0
    counted: int = 0
    steps_in_interval: int = 0

    def to_dict(self) -> dict:
        return dict(self.__dict__)


class Trainer:
    def __init__(self, config: RunConfig, task, device: torch.device):
        self.config, self.task, self.device = config, task, device
        torch.manual_seed(config.seed)
        if device.type == "cuda":
            torch.cuda.manual_seed_all(config.seed)
        self.model = Transformer(model_config(config, task)).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
        self.data_rng = torch.Generator().manual_seed(config.seed)
        self.state = TrainState()
        if config.compile:
            self.compiled_model = torch.compile(self.model, dynamic=True)
        else:
            self.compiled_model = self.model
        self.curve_every = max(1, config.steps // 100)

    # -- one update -----------------------------------------------------------------------------
    def _step(self):
        config, task = self.config, self.task
        length = int(torch.randint(1, config.train_length + 1, (1,), generator=self.data_rng))
        batch = task.sample(config.batch_size, length, self.data_rng)
        inputs = batch.inputs.to(self.device, non_blocking=True)
        targets = batch.targets.to(self.device, non_blocking=True)
        mask = batch.mask.to(self.device, non_blocking=True)
        self.model.train()
        with autocast(self.device, config.bf16):
            logits = self.compiled_model(inputs, targets.shape[1])
        loss = F.cross_entropy(logits.float().reshape(-1, logits.shape[-1]), targets.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        correct, counted = masked_accuracy_counts(logits.detach(), targets, mask)
        return loss.detach(), correct, counted

    def train(self, checkpoint: Path | None = None, on_step=None) -> TrainState:
        """Run the remaining steps. Saves a checkpoint every `checkpoint_every` steps and when
        Ctrl-C asks to stop (then raises Interrupted). `on_step(state, loss, accuracy)` reports."""
        config, state = self.config, self.state
        with StopRequested() as stop:
            while state.step < config.steps:
                started = time.perf_counter()
                # One device-to-host copy per step: the progress display and the NaN check need it.
                loss_value, correct, counted = torch.stack([t.double() for t in self._step()]).tolist()
                correct, counted = int(correct), int(counted)
                if not math.isfinite(loss_value):
                    raise FloatingPointError(f"loss became {loss_value} at step {state.step + 1}")
                state.step += 1
                state.loss_sum += loss_value
                state.correct += correct
                state.counted += counted
                state.steps_in_interval += 1
                state.train_time_s += time.perf_counter() - started
                if state.step % self.curve_every == 0 or state.step == config.steps:
                    state.curve.append([state.step, state.loss_sum / state.steps_in_interval,
                                        state.correct / max(state.counted, 1)])
                    state.loss_sum, state.correct, state.counted, state.steps_in_interval = 0.0, 0, 0, 0
                if on_step is not None:
                    on_step(state, loss_value, correct / max(counted, 1))
                if checkpoint is not None and (state.step % config.checkpoint_every == 0 or stop.requested):
                    if state.step < config.steps:
                        self.save(checkpoint)
                if stop.requested and state.step < config.steps:
                    raise Interrupted(state.step, checkpoint)
        return state

    # -- checkpoints ----------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        payload = {
            "identity": self.config.config_hash(),
            "step": self.state.step,
            "state": self.state.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "data_rng": self.data_rng.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
        }
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        torch.save(payload, tmp)
        tmp.replace(path)

    def load(self, path: Path) -> None:
        payload = torch.load(path, map_location=self.device, weights_only=True)
        if payload["identity"] != self.config.config_hash():
            raise ValueError(f"checkpoint {path} belongs to another configuration")
        self.model.load_state_dict(payload["model"])
        self.optimizer.load_state_dict(payload["optimizer"])
        self.data_rng.set_state(payload["data_rng"].cpu())
        torch.set_rng_state(payload["torch_rng"].cpu())
        if self.device.type == "cuda" and payload["cuda_rng"]:
            torch.cuda.set_rng_state_all([s.cpu() for s in payload["cuda_rng"]])
        self.state = TrainState(**payload["state"])
