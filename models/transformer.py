"""The shared CHE transformer: an encoder-only, post-LN transformer with a swappable PE.

It follows the reference (spec `che_reference.md` §2.3, §4, §6):
- the input ids are followed by T_out empty tokens (id `input_size`); the logits are read at those
  last T_out positions;
- token embedding (no bias, trunc-normal 0.02) scaled by sqrt(d_model); an absolute PE, if any, is
  added, followed by dropout (only then, as the reference);
- `n_layers` post-LN blocks: h = LN(h + drop(MHA(h))); h = LN(h + drop(FFN(h))), FFN = Linear ->
  ReLU -> Linear with width ffn_mult * d_model; q, k, v and the output projection have no bias;
  no causal mask; attention logits are QK^T / sqrt(d_head), with PE biases added after scaling;
- every Linear is initialised as Haiku does: trunc-normal(1/sqrt(fan_in)) cut at 2 sigma, zero bias;
- a linear head with bias.
With the defaults it has 248,962 parameters on a binary task with a PE without parameters.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from che.models.positional import parse_pe
from che.models.positional.base import AttentionPE


@dataclass
class ModelConfig:
    input_size: int                  # task input vocabulary (the model adds one empty token)
    output_size: int                 # task output classes
    pe: str = "none"                 # positional encoding, by name (`che pes`)
    n_layers: int = 5
    d_model: int = 64
    n_heads: int = 8
    ffn_mult: int = 4
    dropout: float = 0.1
    # positional-encoding options (each PE reads the ones it needs)
    rand_max_length: int = 2048      # L of randomized positions (`rand-` PEs)
    rand_at_eval: bool = True        # randomized PEs also draw positions at evaluation (as the reference)
    learned_max_length: int = 2048   # rows of the `learned` table
    dape_width: int = 64             # D, the hidden width of DAPE's MLP
    dape_variant: str = "S+B+f(S,B)"  # or one of the paper's ablations, see models/positional/dape.py
    dape_kernel: int = 3             # k of DAPE V2's 1 x k convolution
    dape_impl: str = "fast"          # "fast" or "literal" (the concatenate-then-MLP formulation)

    @property
    def d_head(self) -> int:
        return self.d_model // self.n_heads

    def __post_init__(self):
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be divisible by n_heads ({self.n_heads})")

    def to_dict(self) -> dict:
        return asdict(self)


class SelfAttention(nn.Module):
    def __init__(self, config: ModelConfig, pe: AttentionPE | None):
        super().__init__()
        self.n_heads, self.d_head = config.n_heads, config.d_head
        self.qkv = nn.Linear(config.d_model, 3 * config.d_model, bias=False)
        self.out = nn.Linear(config.d_model, config.d_model, bias=False)
        self.pe = pe

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, d_model = x.shape
        q, k, v = self.qkv(x).view(batch, length, 3, self.n_heads, self.d_head).permute(2, 0, 3, 1, 4)
        pe = self.pe
        if pe is not None:
            q, k = pe.rotate(q, k)
        if pe is not None and pe.transforms_scores:
            scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(self.d_head))
            y = torch.softmax(pe.logits(scores, q, k), dim=-1) @ v
        else:
            # Fused attention; SDPA scales QK^T by 1/sqrt(d_head) and then adds the bias.
            bias = pe.bias(q, k) if pe is not None else None
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        return self.out(y.transpose(1, 2).reshape(batch, length, d_model))


class Block(nn.Module):
    def __init__(self, config: ModelConfig, pe: AttentionPE | None):
        super().__init__()
        self.attention = SelfAttention(config, pe)
        self.norm1 = nn.LayerNorm(config.d_model, eps=1e-5)
        self.ffn = nn.Sequential(
            nn.Linear(config.d_model, config.ffn_mult * config.d_model),
            nn.ReLU(),
            nn.Linear(config.ffn_mult * config.d_model, config.d_model),
        )
        self.norm2 = nn.LayerNorm(config.d_model, eps=1e-5)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = self.norm1(h + self.dropout(self.attention(h)))
        return self.norm2(h + self.dropout(self.ffn(h)))


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        pe = parse_pe(config.pe, config)
        self.embedding = nn.Embedding(config.input_size + 1, config.d_model)  # + the empty token
        self.absolute_pe = pe.make() if pe.acts_on_embeddings else None
        self.embedding_dropout = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(config, None if pe.acts_on_embeddings else pe.make()) for _ in range(config.n_layers)
        )
        self.head = nn.Linear(config.d_model, config.output_size)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.embedding.weight, std=0.02, a=-0.04, b=0.04)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                std = 1.0 / math.sqrt(module.weight[0].numel())  # fan_in
                nn.init.trunc_normal_(module.weight, std=std, a=-2 * std, b=2 * std)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, inputs: torch.Tensor, output_length: int) -> torch.Tensor:
        """inputs [B, N] int64 -> logits [B, output_length, output_size]."""
        empty = inputs.new_full((inputs.shape[0], output_length), self.config.input_size)
        h = self.embedding(torch.cat([inputs, empty], dim=1)) * math.sqrt(self.config.d_model)
        if self.absolute_pe is not None:
            h = self.embedding_dropout(self.absolute_pe(h))
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, -output_length:])

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())
