"""path: PaTH attention (Yang et al. 2025), position encoding by accumulated data-dependent
Householder-like transforms between a query and its keys."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from che.models.positional.base import AttentionPE
from che.registry import register_pe

RANK = 32             # the authors' low-rank projection of the layer input for w (d_model -> 32 -> d_model)
CONVOLUTION_WIDTH = 3  # their short convolution over time
L2_EPS = 1e-6         # their l2 norm: w / sqrt(sum w^2 + eps)
INIT_STD = 0.02       # their models' initialisation of every Linear and Conv1d weight (biases 0)


def transport(q: torch.Tensor, k: torch.Tensor, left: tuple[torch.Tensor, torch.Tensor],
              right: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
    """What PaTH's transforms change in the scores, C = A - q k^T [..., T, T] (before any scale):

        C_ij = q_i^T (H_i H_{i-1} ... H_{j+1} - I) k_j        for keys j < i, H_t = I - beta_t w_t w_t^T,
        C_ij = q_i^T (H'_i H'_{i+1} ... H'_{j-1} - I) k_j     for keys j > i, from `right`'s H'_t,

    0 on the diagonal and, without `right`, right of the query. q, k: [..., T, d]; each side's
    transforms (w [..., T, d], beta [..., T]) in time order; the right side is the left side's
    computation on the time-reversed sequence. O(T^2 d) in T steps (`Transport`), both sides at once;
    no [T, T, d, d] tensor."""
    batch, length = q.shape[:-2], q.shape[-2]
    sides = [(left, False)] + ([(right, True)] if right is not None else [])

    def laid_out(t: torch.Tensor, reverse: bool) -> torch.Tensor:  # [..., T, c] -> [c, T, N]
        t = t.reshape(-1, length, t.shape[-1])
        return (t.flip(1) if reverse else t).permute(2, 1, 0)

    qs, ks = (torch.stack([laid_out(t, reverse) for _, reverse in sides]) for t in (q, k))   # [S, d, T, N]
    ws = torch.stack([laid_out(steps[0], reverse) for steps, reverse in sides])
    betas = torch.stack([laid_out(steps[1][..., None], reverse) for steps, reverse in sides])  # [S, 1, T, N]
    keep = torch.is_grad_enabled() and any(t.requires_grad for t in (qs, ks, ws, betas))
    return Transport.apply(qs, ks, ws, betas * ws, keep).view(*batch, length, length)


class Transport(torch.autograd.Function):
    """C (`transport`) [N, T, T] of one or two sides (S) at once from q, k, w and beta w laid out
    [S, d, T, N] (the vector's entries before time and batch: the time slices are contiguous and the
    dot products sums of d rows).

    One step per distance d, over every query at once: u_i, the change of query i moved through
    H_i, then H_{i-1}, ..., is (H_{i-d+1} ... H_i - I) q_i after step d, so that C_{i, i-d} =
    u_i . k_{i-d} (H is symmetric) fills diagonal -d; step d applies H_{i-d+1} to r_i = q_i + u_i
    for the queries i >= d: u_i <- u_i - beta w (w . r_i). The right side, in reversed time, fills
    diagonal +d. The backward pass is written out, in the reverse order, reading the gradient's
    diagonals and adding into slices of the other gradients in place (autograd's would fill a
    full-size zero gradient for every slice of every step)."""

    @staticmethod
    def forward(ctx, q, k, w, scaled_w, keep: bool):
        sides, _, length, batch = q.shape
        out = q.new_zeros(batch, length, length)
        changes, alongs = [torch.zeros_like(q)], []             # u for queries i = d..T-1 after step d
        for distance in range(1, length):
            step, keys = slice(1, length - distance + 1), slice(0, length - distance)   # H_{i-d+1}, k_{i-d}
            previous = changes[-1][:, :, 1:]
            along = (w[:, :, step] * (q[:, :, distance:] + previous)).sum(1, keepdim=True)   # w . r_i
            change = torch.addcmul(previous, scaled_w[:, :, step], along, value=-1.0)
            diagonal = (change * k[:, :, keys]).sum(1)                                   # [S, T-d, N]
            out.diagonal(-distance, 1, 2).copy_(diagonal[0].T)
            if sides == 2:  # its key T-1-j (reversed time) is key j, right of query j - d
                out.diagonal(distance, 1, 2).copy_(diagonal[1].flip(0).T)
            if keep:
                changes.append(change)
                alongs.append(along)
            else:
                changes[-1] = change
        if keep:
            ctx.save_for_backward(q, k, w, scaled_w, *changes, *alongs)
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad):
        q, k, w, scaled_w, *rest = ctx.saved_tensors
        sides, _, length, batch = q.shape
        changes, alongs = rest[:length], [None] + rest[length:]
        grad_change = torch.zeros_like(q)          # of u, by query i: after step d, rows d..T-1
        grad_q, grad_k, grad_w, grad_scaled_w = (torch.zeros_like(t) for t in (q, k, w, scaled_w))
        for distance in range(length - 1, 0, -1):
            step, keys = slice(1, length - distance + 1), slice(0, length - distance)
            grad_diagonal = [grad.diagonal(-distance, 1, 2).T]
            if sides == 2:
                grad_diagonal.append(grad.diagonal(distance, 1, 2).flip(1).T)
            grad_diagonal = torch.stack(grad_diagonal)[:, None]                        # [S, 1, T-d, N]
            grad_u = grad_change[:, :, distance:]
            grad_u.addcmul_(k[:, :, keys], grad_diagonal)                             # u_i . k_{i-d}
            grad_k[:, :, keys].addcmul_(changes[distance], grad_diagonal)
            grad_scaled_w[:, :, step].addcmul_(grad_u, alongs[distance], value=-1.0)  # u - beta w (w . r)
            grad_along = (grad_u * scaled_w[:, :, step]).sum(1, keepdim=True).neg_()
            moved = q[:, :, distance:] + changes[distance - 1][:, :, 1:]               # r_i
            grad_w[:, :, step].addcmul_(moved, grad_along)
            grad_moved = w[:, :, step] * grad_along
            grad_q[:, :, distance:].add_(grad_moved)
            grad_u.add_(grad_moved)
        return grad_q, grad_k, grad_w, grad_scaled_w, None


class HouseholderSteps(nn.Module):
    """w_t and beta_t of the transforms H_t = I - beta_t w_t w_t^T, per head, from the layer input x,
    as the authors' layer (flash-linear-attention's `PaTHAttention`): w_t = l2-normalised per head
    (w / sqrt(|w|^2 + 1e-6)) of silu(a causal depthwise convolution of width 3, without bias, of
    x W_down W_up), W_down [d_model, 32] and W_up [32, d_model] without bias; beta_t = 2 sigmoid(u^T x_t
    + b) per head (in (0, 2): negative eigenvalues allowed). Every weight N(0, 0.02), biases 0, as
    their models initialise every Linear and Conv1d."""

    def __init__(self, d_model: int, n_heads: int):
        super().__init__()
        self.n_heads = n_heads
        self.down = nn.Linear(d_model, RANK, bias=False)
        self.up = nn.Linear(RANK, d_model, bias=False)
        self.conv = nn.Conv1d(d_model, d_model, CONVOLUTION_WIDTH, groups=d_model, bias=False,
                              padding=CONVOLUTION_WIDTH - 1)
        self.beta = nn.Linear(d_model, n_heads)
        for layer in (self.down, self.up, self.conv, self.beta):
            nn.init.normal_(layer.weight, std=INIT_STD)
        nn.init.zeros_(self.beta.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x [B, T, d_model] -> (w [B, H, T, d_head], beta [B, H, T])."""
        batch, length, d_model = x.shape
        h = self.up(self.down(x)).transpose(1, 2)                          # [B, d_model, T]
        h = F.silu(self.conv(h)[..., :length])                             # left padding only: causal
        w = h.transpose(1, 2).reshape(batch, length, self.n_heads, d_model // self.n_heads).transpose(1, 2)
        w = w * torch.rsqrt(w.square().sum(-1, keepdim=True) + L2_EPS)
        return w, 2 * torch.sigmoid(self.beta(x)).transpose(1, 2)


@register_pe
class PaTH(AttentionPE):
    """PaTH attention (Yang et al. 2025): the logit of key j for query i reads q_i through the
    transforms of every token between them,

        A_ij = q_i^T H_i H_{i-1} ... H_{j+1} k_j / sqrt(d_head)     (j <= i),

    H_t = I - beta_t w_t w_t^T with w_t and beta_t from the attention layer's input x_t
    (`HouseholderSteps`: the authors' low-rank projection, short convolution and l2 norm; beta_t in
    (0, 2)); q and k are che's own projections, and the softmax is as usual. Causal as the paper.

    Two-sided (che's form for the encoder, the mirror image of the causal form): a key right of the
    query is read through the transforms from the query up to the key, with parameters of its own,

        A_ij = q_i^T H'_i H'_{i+1} ... H'_{j-1} k_j / sqrt(d_head)   (j > i),

    w'_t and beta'_t from a second `HouseholderSteps` whose convolution is anti-causal (it reads
    x_t, x_{t+1}, x_{t+2}): the causal computation on the time-reversed sequence.

    In che it is an additive bias, B = A - S (S = q k^T / sqrt(d_head)), content-dependent as
    Transformer-XL's, computed as such: what the transforms change (`transport`). The fused and explicit attention paths apply, and `fox-path` (FoX's forget
    gates added to PaTH's logits, the paper's PaTH-FoX) and `ssmax-path` are the modifiers over it.
    Under `fox-`, FoX's decays enter before the 1/sqrt(d_head) scale, with the scores, as the authors'
    PaTH-FoX (their reference `naive_path_attn` adds the summed log gates g before the scale; FoX's own
    form adds them after it): `gates_inside_scale`. B reads q (`bias_reads_query`): under `ssmax-`, it
    is computed from the query before SSMax scales it.

    Cost: O(T^2 d_head) per head and layer in T small steps (`transport`, its backward pass written
    out); fla's blockwise kernel is for GPUs at scale. With the defaults it adds 5 x 2 x 4,808 = 48,080 parameters
    (24,040 causal: no right side)."""

    name = "path"
    family = "householder transforms"
    citation = ("Yang et al. 2025, PaTH Attention: Position Encoding via Accumulating Householder "
                "Transformations (NeurIPS 2025, arXiv 2505.16381)")
    column = 18.5
    position_based = False  # no positions: the transforms' order is the sequence's
    reads_input = True
    bias_reads_query = True
    gates_inside_scale = True
    bias_label = "PaTH's transform (A - S)"
    causal_form = ("the paper's: A_ij = q_i^T H_i ... H_{j+1} k_j / sqrt(d), H_t = I - beta_t w_t w_t^T from the "
                   "layer input (low rank 32, causal conv of width 3, l2 norm; beta_t = 2 sigmoid)")
    bidirectional_form = ("che's form: keys right of the query read through H'_i ... H'_{j-1}, the mirror image "
                          "(own parameters, an anti-causal convolution)")

    @classmethod
    def memory_per_pair(cls, config, device_type="cpu"):
        return 2 * config.n_heads  # the change C, and a sum with it (FoX's decays, a pack's scores)

    @classmethod
    def flops_per_pair(cls, config):
        """Per head and step, d_head wide: q + u, w . r, u - beta w (w . r), u . k; the encoder form
        runs the steps twice, once per side, each over every key (`transport`)."""
        from che.pe_names import read

        return 7.0 * config.d_model * (1 if read(config.pe).causal else 2)

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.left = HouseholderSteps(config.d_model, config.n_heads)
        self.right: HouseholderSteps | None = HouseholderSteps(config.d_model, config.n_heads)
        self.steps: tuple | None = None  # (w, beta) per side, from `see`

    @property
    def causal(self) -> bool:
        return self.right is None

    @causal.setter
    def causal(self, causal: bool) -> None:
        # Told after construction (PEBuild.make): a causal model has no keys right of the query.
        if causal:
            self.right = None
        elif self.right is None:
            raise ValueError("a causal PaTH has no right side to become bidirectional")

    def see(self, x):
        right = None
        if self.right is not None:  # the anti-causal convolution: the causal one over reversed time
            w, beta = self.right(x.flip(1))
            right = (w.flip(-2), beta.flip(-1))
        self.steps = (self.left(x), right)

    def bias(self, q, k):
        query = q
        dtype = torch.promote_types(q.dtype, torch.float32)   # the transport in float32 at least
        left, right = (None if side is None else tuple(t.to(dtype) for t in side) for side in self.steps)
        scaled_k = k.to(dtype) * (1.0 / math.sqrt(k.shape[-1]))
        bias = transport(query.to(dtype), scaled_k, left, right).to(q.dtype)   # (A - S): 0 where causal masks
        if self.record is not None:  # PaTH's own B, before a modifier scales it (SSMax)
            self.record["bias"] = bias.detach()
        return bias
