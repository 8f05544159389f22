"""The task base class: what every CHE task (built-in or plugin) declares and provides.

A task turns a length N into a batch of integer token ids. All items of a batch share N (the
reference never pads). The model sees `input_length(N)` input tokens followed by
`output_length(N)` empty tokens and predicts the targets at those last positions.
"""

from __future__ import annotations

import inspect
import math
import random
import sys
from abc import ABC, abstractmethod
from typing import ClassVar, NamedTuple

import torch

LEVELS = ("regular", "dcf", "cs")
MAX_LENGTH = 10_000  # the longest length a task is asked for (the CHE protocol tests up to 500)
LEVEL_NAMES = {"regular": "Regular", "dcf": "Deterministic context-free", "cs": "Context-sensitive"}


class Batch(NamedTuple):
    inputs: torch.Tensor   # [B, input_length(N)] int64, ids in [0, input_size)
    targets: torch.Tensor  # [B, output_length(N)] int64, ids in [0, output_size)
    mask: torch.Tensor     # [B, output_length(N)] bool: positions that count for accuracy


class Task(ABC):
    """Base class of a CHE task. Subclasses set the class attributes and implement `_sample`."""

    name: ClassVar[str]
    level: ClassVar[str]           # "regular", "dcf", "cs" (plugins may use another word)
    input_size: ClassVar[int]      # input vocabulary; the model adds one empty token (id input_size)
    output_size: ClassVar[int]     # number of output classes
    classification: ClassVar[bool] = True    # one label per example, else a sequence of T_out(N)
    output_length_rule: ClassVar[str] = "1"  # T_out(N), for humans, e.g. "2N"
    terminator: ClassVar[int | None] = None  # accuracy counts positions up to and including it
    input_symbols: ClassVar[tuple[str, ...] | None] = None   # how `che sample --format text` shows ids
    output_symbols: ClassVar[tuple[str, ...] | None] = None
    # Raise when the sampler's output changes: the version is part of every run's identity, so a
    # finished result of the old sampler is not taken for one of the new.
    version: ClassVar[int] = 1
    # Where its row sorts among its level's (the CHE papers' order for the built-ins; plugins after).
    order: ClassVar[float] = math.inf
    # Input ids that end a segment for segment-based PEs (BiPE); empty: fixed chunks of tokens.
    segment_separators: ClassVar[tuple[int, ...]] = ()

    # -- lengths ------------------------------------------------------------------------------
    def input_length(self, length: int) -> int:
        """Number of input tokens for requested length N (N for every task but modular_arithmetic)."""
        return length

    def output_length(self, length: int) -> int:
        """Number of output positions T_out(N); 1 for classification."""
        return 1

    @property
    def chance_accuracy(self) -> float:
        """Per-token accuracy of guessing uniformly: among the output classes, or, for a
        task with a terminator, among the value symbols (the bits, so 0.5, as the CHE papers say)."""
        if self.terminator is not None:
            return 1.0 / (self.output_size - 1)
        return 1.0 / self.output_size

    # -- sampling -----------------------------------------------------------------------------
    def sample(self, batch_size: int, length: int, generator: torch.Generator) -> Batch:
        """A batch of `batch_size` examples at length N, deterministic given the generator state."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        try:
            inputs, targets = self._sample(batch_size, length, generator)
        except Exception as exc:  # a plugin's sampler that breaks: one line naming it, not a traceback
            from che.errors import CheError

            if isinstance(exc, CheError):
                raise
            raise CheError(f"task '{self.name}' ({self.source()}): its sampler raised {type(exc).__name__} at "
                           f"length {length}: {exc}") from exc
        self._check(inputs, "inputs", (batch_size, self.input_length(length)), self.input_size, length)
        self._check(targets, "targets", (batch_size, self.output_length(length)), self.output_size, length)
        return Batch(inputs, targets, self.accuracy_mask(targets))

    def examples(self, count: int, length: int, seed: int) -> Batch:
        """`count` examples at length N from a generator seeded with `seed` (`che sample`), the
        request checked first."""
        from che.errors import check_range

        check_range("--length", length, 1, MAX_LENGTH)
        check_range("--count", count, 1, 100_000)
        check_range("--seed", seed, 0, 2**63 - 1)
        return self.sample(count, length, torch.Generator().manual_seed(seed))

    def _check(self, ids, what: str, shape: tuple[int, int], size: int, length: int) -> None:
        """A sampler's output, checked (a plugin's mistakes would otherwise train quietly into a
        valid-looking result, or end in a torch traceback): int64, the declared shape, ids in
        [0, size) (for inputs, `size` itself is the model's reserved empty token)."""
        problem = None
        if not isinstance(ids, torch.Tensor) or ids.dtype != torch.int64:
            problem = f"{what} of type {getattr(ids, 'dtype', type(ids).__name__)}, not int64 ids"
        elif tuple(ids.shape) != shape:
            problem = f"{what} of shape {list(ids.shape)}, expected {list(shape)}"
        elif ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= size):
            problem = (f"{what} with ids from {int(ids.min())} to {int(ids.max())}, outside 0..{size - 1}"
                       + (f" ({size} is the model's empty token)" if what == "inputs" else ""))
        if problem is not None:
            from che.errors import CheError

            raise CheError(f"task '{self.name}' ({self.source()}): its sampler returned {problem} at length {length}")

    def source(self) -> str:
        """The file that defines the task (a plugin's path in messages)."""
        return getattr(sys.modules.get(type(self).__module__), "__file__", type(self).__module__)

    @abstractmethod
    def _sample(self, batch_size: int, length: int,
                generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """Return (inputs [B, input_length(N)], targets [B, output_length(N)]) as int64."""

    def accuracy_mask(self, targets: torch.Tensor) -> torch.Tensor:
        """Which target positions count for accuracy: all of them, or up to the terminator."""
        if self.terminator is None:
            return torch.ones_like(targets, dtype=torch.bool)
        is_term = targets == self.terminator
        # Positions up to and including the first terminator (the reference uses the first index
        # of the largest id, which is the terminator since it is the largest output id).
        before_or_at = torch.cumsum(is_term.int(), dim=1) - is_term.int() == 0
        return before_or_at

    # -- helpers for subclasses -----------------------------------------------------------------
    @staticmethod
    def python_rng(generator: torch.Generator) -> random.Random:
        """A Python RNG seeded from the torch generator, for tasks sampled with recursion."""
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
        return random.Random(seed)

    def render(self, ids: list[int], symbols: tuple[str, ...] | None) -> str:
        if symbols is None:
            return " ".join(str(i) for i in ids)
        return " ".join(symbols[i] for i in ids)

    def describe(self) -> dict:
        """What `che tasks` lists, and `che tasks NAME` shows with the docstring (`about`)."""
        return {
            "name": self.name,
            "level": self.level,
            "input_size": self.input_size,
            "output_size": self.output_size,
            "output_length": self.output_length_rule,
            "kind": "classification" if self.classification else "sequence",
            "masked": self.terminator is not None,
            "chance_accuracy": self.chance_accuracy,
            "about": inspect.cleandoc(type(self).__doc__ or ""),
        }
