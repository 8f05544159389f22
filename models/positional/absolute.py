"""Absolute PEs, added to the token embeddings: sin-cos and learned."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from che.models.positional.base import AbsolutePE
from che.registry import register_pe


def sinusoid(positions: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """[*positions.shape, dim] sinusoids in the CHE layout: [sin | cos] halves (not interleaved),
    frequencies base^(-2k/dim) for k = 0 .. dim/2 - 1."""
    inv_freq = base ** (-torch.arange(0, dim, 2, device=positions.device, dtype=torch.float32) / dim)
    angles = positions.to(torch.float32)[..., None] * inv_freq
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)


@register_pe
class SinCos(AbsolutePE):
    """Vaswani et al.'s sinusoids added to the embeddings, [sin | cos] halves, base 10000.

    Positions ascend, 0..T-1, as in the RPE reference (Ruoss et al.), on which the DAPE numbers
    were produced. The CH reference (Delétang et al.) counts down instead (T..1, so the readout
    token always has position 1); that variant is not offered.
    """

    name = "sin-cos"
    family = "absolute"
    column = 1
    jax_reference = {}
    citation = "Vaswani et al. 2017, Attention Is All You Need"

    def encode(self, positions):
        return sinusoid(positions, self.config.d_model)


@register_pe
class Learned(AbsolutePE):
    """A learned table of absolute position embeddings, added to the token embeddings (the RPE
    reference's LEARNT: `hk.Embed(max_sequence_length, d_model)` looked up at the positions).

    Rows: `config.learned_max_length`; with `rand-`, max(learned_max_length, rand_max_length), so
    that every randomized position in [0, rand_max_length) has a row of its own.
    Init: trunc-normal(stddev 1) cut at 2 sigma, as `hk.Embed`'s default. Combined with the
    token embedding (std 0.02 x sqrt(d_model) = 0.16) the positions dominate at initialisation, as
    in the reference.

    Past its table: positions >= the number of rows are CLAMPED to the last row (as the JAX
    reference's gather does), so all of them share one embedding; a warning is issued once per
    module (warnings.warn) the first time that happens.
    """

    name = "learned"
    family = "absolute"
    column = 2
    settings = ("learned_max_length",)
    jax_reference = {"~add_positional_encodings/embed/embeddings": "table"}
    citation = "Gehring et al. 2017 / Devlin et al. 2019 (learned positions); Ruoss et al. 2023 (LEARNT)"

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        rows = config.learned_max_length
        if randomized:
            rows = max(rows, config.rand_max_length)
        self.table = nn.Parameter(torch.empty(rows, config.d_model))
        nn.init.trunc_normal_(self.table, std=1.0, a=-2.0, b=2.0)
        self._warned = False

    def encode(self, positions):
        rows = self.table.shape[0]
        # Random positions lie below rand_max_length <= rows; 0..T-1 exceed the table when T > rows.
        # (Decided from the shape: reading the positions' values would wait for the GPU.)
        if not self._warned and not self.draws_randomly() and positions.shape[0] > rows:
            self._warned = True
            warnings.warn(f"learned PE: positions up to {positions.shape[0] - 1} exceed its table of "
                          f"{rows} rows; they are clamped to the last row", stacklevel=3)
        return self.table[positions.clamp(max=rows - 1)]
