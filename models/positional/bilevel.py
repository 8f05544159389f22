"""bipe-rope, bipe-alibi: bilevel positional encoding (He et al. 2024)."""

from __future__ import annotations

import torch
from torch import nn

from che.models.positional.base import AbsolutePE, AttentionPE
from che.models.positional.biases import alibi_shape, alibi_slopes
from che.models.positional.rotary import rotate_pairs
from che.registry import register_pe

CITATION = ("He et al. 2024, Two Stones Hit One Bird: Bilevel Positional Encoding for Better Length "
            "Extrapolation (ICML 2024, arXiv 2401.16421)")
ALIBI_SLOPE_FACTOR = 96.0  # the authors' code multiplies the standard ALiBi slopes by 96 for BiPE-ALiBi


def segment_positions(tokens: torch.Tensor, separators, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment index, position inside the segment), each of the shape of `tokens` [..., T].

    With separator tokens (a task's `segment_separators`), as BiPE's code: a separator closes its
    segment (it is the last token of it), so the segment index of token t is the number of
    separators before t, and its position inside is t - (the last separator before t) - 1. Without
    them, fixed chunks of `chunk` tokens: index t // chunk, position t % chunk."""
    length = tokens.shape[-1]
    t = torch.arange(length, device=tokens.device).expand_as(tokens)
    if not separators:
        return t // chunk, t % chunk
    is_separator = torch.isin(tokens, torch.tensor(list(separators), device=tokens.device))
    index = is_separator.long().cumsum(-1) - is_separator.long()
    last = torch.where(is_separator, t, -1).cummax(-1).values     # the last separator at or before t
    last_before = torch.cat([torch.full_like(last[..., :1], -1), last[..., :-1]], dim=-1)
    return index, t - last_before - 1


class BilevelEmbedding(AbsolutePE):
    """BiPE's intra-segment encoding: a learned table, indexed by the position inside the segment,
    added to the token embeddings. Rows: `bipe_segment` with fixed chunks (every position inside a
    chunk has one); `learned_max_length` with a task's separators (later positions share the last
    row). Init N(0, 0.02), as the authors' code."""

    name = "bipe-embedding"
    family = "bilevel"
    position_based = False
    uses_segments = True

    def __init__(self, config):
        super().__init__(config)
        rows = config.learned_max_length if config.segment_separators else config.bipe_segment
        self.table = nn.Parameter(torch.randn(rows, config.d_model) * 0.02)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        inside = self.segments[1].clamp(max=self.table.shape[0] - 1)
        return x + self.table[inside].to(x.dtype)


class BiPE(AttentionPE):
    """The inter-segment part; the model adds `embedding` to the token embeddings."""

    family = "bilevel"
    citation = CITATION
    position_based = False  # its positions come from the segments
    uses_segments = True
    embedding = BilevelEmbedding
    on_embeddings = True
    settings = ("bipe_segment",)


@register_pe
class BiPERoPE(BiPE):
    """BiPE-RoPE (He et al. 2024): the position inside the segment as a learned absolute embedding
    (added to the token embeddings), and RoPE (base 10000) over the segment indices, so tokens of
    one segment are at rotary distance 0. Segments: a task's separator tokens where it declares
    them (`Task.segment_separators`; a separator ends its segment), else chunks of `bipe_segment`
    tokens (default 8)."""

    name = "bipe-rope"
    column = 17
    bidirectional_form = "native: RoPE over segment indices"

    def rotate(self, q, k):
        index = self.segments[0][:, None, :]  # [B, 1, T]: every head
        return rotate_pairs(q, index), rotate_pairs(k, index)


@register_pe
class BiPEALiBi(BiPE):
    """BiPE-ALiBi (He et al. 2024): the learned intra-segment embedding, and ALiBi over segment
    indices with the standard slopes times 96, as the authors' code (s: segment index). Causal, the
    authors' form: B[h, i, j] = -96 m_h (s_i - s_j). Bidirectional, che's two-sided ALiBi form:
    B[h, i, j] = 96 m_h (-|s_i - s_j| + 0.5 [s_j < s_i]). Segments as bipe-rope."""

    name = "bipe-alibi"
    causal_version = 2  # causal: the authors' -96 m (s_i - s_j), without the encoder's +0.5
    bidirectional_form = "as che's alibi, over segment indices"
    causal_form = "the authors' -96 m (s_i - s_j)"
    column = 18

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.register_buffer("slopes", alibi_slopes(config.n_heads) * ALIBI_SLOPE_FACTOR, persistent=False)

    def bias(self, q, k):
        index = self.segments[0]
        offsets = index[:, None, :] - index[:, :, None]                      # s_j - s_i, [B, T, T]
        return (self.slopes[None, :, None, None] * alibi_shape(offsets, self.causal)[:, None]).to(q.dtype)
