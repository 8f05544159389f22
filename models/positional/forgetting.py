"""fox-: forgetting attention (Lin et al. 2025), a data-dependent decay added to the logits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional.base import AbsolutePE, AttentionPE, PEModifier

CITATION = ("Lin et al. 2025, Forgetting Transformer: Softmax Attention with a Forget Gate "
            "(ICLR 2025, arXiv 2503.02130)")


class Wrapper(AttentionPE, PEModifier):
    """A modifier that is an attention PE around another (`base`): rotations, bias, softmax and
    segments are the base's unless overridden. It acts on the logits, so it refuses a base that
    transforms the scores itself (DAPE, CoPE) or acts on the embeddings."""

    position_based = False

    @classmethod
    def refuses(cls, base, inner, config):
        transforms = [m for m in inner if isinstance(m, type) and issubclass(m, AttentionPE)
                      and m.logits is not AttentionPE.logits]
        if transforms or issubclass(base, AbsolutePE) or base.logits is not AttentionPE.logits:
            wrapped = "".join(m.prefix for m in inner) + base.name
            return (f"{cls.prefix} acts on the logits of an attention PE that does not transform the scores "
                    f"(none, rope, a bias PE, ...), not on '{wrapped}'")
        return None

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
    """`fox-`: FoX's forget gates: per head, f_t = sigmoid(w^T x_t + b) from the attention layer's input x,
    and the logits get D_ij = sum_{l = j+1..i} log f_l for keys j <= i (D_ii = 0), computed as
    c_i - c_j with c = cumsum(log f) in float32. Causal as the paper. Two-sided (che's form for the
    encoder): keys right of the query decay through a second gate g with D_ij = sum_{l = i..j-1}
    log g_l, so either side forgets what lies between query and key. Added to the wrapped PE's
    bias (`fox` alone wraps none, as the paper)."""

    name, prefix, position, alone, alone_base, label = "fox", "fox-", 1, "fox", "none", "FoX"
    citation = CITATION
    form = ("FoX's forget gates, f_t = sigmoid(w^T x_t + b) per head from the attention input, add D_ij = "
            "sum_{l=j+1..i} log f_l to the logits (`fox` alone: over none, as the paper; gates initialised as the "
            "authors' code, w ~ N(0, 0.02), b = 0). Bidirectional (che's form): keys right of the query decay "
            "through a second gate, D_ij = sum_{l=i..j-1} log g_l")
    version_key = "fox"
    sort_rank = (0, 1)

    @classmethod
    def wrap(cls, module, config, causal):
        return cls(config, module, causal)

    @classmethod
    def memory_per_pair(cls, config, device_type="cpu"):
        return 3 * config.n_heads  # the decays and their cumulative sums, per example

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
        if self.base.gates_inside_scale:  # PaTH-FoX: the decays are scaled with the scores
            decay = decay * (1.0 / math.sqrt(q.shape[-1]))
        base = self.base.bias(q, k)
        if self.record is not None:  # D and the wrapped PE's bias apart (none for `fox` alone)
            self.record.update(decay=decay.detach(), bias=None if base is None else base.detach())
        return decay if base is None else decay + base
