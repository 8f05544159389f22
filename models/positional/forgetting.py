"""fox-: forgetting attention (Lin et al. 2025), a data-dependent decay added to the logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional.base import AttentionPE

CITATION = ("Lin et al. 2025, Forgetting Transformer: Softmax Attention with a Forget Gate "
            "(ICLR 2025, arXiv 2503.02130)")


class Wrapper(AttentionPE):
    """An attention PE around another (`base`): rotations, bias, softmax and segments are the base's
    unless overridden. The base must not transform the scores (PEBuild refuses DAPE and CoPE)."""

    position_based = False

    def __init__(self, config, base: AttentionPE):
        super().__init__(config)
        self.base = base
        self.reads_input = base.reads_input

    def see(self, x):
        if self.base.reads_input:
            self.base.see(x)

    def rotate(self, q, k):
        return self.base.rotate(q, k)

    def bias(self, q, k):
        return self.base.bias(q, k)

    def attention_weights(self, logits):
        return self.base.attention_weights(logits)

    @property
    def replaces_softmax(self) -> bool:
        return self.base.replaces_softmax

    def project_(self):
        self.base.project_()


def forget_gate(d_model: int, heads: int) -> nn.Linear:
    """f_t = sigmoid(w_h . x_t + b_h) per head: weights N(0, 0.02), bias 0, as the authors' code
    (so every gate starts near 0.5: a strong recency bias at initialisation)."""
    gate = nn.Linear(d_model, heads)
    nn.init.normal_(gate.weight, std=0.02)
    nn.init.zeros_(gate.bias)
    return gate


class ForgettingAttention(Wrapper):
    """FoX's forget gates: per head, f_t = sigmoid(w^T x_t + b) from the attention layer's input x,
    and the logits get D_ij = sum_{l = j+1..i} log f_l for keys j <= i (D_ii = 0), computed as
    c_i - c_j with c = cumsum(log f) in float32. Causal as the paper. Two-sided (che's form for the
    encoder): keys right of the query decay through a second gate g with D_ij = sum_{l = i..j-1}
    log g_l, so either side forgets what lies between query and key. Added to the wrapped PE's
    bias (`fox` alone wraps none, as the paper)."""

    def __init__(self, config, base: AttentionPE, causal: bool):
        super().__init__(config, base)
        self.reads_input = True
        self.left = forget_gate(config.d_model, config.n_heads)
        self.right = None if causal else forget_gate(config.d_model, config.n_heads)
        self.decay: torch.Tensor | None = None

    def see(self, x):
        super().see(x)
        self.decay = self.decays(x)

    def decays(self, x: torch.Tensor) -> torch.Tensor:
        """D [B, H, T, T] (query, key) from the layer input x [B, T, d_model]."""
        log_f = F.logsigmoid(self.left(x).float()).transpose(1, 2)             # [B, H, T]
        c = log_f.cumsum(-1)
        decay = c[..., :, None] - c[..., None, :]                                # c_i - c_j
        length = x.shape[1]
        i = torch.arange(length, device=x.device)
        if self.right is not None:
            log_g = F.logsigmoid(self.right(x).float()).transpose(1, 2)
            before = log_g.cumsum(-1) - log_g                                    # sum_{l < t} log g_l
            decay = torch.where(i[None, :] > i[:, None], before[..., None, :] - before[..., :, None], decay)
        return decay.masked_fill(i[None, :] > i[:, None], 0.0) if self.right is None else decay

    def bias(self, q, k):
        decay = self.decay.to(q.dtype)
        base = self.base.bias(q, k)
        if self.record is not None:  # D and the wrapped PE's bias apart (none for `fox` alone)
            self.record.update(decay=decay.detach(), bias=None if base is None else base.detach())
        return decay if base is None else decay + base
