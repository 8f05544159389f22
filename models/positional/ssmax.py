"""ssmax-: Scalable-Softmax (Nakanishi 2025), logits scaled with the log of the number of keys."""

from __future__ import annotations


import torch
from torch import nn

from che.models.positional.forgetting import Wrapper

CITATION = "Nakanishi 2025, Scalable-Softmax Is Superior for Attention (arXiv 2501.19399)"
INITIAL_SCALE = 0.43  # s of the paper's Figure 1; the paper does not state the initial s of its runs


class ScalableSoftmax(Wrapper):
    """`ssmax-`: the logits of query i are multiplied by s_h * log n_i before the softmax, n_i the number
    of keys it sees (T; i + 1 in a causal model), s_h learned per head (and per layer: a module per
    layer), initialised to 0.43. Applied as q_i * s_h log n_i after the wrapped PE's rotation and
    the same factor on its bias, which equals scaling the logits and keeps fused attention."""

    name, prefix, position, label = "ssmax", "ssmax-", 0, "SSMax"
    citation = CITATION
    form = ("Scalable-Softmax: the logits of query i times s_h log n_i (n_i keys seen: T, or i + 1 causal), s_h "
            "learned per head and layer, initialised to 0.43 (the value of the paper's Figure 1; the paper does not "
            "give its initial s)")
    version_key = "ssmax"
    sort_rank = (0, 2)

    @classmethod
    def wrap(cls, module, config, causal):
        return cls(config, module)

    @classmethod
    def version_over(cls, base):
        # 2: over a PE whose bias reads q, that bias was computed from the already scaled q before
        # che 0.3, which scaled its q part twice (ssmax-relative)
        return 2 if base.bias_reads_query else 1

    def __init__(self, config, base):
        super().__init__(config, base)
        self.scale = nn.Parameter(torch.full((config.n_heads,), INITIAL_SCALE))
        self.query: torch.Tensor | None = None  # the base's q, before the scale (`rotate`)

    def factor(self, length: int, device, dtype) -> torch.Tensor:
        """[H, T, 1]: s_h * log n_i."""
        keys = torch.arange(1, length + 1, device=device, dtype=torch.float32) if self.causal else \
            torch.full((length,), float(length), device=device)
        return (self.scale.float()[:, None] * torch.log(keys)).to(dtype)[..., None]

    def rotate(self, q, k):
        q, k = self.base.rotate(q, k)
        self.query = q
        return q * self.factor(q.shape[-2], q.device, q.dtype), k

    def bias(self, q, k):
        # the base's bias from the query as the base made it (a bias that reads q is scaled once, here)
        query, self.query = (q if self.query is None else self.query), None
        base = self.base.bias(query, k)
        return None if base is None else base * self.factor(q.shape[-2], q.device, base.dtype)


