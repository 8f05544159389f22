"""An example positional-encoding plugin: a Gaussian-decay attention bias.

    B[h, i, j] = -(i - j)^2 / (2 sigma_h^2),   sigma_h = exp(log_sigma_h), learned per head

Load it with `--plugin examples/gaussian_pe.py` (or CHE_PLUGINS, or the entry point declared in
examples/pyproject.toml). Because it is a `BiasPE`, the modifiers work on it too:
`--pe gaussian`, `--pe rand-gaussian`, `--pe dape-gaussian`, `--pe dape2-gaussian`.

A bias PE implements `bias_from_offsets(offsets, positions) -> [H, T, T]` from the signed
key-minus-query offsets [T, T] (j - i, or RPE's random offsets with `rand-`) and the query positions
[T]; a bias that is not a function of offsets implements `bias_from_positions(positions)` instead
(it can then be randomized only with `--set rand_mode=positions`).
"""

import math

import torch
from torch import nn

from che import register_pe
from che.models.positional import BiasPE


@register_pe
class GaussianBias(BiasPE):
    """Each head attends within a learned Gaussian window around the query; widths start
    geometrically spaced from 1 to 64 positions."""

    name = "gaussian"
    family = "additive bias"
    citation = "che example plugin (examples/gaussian_pe.py)"
    bidirectional = "native: symmetric in i - j"

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        widths = torch.logspace(0, math.log10(64), config.n_heads)
        self.log_sigma = nn.Parameter(widths.log())

    def bias_from_offsets(self, offsets, positions):
        offsets = offsets.to(torch.float32)
        sigma = self.log_sigma.exp()[:, None, None]
        return -offsets.square() / (2 * sigma.square())
