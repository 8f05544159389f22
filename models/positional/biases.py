"""Additive attention biases B[h, i, j] that depend only on positions: alibi, t5, kerple, sandwich, fire.

Notation: query i, key j, positions p (0..T-1, or sorted random draws with `rand-`); the model adds
B [H, T, T] to the scaled scores QK^T / sqrt(d_head).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import ClassVar

import torch
from torch import nn

from che.models.positional.base import BiasPE
from che.registry import register_pe


class FixedBiasPE(BiasPE):
    """A BiasPE without learnable parameters: its bias for positions 0..T-1 depends only on T, so
    it is cached per (bias, length, device, dtype) and shared by every layer and model that has the
    same bias. The cache is a plain class attribute (not in any state_dict), bounded by
    `CACHE_ELEMENTS` (the newest entry is always kept). Randomized draws are never cached.
    Callers must treat the returned tensor as read-only."""

    CACHE_ELEMENTS: ClassVar[int] = 1 << 24
    _cache: ClassVar[OrderedDict] = OrderedDict()

    def cache_key(self) -> tuple:
        """Everything besides the length that the bias depends on."""
        return (type(self).__qualname__, self.config.n_heads, self.causal)

    def bias(self, q, k):
        # Random draws are not cached; nor is anything computed inside a CUDA graph capture (the
        # graph must own the memory it reads).
        if self.draws_randomly() or (q.is_cuda and torch.cuda.is_current_stream_capturing()):
            return super().bias(q, k)
        length = q.shape[-2]
        key = (self.cache_key(), length, q.device, q.dtype, torch.is_inference_mode_enabled())
        cache = FixedBiasPE._cache
        if key in cache:
            cache.move_to_end(key)
            return cache[key]
        with torch.no_grad():
            value = self.bias_from_positions(torch.arange(length, device=q.device)).to(q.dtype)
        cache[key] = value
        total = sum(v.numel() for v in cache.values())
        while len(cache) > 1 and total > self.CACHE_ELEMENTS:
            total -= cache.popitem(last=False)[1].numel()
        return value


def alibi_slopes(n_heads: int) -> torch.Tensor:
    """The official ALiBi slopes: for a power of two n, 2^(-8/n), 2^(-16/n), ...; otherwise the
    slopes of the nearest lower power of two, then every other slope of the next one."""

    def power_of_two(n: int) -> list[float]:
        start = 2.0 ** (-8.0 / n)
        return [start ** (i + 1) for i in range(n)]

    if math.log2(n_heads).is_integer():
        slopes = power_of_two(n_heads)
    else:
        lower = 2 ** math.floor(math.log2(n_heads))
        slopes = power_of_two(lower) + power_of_two(2 * lower)[0::2][: n_heads - lower]
    return torch.tensor(slopes, dtype=torch.float32)


def alibi_shape(offsets: torch.Tensor, causal: bool) -> torch.Tensor:
    """ALiBi's bias before the slope, from the key-minus-query offsets j - i: -|j - i|, with +0.5 on
    keys left of the query in the encoder (the CHE reference's form), and nothing more causal (Press
    et al.'s -(i - j); keys right of the query are masked)."""
    offsets = offsets.to(torch.float32)
    return -offsets.abs() if causal else -offsets.abs() + 0.5 * (offsets < 0)


@register_pe
class ALiBi(FixedBiasPE):
    """Press et al.'s linear biases. Causal, as published: B[h, i, j] = -m_h (i - j) for j <= i.
    Bidirectional, as the CHE reference: B[h, i, j] = m_h * (-|i - j| + 0.5 * [j < i]), where the
    +0.5 on keys left of the query breaks the left/right symmetry of |i - j| that a non-causal
    encoder would otherwise have. Slopes m_h from `alibi_slopes` (2^-1..2^-8 for 8 heads)."""

    version = 2  # changed since che 0.1: randomized: RPE's offsets
    causal_version = 3  # causal: Press et al.'s -m (i - j), without the encoder's +0.5 on the left
    name = "alibi"
    family = "additive bias"
    citation = "Press et al. 2022, Train Short, Test Long (ALiBi)"
    bidirectional_form = "symmetric -m|i-j|, +0.5 m for keys left of the query (the CHE reference's)"
    causal_form = "Press et al.'s -m (i - j)"
    column = 7
    jax_reference = {}

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.register_buffer("slopes", alibi_slopes(config.n_heads), persistent=False)

    def bias_from_offsets(self, offsets, positions):
        return self.slopes[:, None, None] * alibi_shape(offsets, self.causal)


# -- T5 -------------------------------------------------------------------------------------------
def t5_buckets(relative: torch.Tensor, num_buckets: int = 32, max_distance: int = 128,
               bidirectional: bool = True) -> torch.Tensor:
    """T5's relative-position buckets (Raffel et al. 2020; `_relative_position_bucket` of the T5
    code) for `relative` = j - i (key minus query), int64 of the same shape.

    Bidirectional (T5's encoder): half the buckets per side, keys at or left of the query (j <= i)
    get 0..num_buckets/2 - 1, keys to the right num_buckets/2 + the same, n = |j - i|.
    Unidirectional (T5's decoder): all the buckets for keys at or left of the query, n = max(i - j, 0).
    Within a side of B buckets: buckets 0..max_exact-1 are the exact distances n < max_exact = B/2;
    larger n get max_exact + floor(log(n / max_exact) / log(max_distance / max_exact) * (B - max_exact)),
    capped at B - 1, so every n >= max_distance (roughly) shares the last bucket.
    """
    if bidirectional:
        buckets = num_buckets // 2
        side = (relative > 0).long() * buckets
        n = relative.abs()
    else:
        buckets, side, n = num_buckets, 0, (-relative).clamp(min=0)
    max_exact = buckets // 2
    log_ratio = torch.log(n.float().clamp(min=1) / max_exact) / math.log(max_distance / max_exact)
    large = (max_exact + (log_ratio * (buckets - max_exact)).long()).clamp(max=buckets - 1)
    return side + torch.where(n < max_exact, n, large)


@register_pe
class T5(BiasPE):
    """T5's relative position bias (Raffel et al. 2020, §2.1): B[h, i, j] = table[bucket(j - i), h],
    a learned scalar per head and bucket, with `t5_buckets` (32 buckets, max distance 128, the T5
    defaults). Bidirectional as T5's encoder: half the buckets for keys left of (or at) the query,
    half for keys to its right (8 exact distances a side). Causal as T5's decoder: all 32 buckets for
    keys at or left of the query, 16 exact distances. The original T5 computes the table once (first layer) and shares it
    across layers; here every layer has its own table (as every attention PE in this zoo).
    Init: N(0, d_model^-0.5), as the T5 code (HF's `_init_weights`, factor 1), so the bias tells
    left from right from the start."""

    version = 2  # changed since che 0.1: initialised as the T5 code; randomized: RPE's offsets
    causal_version = 3  # causal: the decoder's unidirectional buckets (16 exact), not the encoder's left half
    name = "t5"
    family = "additive bias"
    citation = "Raffel et al. 2020, Exploring the Limits of Transfer Learning (T5)"
    bidirectional_form = "T5's encoder: 16 buckets for each sign of j - i, 8 exact distances a side"
    causal_form = "T5's decoder: 32 buckets for keys at or left of the query, 16 exact distances"
    column = 6
    num_buckets: ClassVar[int] = 32
    max_distance: ClassVar[int] = 128

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.table = nn.Parameter(torch.randn(self.num_buckets, config.n_heads) * config.d_model ** -0.5)

    def bias_from_offsets(self, offsets, positions):
        buckets = t5_buckets(offsets, self.num_buckets, self.max_distance, bidirectional=not self.causal)
        return self.table[buckets].permute(2, 0, 1)


# -- KERPLE -----------------------------------------------------------------------------------------
class _Kerple(BiasPE):
    """Shared by the KERPLE kernels: per-head r1, r2 > 0, projected in place onto [0.01, r2_max]
    (`project_`) when the model is made and after every optimizer step. The KERPLE and DAPE code
    project at the start of every forward pass (`.data.clamp`), which gives the forward passes the
    same values; projecting outside the forward pass keeps it free of side effects (as
    torch.compile wants). A projection, unlike a functional clamp, leaves the gradient intact, so a
    parameter pushed below the bound by an optimizer step can grow back.

    Two-sided by default: KERPLE is published for causal decoders, where every key is left of the
    query; in this non-causal encoder keys left (j < i) and right (j > i) of the query get their own
    r1, r2 ([2, H]: row 0 left, row 1 right), each row initialised as the KERPLE code initialises
    its one, so the bias tells left from right. The `-sym` forms share one row between the sides
    (the bias is then symmetric in i - j, and so is the whole encoder without another PE)."""

    version = 2  # changed since che 0.1: two-sided; randomized: RPE's offsets
    family = "additive bias"
    citation = "Chi et al. 2022, KERPLE: Kernelized Relative Positional Embedding for Length Extrapolation"
    bidirectional_form = "two-sided: separate r1, r2 for keys left and right of the query"
    causal_form = "the published kernel, with the r1, r2 of keys left of the query"
    min_value: ClassVar[float] = 0.01
    r2_max: ClassVar[float | None] = None
    r1_init_scale: ClassVar[float] = 2.0
    r2_init_scale: ClassVar[float] = 1.0
    sides: ClassVar[int] = 2

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.r1 = nn.Parameter(torch.rand(self.sides, config.n_heads) * self.r1_init_scale)
        self.r2 = nn.Parameter(torch.rand(self.sides, config.n_heads) * self.r2_init_scale)

    @torch.no_grad()
    def project_(self) -> None:
        self.r1.clamp_(min=self.min_value)
        self.r2.clamp_(min=self.min_value, max=self.r2_max)

    def kernel(self, distance: torch.Tensor, r1: torch.Tensor, r2: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bias_from_offsets(self, offsets, positions):
        distance = offsets.abs().to(self.r1.dtype)[None]                      # |i - j|: [1, T, T]
        if self.sides == 1:
            return self.kernel(distance, self.r1[0, :, None, None], self.r2[0, :, None, None])
        right = (offsets > 0)[None]                                           # keys right of the query
        r1 = torch.where(right, self.r1[1, :, None, None], self.r1[0, :, None, None])
        r2 = torch.where(right, self.r2[1, :, None, None], self.r2[0, :, None, None])
        return self.kernel(distance, r1, r2)


@register_pe
class KerpleLog(_Kerple):
    """KERPLE, logarithmic kernel (Chi et al. 2022, §3.3): B[h, i, j] = -r1_h log(1 + r2_h |i - j|),
    r1, r2 >= 0.01 learned per head and side (keys left / right of the query), each side initialised
    r1 ~ U(0, 2), r2 ~ U(0, 1) (the KERPLE and DAPE code)."""

    name = "kerple-log"
    aliases = ("kerple",)
    column = 8

    def kernel(self, distance, r1, r2):
        return -r1 * torch.log1p(r2 * distance)


@register_pe
class KerpleLogSymmetric(KerpleLog):
    """KERPLE's logarithmic kernel with one r1, r2 per head for both sides of the query, as published
    (symmetric in i - j)."""

    name = "kerple-log-sym"
    aliases = ()
    bidirectional_form = "symmetric in |i - j| (both sides share r1, r2)"
    causal_form = "the published kernel"
    column = 9
    sides = 1


@register_pe
class KerplePower(_Kerple):
    """KERPLE, power kernel (Chi et al. 2022, §3.3): B[h, i, j] = -r1_h |i - j|^r2_h, with r1 >= 0.01
    and 0.01 <= r2 <= 2 learned per head and side. Init as the KERPLE code's power variant
    (`ParallelKerplePower`): the scale r1 ~ U(0, 1), the exponent r2 ~ U(0, 2) (the DAPE code has
    only the log kernel)."""

    name = "kerple-power"
    column = 10
    r2_max = 2.0
    r1_init_scale = 1.0
    r2_init_scale = 2.0

    def kernel(self, distance, r1, r2):
        return -r1 * distance.pow(r2)  # d/dr2 of 0^r2 is taken as 0 by torch


@register_pe
class KerplePowerSymmetric(KerplePower):
    """KERPLE's power kernel with one r1, r2 per head for both sides of the query, as published."""

    name = "kerple-power-sym"
    bidirectional_form = "symmetric in |i - j| (both sides share r1, r2)"
    causal_form = "the published kernel"
    column = 11
    sides = 1


# -- Sandwich ---------------------------------------------------------------------------------------
@register_pe
class Sandwich(FixedBiasPE):
    """Sandwich (Chi et al. 2023, "Dissecting Transformer Length Extrapolation via the Lens of
    Receptive Field Analysis", ACL 2023, §5), parameter-free:

        B[h, i, j] = (e_i . e_j - d'/2) / r_h,   e_p = [cos(p w_k) | sin(p w_k)]_{k = 1..d'/2},
        w_k = 10000^(-2k/d'),  so  e_i . e_j = sum_k cos((i - j) w_k),  r_h = 8 h / H (h = 1..H).

    The inner product of two sinusoidal position embeddings depends only on i - j and is largest
    (d'/2) at i = j; subtracting d'/2 makes the diagonal 0 and the bias <= 0 (softmax is blind to
    that per-row constant, DAPE's MLP is not); r_h spreads the heads like ALiBi's slopes. d' = 128.
    Sources: the paper's definition as recalled (inner product of sinusoids, d', ALiBi-like
    compression ratios) and, for the exact indexing (k from 1 to d'/2), the -d'/2 shift and
    r_h = 8h/H, NVIDIA NeMo's `SandwichRelativePositionEmbedding` (found with the code search; no
    code copied). NeMo passes d' = the head width; here d' = 128 (the d_head of 8 would leave 4 very
    low frequencies and an almost flat bias).
    Two-sided: the inner product is symmetric in i - j (cos is even), so, as the CHE reference does
    for ALiBi, keys left of the query get + 0.5 / r_h (half a unit of ALiBi's slope-scaled step)
    and the bias tells left from right. `sandwich-sym` is the symmetric form (NeMo's bidirectional
    variant).
    """

    version = 2  # changed since che 0.1: two-sided; randomized: RPE's offsets
    causal_version = 3  # causal: the published form, without the encoder's + 0.5 / r_h on the left
    name = "sandwich"
    family = "additive bias"
    citation = ("Chi et al. 2023, Dissecting Transformer Length Extrapolation via the Lens of "
                "Receptive Field Analysis (Sandwich)")
    bidirectional_form = "symmetric inner product, + 0.5 / r_h for keys left of the query"
    causal_form = "the published form, (sum_k cos((i - j) w_k) - d'/2) / r_h"
    column = 12
    dim: ClassVar[int] = 128
    left_offset: ClassVar[float] = 0.5

    def cache_key(self):
        return (*super().cache_key(), self.dim)

    def bias_from_offsets(self, offsets, positions):
        o = offsets.to(torch.float32)
        inner = torch.zeros_like(o)
        for k in range(1, self.dim // 2 + 1):  # one frequency at a time: no [T, T, d'/2] tensor
            inner += torch.cos(o * 10000.0 ** (-2.0 * k / self.dim))
        left_offset = 0.0 if self.causal else self.left_offset          # causal: as published
        inner = inner - self.dim / 2 + left_offset * (o < 0)              # sum_k cos((i-j) w_k) - d'/2
        heads = self.config.n_heads
        ratio = 8.0 * torch.arange(1, heads + 1, device=o.device, dtype=torch.float32) / heads
        return inner[None] / ratio[:, None, None]


@register_pe
class SandwichSymmetric(Sandwich):
    """Sandwich as published (bidirectional NeMo form): symmetric in i - j, no left/right offset."""

    name = "sandwich-sym"
    bidirectional_form = "symmetric in i - j (cos is even), as NeMo's bidirectional variant"
    column = 13
    left_offset = 0.0
    causal_version = None  # its causal form (the left half, no offset) never changed


# -- FIRE -------------------------------------------------------------------------------------------
@register_pe
class FIRE(BiasPE):
    """FIRE (Li et al. 2023, "Functional Interpolation for Relative Positions Improves Long Context
    Transformers", §3, Eq. 3-4 and their appendix code):

        B[:, i, j] = f( sign(i - j) psi(|i - j|) / psi(max(L, p_i)) ),  psi(x) = log(|c| x + 1)

    f is an MLP 1 -> 32 -> H with a ReLU, shared by all positions (one per layer), with PyTorch's
    default initialisation, as the authors' and the DAPE code (it is not re-initialised the Haiku
    way); c is learned, init 0.1; L = |m * L0| is the threshold with a learned multiplier m (init
    1). p_i is the query's position (randomized with `rand-`); a small eps (1e-6) is added to the
    denominator as the reference code does.

    The threshold L0 (`fire_threshold`): the DAPE code builds FIRE with init_L = 128 for training
    sequences of 512 tokens and halves it (`init_L // 2`), so L0 = 64 = 1/8 of the training length.
    `che` keeps that ratio: L0 = 1/8 of the longest sequence the model trains on (10 for
    reverse_string at N = 40, 80 tokens; see `che.config.RunConfig.model_for`), so that
    psi(max(L, p_i)) normalises by the query's position from the first positions on, as in the
    authors' setting. (With the FIRE paper's init_L = 512, a fixed L would never act at CHE's
    training lengths: every input would be divided by psi(512).)

    Bidirectional form: FIRE is defined for j <= i, where the input lies in [0, 1]. Here keys right
    of the query get the same magnitude with a negative sign, so the input lies in [-1, 1] and the
    one MLP can learn different left and right functions; for j <= i it is exactly FIRE.
    """

    version = 2  # changed since che 0.1: threshold 1/8 of the training length; authors' MLP init
    name = "fire"
    family = "additive bias"
    citation = "Li et al. 2023, Functional Interpolation for Relative Positions Improves Long Context Transformers"
    bidirectional_form = "signed input: sign(i - j) psi(|i - j|) / psi(max(L, i)), one MLP on [-1, 1]"
    causal_form = "the published f(psi(i - j) / psi(max(L, i)))"
    column = 14
    settings = ("fire_threshold",)
    mlp_width: ClassVar[int] = 32
    init_c: ClassVar[float] = 0.1
    eps: ClassVar[float] = 1e-6

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.mlp = nn.Sequential(nn.Linear(1, self.mlp_width), nn.ReLU(), nn.Linear(self.mlp_width, config.n_heads))
        self.c = nn.Parameter(torch.tensor(self.init_c))
        self.threshold_multiplier = nn.Parameter(torch.tensor(1.0))
        self.init_threshold = float(config.fire_threshold)

    def psi(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log(self.c.abs() * x + 1)

    def normalized_offsets(self, offsets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """[T, T] MLP inputs: sign(i - j) psi(|p_i - p_j|) / (psi(max(L, p_i)) + eps), from the
        key-minus-query offsets p_j - p_i and the query positions p_i."""
        d = -offsets.to(self.c.dtype)  # p_i - p_j: positive for keys left of the query
        p = positions.to(self.c.dtype)  # the parameters' dtype (float32, or float64 in tests)
        threshold = (self.threshold_multiplier * self.init_threshold).abs()
        normalizer = self.psi(torch.maximum(p, threshold))[:, None] + self.eps
        return torch.sign(d) * self.psi(d.abs()) / normalizer

    def bias_from_offsets(self, offsets, positions):
        return self.mlp(self.normalized_offsets(offsets, positions)[..., None]).permute(2, 0, 1)
