"""Layer schedules: NoPE and RoPE layers interleaved (Llama 4's iRoPE, Cohere's RNoPE), and the two
PEs they use that the zoo has no other use for.

A schedule is a PE name of its own (`irope`, `rnope`) or written in any name with `~` (`none~alibi`:
layer l has the (l mod 2)-th PE; che.pe_names reads both). The CHE model has 5 layers, so a schedule
of 4 repeats its first PE in layer 4.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from che.models.positional.base import AttentionPE, PositionalEncoding
from che.models.positional.rotary import RoPE
from che.registry import register_pe

LLAMA4 = ("Meta 2025, The Llama 4 herd (iRoPE: no_rope_layer_interval 4, attention temperature tuning, chunked "
          "attention; the reference implementation in Hugging Face transformers' Llama4TextAttention)")
# Llama 4's constants, for its training context of 8,192 tokens: che rescales the lengths to the
# longest training sequence (`longest_train_tokens`), which plays that context's part.
LLAMA4_CONTEXT = 8192          # its floor_scale and attention_chunk_size
LLAMA4_ATTN_SCALE = 0.1        # its attn_scale
OTHER_CHUNK = -1e9             # the bias of a key in another chunk: exp() of it is 0 in every precision


class LayerSchedule(PositionalEncoding):
    """A cycle of PEs over the layers (`schedule`: their names; layer l has schedule[l mod k]). Never
    made as a module: each layer makes its own PE."""

    family = "layer schedule"
    position_based = False
    schedule: ClassVar[tuple[str, ...]] = ()

    def __init__(self, config, randomized=False):
        raise TypeError(f"{self.name} is a layer schedule: each layer makes the PE of its place in it")


@register_pe
class IRoPE(LayerSchedule):
    """Llama 4's interleaved RoPE (iRoPE), as its reference implementation: RoPE in every layer but each
    fourth (no_rope_layer_interval 4: layers 3, 7, ... have no PE), the RoPE layers attending within
    chunks (`rope-chunked`) and the NoPE layers scaling their queries with the log of the position
    (`none-tempered`). Llama 4's lengths (8,192 tokens, its training context, for both the chunk and the
    temperature's floor) are rescaled to the longest training sequence. The CHE model's 5 layers:
    rope-chunked, rope-chunked, rope-chunked, none-tempered, rope-chunked."""

    name = "irope"
    citation = LLAMA4
    schedule = ("rope-chunked", "rope-chunked", "rope-chunked", "none-tempered")
    column = 19
    bidirectional_form = "its layers' encoder forms (chunks and temperature over all keys)"
    causal_form = "as Llama 4: chunked causal RoPE layers, a tempered causal NoPE layer every fourth"


@register_pe
class RNoPE(LayerSchedule):
    """RNoPE (Yang et al. 2025, Cohere): NoPE and RoPE layers interleaved, one NoPE layer after every
    three RoPE layers, all with full attention (the paper's RNoPE-SWA also restricts the RoPE layers
    to a sliding window; not here). The CHE model's 5 layers: rope, rope, rope, none, rope."""

    name = "rnope"
    citation = "Yang et al. 2025, Rope to Nope and Back Again: A New Hybrid Attention Strategy (arXiv 2501.18795)"
    schedule = ("rope", "rope", "rope", "none")
    column = 20
    bidirectional_form = "its layers' encoder forms"
    causal_form = "as the paper's (without its sliding window)"


@register_pe
class TemperedNoPE(AttentionPE):
    """NoPE with Llama 4's attention temperature tuning (after Nakanishi 2025, SSMax): the query at
    position p is multiplied by 1 + 0.1 log(floor((p + 1) / F) + 1), F the context the model was
    trained for (Llama 4: 8,192; here the longest training sequence in tokens, `longest_train_tokens`), so the
    scale is 1 within it and grows with the log of the length beyond. Causal: p is the query's position,
    as Llama 4. Encoder (che's form): every query sees all T keys, so p = T - 1 for all."""

    name = "none-tempered"
    family = "none"
    citation = LLAMA4
    column = 21
    position_based = False
    causal_form = "Llama 4's: q_i (1 + 0.1 log(floor((i + 1) / F) + 1))"
    bidirectional_form = "every query scaled as the last one, p = T - 1 (it sees all T keys)"

    def scale(self, length: int, device) -> torch.Tensor:
        """[T]: the factor of each query."""
        p = (torch.arange(length, device=device, dtype=torch.float32) if self.causal
             else torch.full((length,), float(length - 1), device=device))
        floor = max(1, int(self.config.longest_train_tokens))
        return 1.0 + LLAMA4_ATTN_SCALE * torch.log(torch.floor((p + 1.0) / floor) + 1.0)

    def rotate(self, q, k):
        return q * self.scale(q.shape[-2], q.device).to(q.dtype)[:, None], k


@register_pe
class ChunkedRoPE(RoPE):
    """RoPE whose attention stays within chunks of C tokens (Llama 4's chunked attention on its RoPE
    layers: attention_chunk_size 8,192, its training context; here C = the longest training
    sequence in tokens, `longest_train_tokens`): a key in another chunk is masked (a -inf bias), so within the
    training length it is RoPE, and beyond it no query sees a distance longer than it saw in training.
    Causal: the causal mask within the chunk, as Llama 4. Encoder (che's form): the whole chunk."""

    name = "rope-chunked"
    citation = LLAMA4
    column = 3.5
    jax_reference = None
    causal_form = "Llama 4's chunked causal attention, RoPE within chunks of C tokens"
    bidirectional_form = "RoPE within chunks of C tokens, both sides"

    def bias(self, q, k):
        length = q.shape[-2]
        chunk = torch.arange(length, device=q.device) // max(1, int(self.config.longest_train_tokens))
        other = chunk[:, None] != chunk[None, :]
        # a large finite number, not -inf: a modifier that scales the logits by 0 (SSMax at n = 1) keeps it finite
        return torch.zeros(length, length, device=q.device, dtype=q.dtype).masked_fill(
            other, OTHER_CHUNK).expand(self.config.n_heads, -1, -1)
