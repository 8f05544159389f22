"""Packs: K runs that differ only in their seeds and learning rates, as one model.

Every weight of the transformer is stacked, [K, ...] (row k is run k's), and applied to activations
[K, B, T, d] in one batched operation; each run's PE is a module of its own (`per_run`). A single run
is the pack of one. `RunTensor` is how a packed model tells the optimiser and the checkpoints which
of its tensors belong to which run (`Transformer.run_layout`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional.base import use_generator


@dataclass(frozen=True)
class RunTensor:
    """A tensor of a packed model: its name in a model of one run, and the run it belongs to (None:
    a stacked weight, [K, ...], whose row k is run k's)."""

    name: str
    tensor: torch.Tensor
    run: int | None


def haiku_linear_init_(weight: torch.Tensor, bias: torch.Tensor | None = None) -> None:
    """Haiku's Linear initialisation: w ~ trunc-normal(1/sqrt(fan_in)) cut at 2 sigma (no variance
    correction), b = 0. `weight` is [in, out] (fan_in = its first dimension)."""
    std = 1.0 / math.sqrt(weight.shape[0])
    nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)
    if bias is not None:
        nn.init.zeros_(bias)


class PackedLinear(nn.Module):
    """K linear maps: y[k] = x[k] @ weight[k] + bias[k]; weight [K, in, out], bias [K, out]."""

    def __init__(self, pack: int, d_in: int, d_out: int, bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(pack, d_in, d_out))
        self.bias = nn.Parameter(torch.zeros(pack, d_out)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(x.shape[0], -1, x.shape[-1])
        y = (torch.bmm(rows, self.weight) if self.bias is None
             else torch.baddbmm(self.bias[:, None, :], rows, self.weight))
        return y.view(*x.shape[:-1], y.shape[-1])

    def init_run_(self, run: int) -> None:
        haiku_linear_init_(self.weight[run], None if self.bias is None else self.bias[run])


class PackedLayerNorm(nn.Module):
    """K layer norms over the last axis (eps 1e-5, as hk.LayerNorm); scale and offset [K, d]."""

    def __init__(self, pack: int, d: int, eps: float = 1e-5):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(pack, d))
        self.bias = nn.Parameter(torch.zeros(pack, d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        normed = F.layer_norm(x, x.shape[-1:], eps=self.eps)
        return torch.addcmul(self.bias.view(shape), normed, self.weight.view(shape))


class PackedDropout(nn.Module):
    """Dropout whose mask for run k comes from run k's generator (inverted scaling, as F.dropout)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor, generators: Sequence[torch.Generator | None]) -> torch.Tensor:
        if not self.training or self.p == 0:
            return x
        mask = torch.empty_like(x)
        for k, generator in enumerate(generators):
            mask[k].uniform_(generator=generator)
        # keep with probability 1 - p, scaled by 1 / (1 - p), in place: one product with x remains
        return x * mask.ge_(self.p).mul_(1.0 / (1.0 - self.p))


def draw(generator, fn, *args):
    with use_generator(generator):
        return fn(*args)


def per_run(modules, generators, fn, *tensors):
    """[fn(module_k, t_k...) for each run k], each under run k's generator. The runs' slices are
    views whose gradients go back in one pass (unbind, or a squeeze for one run), not through
    `t[k]`, whose backward writes a zero-filled copy of the whole pack per run."""
    slices = [(t.squeeze(0),) if t.shape[0] == 1 else t.unbind(0) for t in tensors]
    return [draw(g, fn, m, *(parts[k] for parts in slices)) for k, (m, g) in enumerate(zip(modules, generators))]


def stack(values: list[torch.Tensor]) -> torch.Tensor:
    return values[0].unsqueeze(0) if len(values) == 1 else torch.stack(values)
