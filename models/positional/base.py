"""The positional-encoding interface.

A PE is one of two kinds, and the model never needs to know more than which:

- `AbsolutePE` acts once, on the token embeddings (`x + encode(positions)`).
- `AttentionPE` acts inside every attention layer (one instance per layer). It may
  - rotate q and k (`rotate`, e.g. RoPE),
  - return an additive bias for the scaled scores (`bias`, e.g. ALiBi; shape [H, T, T] or
    [B, H, T, T]), which the attention adds after the 1/sqrt(d_head) scaling,
  - or transform the scores it is handed (`logits`, e.g. DAPE). The attention computes the scaled
    scores S = QK^T / sqrt(d_head) once and hands them over; by default `logits` returns S + bias.

Attention PEs that only rotate or add a bias never see a materialised score matrix, so the
attention may use a fused kernel for them; a PE that overrides `logits` gets the scores.

Positions are 0..T-1, or, when the PE is randomized (Ruoss et al. 2023, the `rand-` prefix), T
sorted distinct integers drawn from [0, L), one draw shared by the batch and the heads, redrawn
on every forward pass (by each layer's PE separately, as the reference does for its attention PEs).
"""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn


def random_positions(length: int, max_length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """`length` sorted distinct positions drawn uniformly from [0, max_length), int64."""
    if length > max_length:
        raise ValueError(f"cannot draw {length} distinct positions from [0, {max_length}); "
                         f"raise the randomized-position range (rand_max_length)")
    return torch.randperm(max_length, device=device)[:length].sort().values


class PositionalEncoding(nn.Module):
    """What every PE declares: its name, family, citation and how it treats both directions."""

    name: ClassVar[str]
    family: ClassVar[str]                 # "none", "absolute", "rotary", "additive bias", "relative", ...
    citation: ClassVar[str] = ""
    bidirectional: ClassVar[str] = "native"  # how a PE published for causal models sees keys j > i
    aliases: ClassVar[tuple[str, ...]] = ()
    position_based: ClassVar[bool] = True    # False: the `rand-` modifier does not apply

    def __init__(self, config, randomized: bool = False):
        super().__init__()
        if randomized and not self.position_based:
            raise ValueError(f"'{self.name}' does not use positions and cannot be randomized")
        self.config = config
        self.randomized = randomized

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        if self.randomized and (self.training or self.config.rand_at_eval):
            return random_positions(length, self.config.rand_max_length, device)
        return torch.arange(length, device=device)


class AbsolutePE(PositionalEncoding):
    """Adds a [T, d_model] encoding of the token positions to the embeddings."""

    def encode(self, positions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.encode(self.positions(x.shape[1], x.device)).to(x.dtype)


class AttentionPE(PositionalEncoding):
    """Acts inside attention; q and k are [B, H, T, d_head], scores are [B, H, T, T] (query, key)."""

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
        return None

    def logits(self, scores: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b = self.bias(q, k)
        return scores if b is None else scores + b

    @property
    def transforms_scores(self) -> bool:
        """True when `logits` is overridden, i.e. the attention must hand over the score matrix."""
        return type(self).logits is not AttentionPE.logits


class BiasPE(AttentionPE):
    """An additive bias B[h, i, j] that is a function of the positions only (not of the content).

    Subclasses implement `bias_from_positions(positions) -> [H, T, T]`; DAPE can wrap any of them.
    """

    def bias_from_positions(self, positions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        positions = self.positions(q.shape[-2], q.device)
        return self.bias_from_positions(positions).to(q.dtype)


def signed_offsets(positions: torch.Tensor) -> torch.Tensor:
    """[T, T] matrix of key minus query positions, j - i (negative for keys left of the query)."""
    return positions[None, :] - positions[:, None]
