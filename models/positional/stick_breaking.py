"""stick-breaking: attention without softmax (Tan et al. 2025)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from che.models.positional.base import AttentionPE
from che.registry import register_pe


def stick_breaking_weights(logits: torch.Tensor, causal: bool) -> torch.Tensor:
    """The attention [..., T, T] from the logits z [..., T, T] (query i, key j), in log space.

    Causal (the paper): the keys left of the query break one stick, nearest first,
        A_ij = sigmoid(z_ij) * prod_{j < k < i} (1 - sigmoid(z_ik))        (j < i),
        log A_ij = logsigmoid(z_ij) + sum_{j < k < i} logsigmoid(-z_ik),
    and what is left of it, r_i = prod_{j < i} (1 - sigmoid(z_ij)) = 1 - sum_j A_ij, goes to the
    query's own value (A_ii = r_i), as the authors' kernel tests' reference; the first token attends
    to itself alone.
    Two-sided (che's form for the encoder): each side breaks its own stick outward from the query,
    the right one with A_ij = sigmoid(z_ij) * prod_{i < k < j} (1 - sigmoid(z_ik)), each side's
    weights halved, and both leftovers, halved, go to the query's own value. Rows sum to 1.
    """
    length = logits.shape[-1]
    z = logits.float() if logits.dtype != torch.float64 else logits  # float32 at least, as the authors
    i = torch.arange(length, device=z.device)
    left, right = i[None, :] < i[:, None], i[None, :] > i[:, None]
    log_beta, log_keep = F.logsigmoid(z), F.logsigmoid(-z)

    keep_left = torch.where(left, log_keep, 0.0)
    total_left = keep_left.sum(-1, keepdim=True)
    passed_left = total_left - keep_left.cumsum(-1)              # sum over j < k < i
    weights = torch.where(left, torch.exp(log_beta + passed_left), 0.0)
    leftover = torch.exp(total_left.squeeze(-1))
    if not causal:
        keep_right = torch.where(right, log_keep, 0.0)
        passed_right = keep_right.cumsum(-1) - keep_right        # sum over i < k < j
        weights = 0.5 * (weights + torch.where(right, torch.exp(log_beta + passed_right), 0.0))
        leftover = 0.5 * (leftover + torch.exp(keep_right.sum(-1)))
    return (weights + torch.diag_embed(leftover)).to(logits.dtype)


@register_pe
class StickBreaking(AttentionPE):
    """Stick-breaking attention (Tan et al. 2025): no softmax and no positional encoding; each key
    takes a share sigmoid(z_ij) of what the keys nearer the query left over, so nearness is
    built into the attention itself. z = QK^T / sqrt(d_head). Leftover mass: to the query's own
    value (the authors' production layer instead adds it times a learned per-head vector; this one
    keeps che's attention layer unchanged). Not a position-based PE (`rand-` does not apply); the
    attention materialises the logits. See `stick_breaking_weights` for both forms."""

    name = "stick-breaking"
    family = "attention without softmax"
    citation = ("Tan et al. 2025, Scaling Stick-Breaking Attention: An Efficient Implementation and In-depth "
                "Study (ICLR 2025, arXiv 2410.17980)")
    column = 16
    causal_form = "the paper's: the keys left of the query break one stick, nearest first; the leftover to the query"
    bidirectional_form = ("che's form: a stick per side broken outward from the query, each side halved, both "
                     "leftovers to the query's own value")
    position_based = False

    @classmethod
    def memory_per_pair(cls, config, device_type="cpu"):
        return 8 * config.n_heads  # log sigmoids, cumulative sums, both sides' weights

    def attention_weights(self, logits):
        return stick_breaking_weights(logits, self.causal)
