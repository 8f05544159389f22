"""The shared CHE transformer: an encoder-only, post-LN transformer with a swappable PE.

It follows the CHE reference code (the JAX repositories neural_networks_chomsky_hierarchy and
randomized_positional_encodings):
- the input ids are followed by T_out empty tokens (id `input_size`); the logits are read at those
  last T_out positions;
- token embedding (one-hot times w, no bias, trunc-normal 0.02) scaled by sqrt(d_model); an absolute
  PE, if any, is added, followed by dropout (only then, as the reference);
- `n_layers` post-LN blocks: h = LN(h + drop(MHA(h))); h = LN(h + drop(FFN(h))), FFN = Linear ->
  ReLU -> Linear with width ffn_mult * d_model; q, k, v and the output projection have no bias;
  no causal mask (a PE name's `+causal` adds one); attention logits are QK^T / sqrt(d_head), with PE biases added after scaling;
- every Linear of the transformer is initialised as Haiku does: trunc-normal(1/sqrt(fan_in)) cut at
  2 sigma, zero bias (a PE initialises its own parameters, as its authors' code does);
- a linear head with bias.
With the defaults it has 248,962 parameters on a binary task with a PE without parameters.

Packs (`che.models.packed`). One model holds the weights of K runs that differ only in their seeds
and learning rates (`Transformer(config, seeds=[...])`): every weight of the transformer is stacked,
[K, ...], and every layer has one PE module per run (`run_layout` says which tensor is whose). Activations are [K, B, T, d]; the K runs share each
operation (one batched matmul instead of K small ones), which is what makes small models cheap on a
GPU. A single run is the pack of one: the same code with K = 1, and `model(inputs [B, N], T_out)`
is the shorthand for it. Linear weights are stored as Haiku stores them, [in, out] (y = x @ w).

Randomness: each run's random draws (dropout, randomized positions) come from its own generator,
passed to `forward` (`generators`, one per run; None: torch's default generator), so that a run
computes the same alone, in a pack, eagerly or inside a captured CUDA graph.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from che.config import ModelConfig
from che.models.attention import attend
from che.models.packed import (PackedDropout, PackedLayerNorm, PackedLinear, RunTensor, per_run,
                                 stack)
from che.models.positional import parse_pe
from che.models.positional.base import AttentionPE
from che.models.positional.bilevel import segment_positions


# -- the model --------------------------------------------------------------------------------------
class SelfAttention(nn.Module):
    """Multi-head self-attention with the PE's hooks: the PE sees the layer input, rotates q and k,
    and adds a bias or transforms the scores; `che.models.attention` computes the rest."""

    def __init__(self, config: ModelConfig, pack: int, pes: bool, causal: bool = False):
        super().__init__()
        self.causal = causal  # mask keys right of the query (a PE name's `+causal`)
        self.n_heads, self.d_head = config.n_heads, config.d_head
        # q, k, v side by side ([d, 3d] = Haiku's three [d, d] maps), heads as contiguous column blocks
        self.qkv = PackedLinear(pack, config.d_model, 3 * config.d_model, bias=False)
        self.out = PackedLinear(pack, config.d_model, config.d_model, bias=False)
        self.pes: nn.ModuleList | None = nn.ModuleList() if pes else None  # AttentionPEs, one per run
        self.attention = config.attention
        self.record: dict | None = None  # set by `record_attention`

    def forward(self, x: torch.Tensor, generators) -> torch.Tensor:
        pack, batch, length, d_model = x.shape
        qkv = self.qkv(x).view(pack, batch, length, 3, self.n_heads, self.d_head)
        q, k, v = qkv.permute(3, 0, 1, 4, 2, 5)  # each [K, B, H, T, d_head]
        pes = self.pes
        if pes is not None and getattr(pes[0], "reads_input", False):
            per_run(pes, generators, lambda pe, x: pe.see(x), x)
        if pes is not None:
            rotated = per_run(pes, generators, lambda pe, q, k: pe.rotate(q, k), q, k)
            q, k = stack([r[0] for r in rotated]), stack([r[1] for r in rotated])
        # One memory layout whatever the pack size (a stacked pack is contiguous, a run alone a
        # view): matmuls over other layouts may take other kernels and round differently, and a run
        # must compute the same bits alone and packed. (The CPU's fused kernel is also ~20% faster.)
        # q and k keep the width the PE gave them (PoPE's are 2 d_head wide), v has d_head.
        q, k, v = (t.reshape(pack * batch, *t.shape[2:]).contiguous() for t in (q, k, v))
        per_run_q, per_run_k = q.view(pack, batch, *q.shape[1:]), k.view(pack, batch, *k.shape[1:])
        bias = logits = weights = None
        if pes is not None and pes[0].transforms_scores:
            def logits(scores):
                return stack([check_shape(pes[0], "logits", out, scores.shape[1:]) for out in per_run(
                    pes, generators, lambda pe, s, q, k: pe.logits(s, q, k), scores, per_run_q, per_run_k)])
        elif pes is not None:
            bias = self.biases(pes, generators, per_run_q, per_run_k, batch)
            if self.record is not None and bias is not None:  # unless the PE recorded its own parts (FoX)
                self.record.setdefault("bias", bias[0].detach())
        if pes is not None and getattr(pes[0], "replaces_softmax", False):
            weights = pes[0].attention_weights
        y = attend(q, k, v, pack=pack, path=self.path(x.device), bias=bias, logits=logits, weights=weights,
                   causal=self.causal, record=self.record)
        y = y.view(pack, batch, self.n_heads, length, self.d_head).transpose(2, 3)
        return self.out(y.reshape(pack, batch, length, d_model))

    def path(self, device: torch.device) -> str:
        """How a layer without a PE that transforms the scores attends: `attention` (fused: SDPA,
        explicit: the scores materialised, flex: FlexAttention), where auto is explicit on a CPU (at
        d_head 8, 10-25% faster than SDPA's CPU kernel) and fused on CUDA."""
        if self.attention != "auto":
            return self.attention
        return "explicit" if device.type == "cpu" else "fused"

    def biases(self, pes, generators, q, k, batch: int) -> torch.Tensor | None:
        """Each run's PE bias, stacked: [K, 1, H, T, T] (positions only) or [K, B, H, T, T] (content
        too); None for a PE without one."""
        biases = per_run(pes, generators, lambda pe, q, k: pe.bias(q, k), q, k)
        if biases[0] is None:
            return None
        length = q.shape[-2]
        for bias in biases:
            check_shape(pes[0], "bias", bias, (batch, self.n_heads, length, length))
        return stack([b if b.dim() == 4 else b.unsqueeze(0) for b in biases])


class Block(nn.Module):
    def __init__(self, config: ModelConfig, pack: int, attention_pes: bool, causal: bool = False):
        super().__init__()
        self.attention = SelfAttention(config, pack, attention_pes, causal)
        self.norm1 = PackedLayerNorm(pack, config.d_model)
        self.ffn_in = PackedLinear(pack, config.d_model, config.ffn_mult * config.d_model)
        self.ffn_out = PackedLinear(pack, config.ffn_mult * config.d_model, config.d_model)
        self.norm2 = PackedLayerNorm(pack, config.d_model)
        self.dropout = PackedDropout(config.dropout)

    def forward(self, h: torch.Tensor, generators) -> torch.Tensor:
        h = self.norm1(h + self.dropout(self.attention(h, generators), generators))
        return self.norm2(h + self.dropout(self.ffn_out(F.relu(self.ffn_in(h))), generators))


class Transformer(nn.Module):
    """`Transformer(config)`: one run; `Transformer(config, seeds=[s_0, ..., s_K-1])`: a pack of K
    runs, run k initialised exactly as `torch.manual_seed(s_k); Transformer(config)` would be."""

    def __init__(self, config: ModelConfig, seeds: Sequence[int] | None = None):
        super().__init__()
        self.config = config
        self.pack = pack = len(seeds) if seeds else 1
        build = parse_pe(config.pe, config)
        self.pe_name = build.name
        d = config.d_model
        self.embedding = nn.Parameter(torch.empty(pack, config.input_size + 1, d))  # + the empty token
        self.embedding_dropout = PackedDropout(config.dropout)
        self.head = PackedLinear(pack, d, config.output_size)
        # One PE module per run: on the embeddings (absolute PEs), in every attention layer, or both
        # (BiPE: positions inside segments on the embeddings, segment indices in attention).
        self.uses_segments = build.uses_segments
        self.absolute_pes = nn.ModuleList() if build.on_embeddings else None
        self.blocks = nn.ModuleList(Block(config, pack, attention_pes=build.in_attention, causal=build.causal)
                                    for _ in range(config.n_layers))
        # Run by run: its PE modules (their own initialisation draws), then its transformer weights,
        # so that run k draws what a model of its own seeded with seeds[k] draws.
        with torch.random.fork_rng(devices=[], enabled=seeds is not None):
            for run in range(pack):
                if seeds is not None:
                    torch.manual_seed(seeds[run])
                if self.absolute_pes is not None:
                    self.absolute_pes.append(build.make_embedding())
                if build.in_attention:
                    for layer, block in enumerate(self.blocks):
                        block.attention.pes.append(build.make(layer))
                self._init_run_(run)
        self.project_()

    def _init_run_(self, run: int) -> None:
        """Run `run`'s transformer weights as Haiku initialises them (its PEs are already made)."""
        nn.init.trunc_normal_(self.embedding[run], std=0.02, a=-0.04, b=0.04)
        for module in self.modules():
            if isinstance(module, PackedLinear):
                module.init_run_(run)
            elif isinstance(module, PackedLayerNorm):
                nn.init.ones_(module.weight[run])
                nn.init.zeros_(module.bias[run])

    def forward(self, inputs: torch.Tensor, output_length: int,
                generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """inputs [K, B, N] int64 -> logits [K, B, output_length, output_size]; a single run may
        pass [B, N] and gets [B, output_length, output_size]."""
        single = inputs.dim() == 2
        if single:
            inputs = inputs.unsqueeze(0)
        pack, batch, _ = inputs.shape
        empty = inputs.new_full((pack, batch, output_length), self.config.input_size)
        h = self.encode(torch.cat([inputs, empty], dim=2), generators)
        logits = self.head(h[:, :, h.shape[2] - output_length:])
        return logits[0] if single else logits

    def encode(self, tokens: torch.Tensor, generators: Sequence[torch.Generator | None] | None = None) -> torch.Tensor:
        """The encoder alone: token ids [K, B, T] (the empty token included) -> hidden states
        [K, B, T, d_model] after the last block."""
        if tokens.shape[0] != self.pack:
            raise ValueError(f"inputs hold {tokens.shape[0]} runs, the model {self.pack}")
        generators = list(generators) if generators is not None else [None] * self.pack
        pack, batch, length = tokens.shape
        one_hot = F.one_hot(tokens, self.config.input_size + 1).to(self.embedding.dtype)
        h = torch.bmm(one_hot.view(pack, -1, one_hot.shape[-1]), self.embedding)
        h = h.view(pack, batch, length, self.config.d_model) * math.sqrt(self.config.d_model)
        if self.uses_segments:
            self._set_segments(tokens)
        if self.absolute_pes is not None:
            h = stack(per_run(self.absolute_pes, generators, lambda pe, x: pe(x), h))
            h = self.embedding_dropout(h, generators)
        for block in self.blocks:
            h = block(h, generators)
        return h

    def _set_segments(self, tokens: torch.Tensor) -> None:
        """Hand each run's PE modules the segments of its tokens [K, B, T] (BiPE)."""
        index, inside = segment_positions(tokens, self.config.segment_separators, self.config.bipe_segment)
        for run in range(self.pack):
            owners = [self.absolute_pes] + [block.attention.pes for block in self.blocks]
            for modules in owners:
                for module in (modules[run].modules() if modules is not None else ()):
                    if getattr(module, "uses_segments", False):
                        module.segments = (index[run], inside[run])

    @torch.no_grad()
    def project_(self) -> None:
        """Every PE's parameters back into their domain (after an optimizer step)."""
        for pes in [self.absolute_pes] + [block.attention.pes for block in self.blocks]:
            for pe in pes or ():
                pe.project_()

    def num_parameters(self) -> int:
        """Parameters of one run."""
        return sum(p.numel() for p in self.parameters()) // self.pack

    # -- which tensor is whose ----------------------------------------------------------------
    def run_layout(self, buffers: bool = False) -> list[RunTensor]:
        """Every parameter (and with `buffers`, every saved buffer: what a state_dict holds) with the
        run it belongs to and its name in a model of one run: the stacked weights belong to all
        runs, each PE module to its own."""
        owners: dict[int, tuple[str, int]] = {}
        for prefix, modules in [("absolute_pes", self.absolute_pes)] + [
                (f"blocks.{i}.attention.pes", block.attention.pes) for i, block in enumerate(self.blocks)]:
            for run, module in enumerate(modules or ()):
                for name, tensor in module.state_dict(keep_vars=True).items():
                    owners[id(tensor)] = (f"{prefix}.0.{name}", run)
        tensors = self.state_dict(keep_vars=True).items() if buffers else self.named_parameters()
        layout = []
        for name, tensor in tensors:
            single, run = owners.get(id(tensor), (name, None))
            layout.append(RunTensor(single, tensor, run))
        return layout

    def run_state_dict(self, run: int) -> dict[str, torch.Tensor]:
        """The weights of run `run` as the state_dict of a single-run model (copies, on the CPU)."""
        state = {}
        for entry in self.run_layout(buffers=True):
            if entry.run is None:
                state[entry.name] = entry.tensor[run:run + 1].detach().cpu().clone()
            elif entry.run == run:
                state[entry.name] = entry.tensor.detach().cpu().clone()
        return state


@contextlib.contextmanager
def record_attention(model: Transformer):
    """Within the block, every attention layer of run 0 materialises its scores and keeps, per layer,
    a dict: scores S, logits A (what the softmax sees), probs (the attention) and, from the PE, its
    bias B (None: FoX over no PE), (DAPE) f(S, B) and (FoX) its decays D, each [B, H, T, T] (or
    [H, T, T]). Yields the list of dicts."""
    records = [{} for _ in model.blocks]

    def attach(value):
        for block, record in zip(model.blocks, records):
            block.attention.record = None if value is None else record
            for pe in block.attention.pes or ():
                for module in pe.modules():  # a wrapped PE too (FoX inside SSMax)
                    if isinstance(module, AttentionPE):
                        module.record = None if value is None else record

    attach(records)
    try:
        yield records
    finally:
        attach(None)


def check_shape(pe, what: str, value: torch.Tensor, shape) -> torch.Tensor:
    """A PE's bias or logits of the shape attention needs ([B, H, T, T]; a bias may leave out B), or
    a one-line error naming the PE and where it comes from (a plugin's mistake)."""
    shape = tuple(shape)
    if not isinstance(value, torch.Tensor) or tuple(value.shape) not in (shape, shape[1:] if what == "bias" else shape):
        import sys

        from che.errors import CheError

        source = getattr(sys.modules.get(type(pe).__module__), "__file__", type(pe).__module__)
        got = list(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
        raise CheError(f"PE '{pe.name}' ({source}) returned a {what} of shape {got}; attention needs "
                       f"{list(shape[1:]) if what == 'bias' else list(shape)}" + (f" or {list(shape)}" if what == "bias" else ""))
    return value
