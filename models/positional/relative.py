"""relative: Transformer-XL's relative positional encoding (Dai et al. 2019), as in the CHE reference."""

from __future__ import annotations

import math

import torch
from torch import nn

from che.models.positional.absolute import sinusoid
from che.models.positional.base import AttentionPE, random_distances
from che.registry import register_pe


@register_pe
class Relative(AttentionPE):
    """Transformer-XL's relative encoding (Dai et al. 2019, §3.3), as in the CH reference
    (`compute_attention_with_relative_encodings` in neural_networks_chomsky_hierarchy's
    `models/positional_encodings.py`):

        logit[i, j] = ((q_i + u) . k_j + (q_i + v) . W_R R_{i-j}) / sqrt(d_head)

    R_o is the d_model-dim [sin | cos] sinusoid (base 10000) of the signed offset o, W_R a bias-free
    Linear(d_model, d_model) split into heads, u and v [H, d_head] learned per layer, init
    Normal(0, 0.02). The attention already computes q_i . k_j / sqrt(d_head); `bias` returns the rest,
    (u . k_j + (q_i + v) . W_R R_{i-j}) / sqrt(d_head), as a [B, H, T, T] tensor.

    Sign: "i - j" is the query's position minus the key's, p_i - p_j (positive for keys to the
    left), as CH. RPE encodes j - i instead; that negates only the sin half of R, a
    reparametrisation that W_R absorbs, so the two define the same model family.

    Randomized (`rand-`), per layer and forward pass, by `rand_mode`:
    - "offsets" (default): RPE's NOISY_RELATIVE as its docstring intends: sorted random offsets
      r_1 < ... < r_{T-1} from [1, L), the offset i - j encoded as sign(i - j) r_|i-j| (0 on the
      diagonal) over a sinusoid that covers both signs;
    - "reference": bit-compatible with the released RPE code, whose sinusoid table
      covers [0, L) only while its indices reach past it and are clamped: a key d places to the
      left of the query is encoded as the sinusoid of L - r_d, the query itself and every key to
      its right as that of L - 1, so keys to the right cannot be told apart (in che's sign
      convention, offsets r_d - L and 1 - L);
    - "positions": T sorted random positions p, offsets p_i - p_j.

    Cost: never builds [B, H, T, T, d_head]. For 0..T-1 the 2T-1 distinct offsets are projected once
    ([2T-1, H, d_head]), multiplied by q + v ([B, H, T, 2T-1]) and gathered to [B, H, T, T]. For
    random positions the offsets are not Toeplitz; then R_{a-b} is expanded with the angle-difference
    identities, sin((a-b)w) = sin(aw)cos(bw) - cos(aw)sin(bw) and cos((a-b)w) = cos(aw)cos(bw) +
    sin(aw)sin(bw), which turns the positional term into one [B, H, T, d_model] x [d_model, T] matmul.

    With the defaults it adds 5 x (64*64 + 2*8*8) = 21,120 parameters (270,082 on a binary task).
    """

    version = 2  # changed since che 0.1: randomized by RPE's offsets (rand_mode)
    name = "relative"
    family = "relative"
    citation = "Dai et al. 2019, Transformer-XL (relative positional encoding); Delétang et al. 2023 (CHE)"
    bidirectional_form = "native (signed offset p_i - p_j, both sides)"
    causal_form = "Transformer-XL's, for i - j >= 0"
    column = 5
    bias_reads_query = True
    jax_reference = {"linear_3/w": "w_r.weight:relative", "relpos_contentbias": "u", "relpos_relativebias": "v"}

    def __init__(self, config, randomized=False):
        super().__init__(config, randomized)
        self.n_heads, self.d_head, self.d_model = config.n_heads, config.d_head, config.d_model
        self.w_r = nn.Linear(config.d_model, config.d_model, bias=False)
        self.u = nn.Parameter(torch.randn(config.n_heads, config.d_head) * 0.02)
        self.v = nn.Parameter(torch.randn(config.n_heads, config.d_head) * 0.02)

    def bias(self, q, k):
        length = q.shape[-2]
        content = (k @ self.u[:, :, None].to(k.dtype)).transpose(-2, -1)  # u . k_j: [B, H, 1, T]
        qv = q + self.v[:, None, :].to(q.dtype)
        mode = self.config.rand_mode if self.draws_randomly() else None
        if mode == "positions":
            position = self._position_term_any(qv, self.positions(length, q.device))
        else:
            position = self._position_term_toeplitz(qv, self._offset_values(length, mode, q.device))
        return (content + position) * (1.0 / math.sqrt(self.d_head))

    def _offset_values(self, length: int, mode: str | None, device) -> torch.Tensor:
        """The encoded offset of each i - j = T-1, ..., -(T-1) (i - j itself when not randomized)."""
        steps = torch.arange(length - 1, -length, -1, device=device)  # i - j
        if mode is None:
            return steps
        distances = random_distances(length, self.config.rand_max_length, device)  # 0, r_1, ...
        if mode == "offsets":
            return torch.sign(steps) * distances[steps.abs()]
        last = self.config.rand_max_length                           # "reference", see above
        return torch.where(steps > 0, distances[steps.clamp(min=0)] - last, torch.full_like(steps, 1 - last))

    def _project(self, offsets: torch.Tensor, dtype) -> torch.Tensor:
        """W_R R_o for offsets [N] -> [H, d_head, N]."""
        r = self.w_r(sinusoid(offsets, self.d_model).to(dtype))
        return r.view(-1, self.n_heads, self.d_head).permute(1, 2, 0)

    def _position_term_toeplitz(self, qv, offsets):
        """(q_i + v) . W_R R_{o(i-j)} for an encoding o that depends on i - j only: project the 2T-1
        encoded offsets (for i - j = T-1, ..., -(T-1)), then gather."""
        length = qv.shape[-2]
        per_offset = qv @ self._project(offsets, qv.dtype)                # [B, H, T, 2T-1]
        i = torch.arange(length, device=qv.device)
        column = (length - 1) - i[:, None] + i[None, :]  # the column of offset i - j
        return per_offset.gather(-1, column.expand(*qv.shape[:-1], length))

    def _position_term_any(self, qv, positions):
        """(q_i + v) . W_R R_{p_i - p_j} for arbitrary positions, via the angle-difference identity."""
        half = self.d_model // 2
        w = self.w_r.weight.view(self.n_heads, self.d_head, self.d_model).to(qv.dtype)
        x = qv @ w                                    # [B, H, T, d_model]: (W_R^h)^T (q_i + v)
        x_sin, x_cos = x[..., :half], x[..., half:]   # coefficients of sin(o w_k) and cos(o w_k)
        emb = sinusoid(positions, self.d_model).to(qv.dtype)
        sin, cos = emb[:, :half], emb[:, half:]       # [T, d_model/2], at p_i (rows) or p_j (keys)
        # sum_k x_sin sin((p_i - p_j)w) + x_cos cos((p_i - p_j)w), split into query and key factors
        a = x_sin * sin + x_cos * cos                 # multiplies cos(p_j w)
        b = x_cos * sin - x_sin * cos                 # multiplies sin(p_j w)
        return a @ cos.T + b @ sin.T
