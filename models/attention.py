"""Attention, given q, k, v and what the PE contributes: one interface, three paths side by side.

`attend(q, k, v, ...)` computes softmax(q k^T / sqrt(d_qk) + bias) v (or another function of the
logits), for the K runs of a pack at once: q, k, v are [K * B, H, T, d], run-major, d = d_head, except
that a PE may widen q and k (PoPE: to 2 d_head); d_qk is their width. The PE
contributes at most one of
- `bias`: each run's additive bias, [K, 1, H, T, T] (positions only) or [K, B, H, T, T] (content too),
  added to the scaled scores;
- `logits`: a function of the scaled scores [K, B, H, T, T] that returns the logits (DAPE, CoPE);
and may replace the softmax (`weights`, stick-breaking). `causal` masks the keys right of the query.

The paths compute the same function (tests/test_model.py checks them against the scores as written,
values and gradients):
- `explicit`: the scores materialised, q scaled before the product (a [.., T, d_head] multiply
  instead of a [.., T, T] one), the bias added in place where nothing else reads the scores; the
  only path for `logits`, `weights` and a `record` (what a picture of the layer needs);
- `fused`: PyTorch's scaled_dot_product_attention, the bias as its additive mask;
- `flex`: FlexAttention, each run's bias read in the score modification (no [K * B, H, T, T] copy of
  it); compiled on CUDA, without gradients on a CPU in torch 2.13.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F

from che.models.positional.base import PEModifier

Path = Literal["explicit", "fused", "flex"]


class Causal(PEModifier):
    """`+causal`: a causal model. Every attention path masks the keys right of the query, and every
    PE computes its causal form (each declares it: `causal_form`)."""

    name, suffix, label = "causal", "+causal", "causal"
    position = 9  # a suffix: listed after the prefixes
    citation = ("Kazemnejad et al. 2023, The Impact of Positional Encoding on Length Generalization in "
                "Transformers (NeurIPS 2023)")
    form = ("a causal model: every attention layer masks the keys right of the query (the outputs are read after "
            "the whole input, so they still see all of it), and the PE takes its causal form. NoPE under a causal "
            "mask is Kazemnejad et al.'s baseline")

    @classmethod
    def refuses(cls, base, inner, config):
        for modifier in inner:
            if modifier.causal_refusal:
                return modifier.causal_refusal
        reason = base.refuses.get("causal")
        return f"{base.name} has no causal form: {reason}" if reason else None


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, *, pack: int, path: Path,
           bias: torch.Tensor | None = None,
           logits: Callable[[torch.Tensor], torch.Tensor] | None = None,
           weights: Callable[[torch.Tensor], torch.Tensor] | None = None,
           causal: bool = False, record: dict | None = None) -> torch.Tensor:
    """The attention's output [K * B, H, T, d_head] (see the module's docstring)."""
    if logits is not None or weights is not None or record is not None or path == "explicit":
        return explicit_attention(q, k, v, pack, bias, logits, weights, causal, record)
    if path == "flex":
        return flex_attention_with_bias(q, k, v, bias, q.shape[0] // pack, causal)
    return fused_attention(q, k, v, pack, bias, causal)


def explicit_attention(q, k, v, pack: int, bias=None, logits=None, weights=None, causal: bool = False,
                       record: dict | None = None) -> torch.Tensor:
    """The scores materialised: S = (q / sqrt(d_qk)) k^T, then the PE's logits (S + bias, or its
    function of S), the causal mask, the softmax (or the PE's weights), and the weighted values."""
    merged, heads, length, d_qk = q.shape
    flat = (q * (1.0 / math.sqrt(d_qk))) @ k.transpose(-2, -1)  # [K * B, H, T, T]
    scores = flat.view(pack, merged // pack, heads, length, length)
    if logits is not None:
        a = logits(scores)
    elif bias is None:
        a = scores
    elif pack == 1 and record is None:  # the same sum, in place: no [B, H, T, T] copy
        a = flat.add_(bias[0]).view_as(scores)
    else:
        a = scores + bias
    if causal:
        a = a.masked_fill(future_keys(length, q.device), float("-inf"))
    probs = torch.softmax(a, dim=-1) if weights is None else weights(a)
    if record is not None:  # run 0's layer, for a picture
        record.update(scores=scores[0].detach(), logits=a[0].detach(), probs=probs[0].detach())
    return probs.reshape(merged, heads, length, length) @ v


def fused_attention(q, k, v, pack: int, bias=None, causal: bool = False) -> torch.Tensor:
    """SDPA, which scales q k^T by 1/sqrt(d_qk) and then adds the mask: each run's bias, copied
    to [K * B, H, T, T] for a pack, with the causal mask folded in."""
    if bias is None:
        return F.scaled_dot_product_attention(q, k, v, is_causal=causal)
    merged, heads, length, _ = q.shape
    mask = bias[0] if pack == 1 else bias.expand(pack, merged // pack, -1, -1, -1).reshape(
        merged, heads, length, length)
    if causal:
        mask = mask.masked_fill(future_keys(length, q.device), float("-inf"))
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)


def flex_attention_with_bias(q, k, v, bias, batch: int, causal: bool = False):
    """softmax(q k^T / sqrt(d) + bias) v with FlexAttention: the bias read per (run, head, i, j) from
    the runs' [K, 1, H, T, T] biases ([K, B, H, T, T] when they depend on content) in the score
    modification, so no [K * B, H, T, T] copy of it is made, as SDPA's mask for a pack needs. Compiled
    (FlexAttention's fused kernel) on CUDA; on a CPU, torch 2.13 computes it only without gradients."""
    from torch.nn.attention.flex_attention import flex_attention

    attend_flex = _compiled_flex() if q.is_cuda else flex_attention
    if bias is None:
        def biased(score, b, h, i, j):
            return score
    elif bias.shape[1] == 1:
        def biased(score, b, h, i, j):
            return score + bias[b // batch, 0, h, i, j]
    else:
        def biased(score, b, h, i, j):
            return score + bias[b // batch, b % batch, h, i, j]
    if causal:
        def score_mod(score, b, h, i, j):
            return torch.where(j > i, float("-inf"), biased(score, b, h, i, j))
    elif bias is None:
        return attend_flex(q, k, v)
    else:
        score_mod = biased
    return attend_flex(q, k, v, score_mod=score_mod)


@functools.lru_cache(maxsize=1)
def _compiled_flex():
    from torch.nn.attention.flex_attention import flex_attention

    return torch.compile(flex_attention, dynamic=False)


def future_keys(length: int, device) -> torch.Tensor:
    """[T, T] True where the key is right of the query (j > i): what a causal model masks."""
    return torch.ones(length, length, dtype=torch.bool, device=device).triu(1)
