"""DAPE: data-adaptive positional encoding (Zheng et al., NeurIPS 2024) and its V2 (ACL 2025).

For an additive-bias PE with bias B [H, T, T] and the scaled scores S [batch, H, T, T]:

    A = S + B + f(S, B)

f maps, at every (i, j), the 2H values [S[:, i, j]; B[:, i, j]] to H values with
Linear(2H -> D) -> LeakyReLU -> Linear(D -> H); one f per layer. The paper's ablations change what
f sees and whether B is added (`variant`):

    "S+B+f(S,B)"  the method (default)
    "S+B+f(S+B)"  f sees the H values S + B
    "S+f(S,B)"    no residual bias
    "S+B+f(B)"    f blind to the content

`dape-none` has no bias: A = S + f(S).

DAPE V2 (`dape2-`, arXiv 2410.04798) replaces both linear maps by 2-D convolutions whose kernel
spans one query row and k neighbouring keys (padding k // 2), so f also mixes nearby keys. The
encoder here is not causal, so every key is visible to the convolution.

Three implementations compute the same function with the same parameters (`dape_impl`):
- "literal": concatenate [S; B] into [batch, T, T, 2H] and apply the MLP, as the published code;
- "fast": split the first layer into its S and B halves and compute the B half (and its bias)
  once per forward pass, since B is the same for every batch element; no concatenation; the MLP
  runs block by block over positions on the CPU (`PositionwiseMLP`), so its [batch, D, T, T]
  hidden activations are never stored; on a GPU, where a loop of small blocks is launch-bound, it
  runs as one channels-last pass;
- "triton": the fast form's MLP as fused Triton kernels, forward and backward (`dape_triton.py`),
  which never write the [batch, T, T, D] hidden activations: on CUDA (or Triton's interpreter).

Initialisation (`dape_init`): Haiku's (the default, as the CHE model's other Linear layers) or
PyTorch's (as DAPE's released code).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional.base import AttentionPE, PEModifier

# Initialisations (`dape_init`, che.config.DAPE_INITIALISATIONS): "haiku": trunc-normal(1/sqrt(fan_in))
# at 2 sigma and zero biases, as every Linear of the CHE JAX model (what a JAX port of DAPE onto the
# CHE code would do); "torch": PyTorch's default (kaiming-uniform), as DAPE's released code.
NEGATIVE_SLOPE = 0.01  # nn.LeakyReLU's default, as in the DAPE code
CITATION = "Zheng et al. 2024, DAPE: Data-Adaptive Positional Encoding for Length Extrapolation (NeurIPS)"


class DAPE(AttentionPE, PEModifier):
    """`dape-`: f over the attention scores and the bias of `base` (a BiasPE, or `none` for f(S) alone)."""

    name, prefix, position, listed, label = "dape", "dape-", 2, True, "DAPE"
    family = "DAPE"
    citation = CITATION
    form = "A = S + B + f(S, B), f = MLP 2H -> D -> H at every (i, j), D = dape_width"
    version_key, version = "dape", 1
    sort_rank = (1, 1)
    settings = ("dape_width", "dape_variant", "dape_impl", "dape_init")

    @classmethod
    def refuses(cls, base, inner, config):
        if base.bias_from_positions_only:
            return None
        from che.registry import PES

        accepted = ", ".join(sorted(e.name for e in PES.entries() if e.obj.bias_from_positions_only))
        return f"DAPE needs an additive-bias PE or none, not '{base.name}' (choices: {accepted})"

    @classmethod
    def wrap(cls, module, config, causal):
        return cls(config, module)

    @classmethod
    def kernel_of(cls, config) -> int:
        return 1

    @classmethod
    def memory_per_pair(cls, config, device_type="cpu"):
        """Its output; the literal form also holds the concatenated input and the [T, T, D] hidden
        activations, which the fast form materialises only on a GPU."""
        heads = config.n_heads
        dense = config.dape_impl == "literal" or device_type == "cuda"
        return 3 * heads + (2 * heads + 2 * config.dape_width if dense else 0)

    @classmethod
    def flops_per_pair(cls, config):
        """The MLP at every (query, key) pair; the fast forms compute the bias half once per pass."""
        heads, width = config.n_heads, config.dape_width
        inputs = 2 * heads if config.dape_impl == "literal" else heads
        return 2.0 * (inputs * width + width * heads) * cls.kernel_of(config)

    def __init__(self, config, base: AttentionPE):
        super().__init__(config)
        kernel = self.kernel_of(config)
        self.base = base
        self.name = self.prefix + base.name
        self.has_bias = base.name != "none"
        self.variant = config.dape_variant if self.has_bias else "S+f(S)"
        self.impl = config.dape_impl
        self.kernel = kernel
        heads, width = config.n_heads, config.dape_width
        in_channels = 2 * heads if self.variant in ("S+B+f(S,B)", "S+f(S,B)") else heads
        if kernel == 1:
            self.hidden = nn.Linear(in_channels, width)
            self.output = nn.Linear(width, heads)
        else:
            padding = (0, kernel // 2)
            self.hidden = nn.Conv2d(in_channels, width, (1, kernel), padding=padding)
            self.output = nn.Conv2d(width, heads, (1, kernel), padding=padding)
        if config.dape_init == "haiku":
            for layer in (self.hidden, self.output):
                std = 1.0 / math.sqrt(layer.weight[0].numel())  # fan_in
                nn.init.trunc_normal_(layer.weight, std=std, a=-2 * std, b=2 * std)
                nn.init.zeros_(layer.bias)

    def project_(self):
        self.base.project_()

    def rotate(self, q, k):
        return self.base.rotate(q, k)

    def logits(self, scores, q, k):
        bias = self.base.bias(q, k) if self.has_bias else None
        f = self._f_literal(scores, bias) if self.impl == "literal" else self._f_fast(scores, bias)
        if self.record is not None:
            self.record.update(f=f.detach(), **({} if bias is None else {"bias": bias.detach()}))
        if self.variant == "S+f(S,B)" or bias is None:
            return scores + f
        return scores + bias + f

    # -- f: what the MLP (or convolution) sees ---------------------------------------------------
    def _inputs(self, scores, bias):
        """The channels f sees, as (content part [batch, c, T, T] or None, bias part [c', T, T] or None)."""
        if bias is None:
            return scores, None
        return {
            "S+B+f(S,B)": (scores, bias),
            "S+f(S,B)": (scores, bias),
            "S+B+f(S+B)": (scores + bias, None),
            "S+B+f(B)": (None, bias),
        }[self.variant]

    def _f_literal(self, scores, bias):
        content, position = self._inputs(scores, bias)
        parts = []
        if content is not None:
            parts.append(content)
        if position is not None:
            batch = scores.shape[0]
            parts.append(position.unsqueeze(0).expand(batch, -1, -1, -1))
        x = torch.cat(parts, dim=1)  # [batch, C, T, T]
        if self.kernel == 1:
            h = F.leaky_relu(self.hidden(x.permute(0, 2, 3, 1)), NEGATIVE_SLOPE)
            return self.output(h).permute(0, 3, 1, 2)
        return self.output(F.leaky_relu(self.hidden(x), NEGATIVE_SLOPE))

    def _f_fast(self, scores, bias):
        content, position = self._inputs(scores, bias)
        weight, b1 = self.hidden.weight, self.hidden.bias
        n_content = 0 if content is None else content.shape[1]
        w_content, w_position = weight[:, :n_content], weight[:, n_content:]
        # The position half of the first layer and its bias, once per forward pass: [D, T, T].
        if self.kernel == 1:
            const = b1[:, None, None]
            if position is not None:
                const = const + torch.einsum("dh,hij->dij", w_position, position)
            if content is None:  # f(B): independent of the batch, computed once
                h = F.leaky_relu(const, NEGATIVE_SLOPE)
                return (torch.einsum("hd,dij->hij", self.output.weight, h)
                        + self.output.bias[:, None, None]).unsqueeze(0)
            length = content.shape[-1]
            const = const.expand(-1, length, length).to(content.dtype)
            args = (content, const, w_content.to(content.dtype), self.output.weight.to(content.dtype),
                    self.output.bias.to(content.dtype))
            if self.impl == "triton":  # the fused kernels (dape_triton.py): no [.., T, T, D] hidden tensor
                from che.models.positional.dape_triton import fused_positionwise_mlp

                return fused_positionwise_mlp(*args)
            # On a GPU a Python loop over blocks is launch-bound: one dense pass there instead.
            return dense_positionwise_mlp(*args) if content.is_cuda else PositionwiseMLP.apply(*args)
        padding = (0, self.kernel // 2)
        const = b1[:, None, None]
        if position is not None:
            const = const + F.conv2d(position.unsqueeze(0), w_position, padding=padding)[0]
        h = const.unsqueeze(0) if content is None else F.conv2d(content, w_content, padding=padding) + const
        return self.output(F.leaky_relu(h, NEGATIVE_SLOPE))


def dense_positionwise_mlp(content, const, w_content, w_out, b_out):
    """`PositionwiseMLP` in one channels-last pass: materialises the [batch, T, T, D] hidden
    activations (the GPU path; the B half is still computed once per forward pass)."""
    h = F.linear(content.permute(0, 2, 3, 1), w_content) + const.permute(1, 2, 0)
    return F.linear(F.leaky_relu(h, NEGATIVE_SLOPE), w_out, b_out).permute(0, 3, 1, 2)


BLOCK_POSITIONS = 8192  # positions per block: few enough Python-level ops, hidden [D, block] in cache
SAVED_BYTES = 512 * 2**20  # activations kept for backward up to this size per call, else recomputed


def position_blocks(batch: int, positions: int, budget: int = BLOCK_POSITIONS):
    """(b0, b1, n0, n1) blocks of at most about `budget` positions: several whole batch items when
    one item's T*T positions fit, else equal slices of one item's positions."""
    if positions <= budget:
        per = max(1, budget // positions)
        for b0 in range(0, batch, per):
            yield b0, min(batch, b0 + per), 0, positions
    else:
        slices = -(-positions // budget)
        size = -(-positions // slices)
        for b0 in range(batch):
            for n0 in range(0, positions, size):
                yield b0, b0 + 1, n0, min(positions, n0 + size)


def _gather(x: torch.Tensor, b0: int, b1: int, n0: int, n1: int) -> torch.Tensor:
    """x[b0:b1, :, n0:n1] as a [channels, items * positions] matrix (a view for one item)."""
    return x[b0:b1, :, n0:n1].transpose(0, 1).reshape(x.shape[1], -1)


def _scatter(target: torch.Tensor, block: torch.Tensor, b0: int, b1: int, n0: int, n1: int) -> None:
    """The inverse of `_gather`: write a [channels, items * positions] matrix into target."""
    target[b0:b1, :, n0:n1] = block.view(block.shape[0], b1 - b0, n1 - n0).transpose(0, 1)


class PositionwiseMLP(torch.autograd.Function):
    """out[b, :, n] = W2 leaky(Wc x[b, :, n] + const[:, n]) + b2 at every position n = (i, j).

    The same function as applying Linear -> LeakyReLU -> Linear over the channel axis, computed
    block by block as 2-D matrix products, so that no [batch, D, T, T] intermediate is built at
    once: each block stays in cache, which makes it several times faster than the dense form on
    a CPU, and evaluation (no gradients) never holds more than one block of activations. For the
    backward pass the forward keeps the activations when they fit in SAVED_BYTES and otherwise
    keeps only its inputs and recomputes them block by block.
    """

    @staticmethod
    def forward(ctx, content, const, w_content, w_out, b_out):
        batch, channels, length, _ = content.shape
        width, positions = w_content.shape[0], length * length
        x = content.reshape(batch, channels, positions)
        k = const.reshape(width, positions)
        out = torch.empty(batch, w_out.shape[0], positions, dtype=content.dtype, device=content.device)
        # Keep the activations for the backward pass when they are small enough; else recompute.
        keep = any(ctx.needs_input_grad) and batch * width * positions * content.element_size() <= SAVED_BYTES
        activations = []
        for b0, b1, n0, n1 in position_blocks(batch, positions):
            h = torch.mm(w_content, _gather(x, b0, b1, n0, n1))
            h.view(width, b1 - b0, n1 - n0).add_(k[:, None, n0:n1])
            a = F.leaky_relu_(h, NEGATIVE_SLOPE)
            _scatter(out, torch.mm(w_out, a), b0, b1, n0, n1)
            if keep:
                activations.append(a)
        out.add_(b_out[:, None])
        ctx.save_for_backward(content, const, w_content, w_out)
        ctx.activations = activations
        return out.view(batch, -1, length, length)

    @staticmethod
    def backward(ctx, grad):
        content, const, w_content, w_out = ctx.saved_tensors
        batch, channels, length, _ = content.shape
        width, positions = w_content.shape[0], length * length
        x = content.reshape(batch, channels, positions)
        k = const.reshape(width, positions)
        g = grad.reshape(batch, -1, positions)
        g_content = torch.empty_like(x)
        g_const = torch.zeros_like(k)
        g_w_content = torch.zeros_like(w_content)
        g_w_out = torch.zeros_like(w_out)
        for index, (b0, b1, n0, n1) in enumerate(position_blocks(batch, positions)):
            xb, gb = _gather(x, b0, b1, n0, n1), _gather(g, b0, b1, n0, n1)
            if ctx.activations:
                a = ctx.activations[index]
            else:  # recompute
                a = torch.mm(w_content, xb)
                a.view(width, b1 - b0, n1 - n0).add_(k[:, None, n0:n1])
                F.leaky_relu_(a, NEGATIVE_SLOPE)
            g_w_out.addmm_(gb, a.t())
            # the sign of the activation is the sign of its input: LeakyReLU's slopes are positive
            g_h = torch.ops.aten.leaky_relu_backward(torch.mm(w_out.t(), gb), a, NEGATIVE_SLOPE, True)
            g_const[:, n0:n1] += g_h.view(width, b1 - b0, n1 - n0).sum(1)
            g_w_content.addmm_(g_h, xb.t())
            _scatter(g_content, torch.mm(w_content.t(), g_h), b0, b1, n0, n1)
        ctx.activations = None
        return g_content.view_as(content), g_const.view_as(const), g_w_content, g_w_out, g.sum((0, 2))


class DAPEV2(DAPE):
    """`dape2-`: DAPE V2 (Zheng et al., ACL 2025): f as two 1 x k convolutions over [S; B] along the
    keys (k = dape_kernel), so f also mixes nearby keys."""

    name, prefix, label = "dape2", "dape2-", "DAPE2"
    citation = "Zheng et al. 2025, DAPE V2: Process Attention Score as Feature Map (arXiv 2410.04798)"
    form = "f = two 1 x k convolutions over [S; B] along the keys (k = dape_kernel), all keys visible"
    sort_rank = (1, 2)
    settings = DAPE.settings + ("dape_kernel",)
    causal_refusal = ("DAPE V2's convolutions run along the keys, so a query's logits would read keys right of it; "
                      "use dape- for a causal model")

    @classmethod
    def kernel_of(cls, config) -> int:
        return config.dape_kernel
