"""The positional-encoding interface.

A PE is one of two kinds, and the model never needs to know more than which:

- `AbsolutePE` acts once, on the token embeddings (`x + encode(positions)`).
- `AttentionPE` acts inside every attention layer (one instance per layer). It may
  - rotate q and k (`rotate`, e.g. RoPE; it may also widen them, as PoPE's 2 d_head-wide real form,
    and the attention then scales by the square root of their width),
  - return an additive bias for the scaled scores (`bias`, e.g. ALiBi; shape [H, T, T] or
    [B, H, T, T]), which the attention adds after the 1/sqrt(d_head) scaling,
  - or transform the scores it is handed (`logits`, e.g. DAPE). The attention computes the scaled
    scores S = QK^T / sqrt(d_head) once and hands them over; by default `logits` returns S + bias.

Attention PEs that only rotate or add a bias never see a materialised score matrix, so the
attention may use a fused kernel for them; a PE that overrides `logits` gets the scores.

Positions are 0..T-1, or, when the PE is randomized (Ruoss et al. 2023, the `rand-` prefix), T
sorted distinct integers drawn from [0, L), one draw shared by the batch and the heads, redrawn
on every forward pass (by each layer's PE separately, as the reference does for its attention PEs).

Randomness has one seam: every random draw of positions goes through `random_positions` and every
draw of offsets through `random_offsets`, both looked up at call time (tests replace them to replay
the reference's draws). They draw from the generator that `use_generator` made current, or from
torch's default generator outside it: the model makes each run's own generator current while it
computes that run, so a run draws the same numbers alone or in a pack, eager or graph-captured.
"""

from __future__ import annotations

import contextlib
import math
from typing import ClassVar

import torch
from torch import nn

_generator: torch.Generator | None = None



@contextlib.contextmanager
def use_generator(generator: torch.Generator | None):
    """Make `generator` the source of every random draw of the model (positions, offsets, dropout)
    inside the block; None means torch's default generator."""
    global _generator
    previous, _generator = _generator, generator
    try:
        yield
    finally:
        _generator = previous


def uniform(shape, device, dtype=torch.float32) -> torch.Tensor:
    """U[0, 1) numbers from the current generator (capture-safe on CUDA: no host synchronisation)."""
    return torch.empty(shape, device=device, dtype=dtype).uniform_(generator=_generator)


def _sorted_subset(count: int, low: int, high: int, device) -> torch.Tensor:
    """`count` sorted distinct integers drawn uniformly from [low, high): the smallest `count` of
    high - low uniform keys pick a uniform random subset (unlike randperm, capture-safe on CUDA)."""
    if count > high - low:
        raise ValueError(f"cannot draw {count} distinct values from [{low}, {high}); "
                         f"raise the randomized-position range (rand_max_length)")
    keys = uniform(high - low, device)
    return keys.topk(count, largest=False, sorted=False).indices.sort().values + low


def random_positions(count: int, max_length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """`count` sorted distinct positions drawn uniformly from [0, max_length), int64."""
    return _sorted_subset(count, 0, max_length, device)


def random_offsets(count: int, max_length: int, device: torch.device | str | None = None) -> torch.Tensor:
    """`count` sorted distinct offsets r_1 < ... < r_count drawn uniformly from [1, max_length), int64
    (RPE's NOISY_ALIBI / NOISY_RELATIVE draw; r_d stands for the distance d)."""
    return _sorted_subset(count, 1, max_length, device)


class PerPairCost:
    """What a PE or a modifier costs beyond attention's own, per (query, key) pair of one example: the
    evaluation memory model and the cost model read it (nothing, unless a class says otherwise)."""

    @classmethod
    def memory_per_pair(cls, config, device_type: str = "cpu") -> int:
        """float32 numbers held per (query, key) pair of one example."""
        return 0

    @classmethod
    def flops_per_pair(cls, config) -> float:
        """FLOPs of one forward pass per (query, key) pair of one example and layer."""
        return 0.0


class PositionalEncoding(PerPairCost, nn.Module):
    """A positional encoding. Its class declares what the rest of che asks about it (its spec):

    - `name`, `aliases`, `family`, `citation`; the docstring is its long description (`che pes NAME`);
    - `bidirectional_form` and `causal_form`: one line each, what it computes in an encoder and in
      a causal model (`+causal`), or `refuses` {"bidirectional" | "causal": why it has no such form}
      (and {"rand": why}, where randomized positions make no sense for it);
    - `evaluation_of`: (another PE's name, an evaluation setting, a value) where this PE is that one
      evaluated under the setting's value: both train alike, and a kept model of the other evaluated
      so (`che eval --set rope_scaling=yarn` on a `rope` run) computes as this one (`rope-yarn`);
    - `version` (and `causal_version`, where the causal form changed on its own): part of every
      run's identity;
    - `settings`: the settings (`che settings`) it reads;
    - `position_based`: whether `rand-` applies; `bias_from_positions_only`: whether DAPE may wrap it
      (its contribution is a bias of the positions alone, or nothing);
    - `bias_reads_query`: its bias depends on q (Transformer-XL's, PaTH's), so a modifier that scales q
      hands it the query before scaling; `gates_inside_scale`: FoX's decays over it enter before the
      1/sqrt(d_head) scale (the authors' PaTH-FoX), not after it (FoX's own form);
    - `memory_per_pair` and `flops_per_pair`: the float32 numbers it holds and the FLOPs it adds per
      (query, key) pair of an example, beyond attention's own (evaluation memory, the cost model);
    - `column`: where its column sorts in a leaderboard (the CHE papers' order for the built-ins);
    - `bias_label`: what `che show` calls the bias it adds (a panel's title);
    - `jax_reference`: its parameters' names in the DeepMind JAX reference, where it has a form there.
    """

    name: ClassVar[str]
    family: ClassVar[str]                 # "none", "absolute", "rotary", "additive bias", "relative", ...
    citation: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    bidirectional_form: ClassVar[str] = "native"
    causal_form: ClassVar[str] = "the same under the causal mask"
    refuses: ClassVar[dict[str, str]] = {}   # a mode ("bidirectional", "causal"), or "rand" -> why not
    evaluation_of: ClassVar[tuple[str, str, str] | None] = None  # (PE name, setting, value): see above
    settings: ClassVar[tuple[str, ...]] = ()
    position_based: ClassVar[bool] = True    # False: the `rand-` modifier does not apply
    bias_from_positions_only: ClassVar[bool] = False
    on_embeddings: ClassVar[bool] = False     # it adds to the token embeddings (absolute PEs, BiPE's part)
    bias_reads_query: ClassVar[bool] = False  # its bias depends on q (see above)
    gates_inside_scale: ClassVar[bool] = False  # FoX's decays over it are scaled with the scores (see above)
    column: ClassVar[float] = math.inf
    bias_label: ClassVar[str] = "bias B"
    jax_reference: ClassVar[dict[str, str] | None] = None  # Haiku name -> parameter (see che.models.haiku)
    # Raise when what the PE computes changes: the version is part of every run's identity, so a
    # finished result of the old implementation is not taken for one of the new.
    version: ClassVar[int] = 1
    # The version of its causal form (`+causal`) where that changed on its own; None: `version`.
    causal_version: ClassVar[int | None] = None
    # Segment-based PEs (BiPE): the model sets `segments` = (segment index, position inside the
    # segment), each [B, T] int64, from the tokens before every forward pass (`segment_positions`).
    uses_segments: ClassVar[bool] = False
    segments: tuple[torch.Tensor, torch.Tensor] | None = None
    causal: bool = False  # set by PEBuild.make for a causal model (`+causal`): keys j > i are masked

    def __init__(self, config, randomized: bool = False):
        super().__init__()
        if randomized and not self.position_based:
            raise ValueError(f"'{self.name}' does not use positions and cannot be randomized")
        self.config = config
        self.randomized = randomized

    def project_(self) -> None:
        """Put the parameters back into their domain (e.g. KERPLE's r >= 0.01): called when the
        model is made and after every optimizer step."""

    def positions(self, length: int, device: torch.device) -> torch.Tensor:
        if self.draws_randomly():
            return random_positions(length, self.config.rand_max_length, device)
        return torch.arange(length, device=device)

    def draws_randomly(self) -> bool:
        return self.randomized and (self.training or self.config.rand_at_eval)


class AbsolutePE(PositionalEncoding):
    """Adds a [T, d_model] encoding of the token positions to the embeddings."""

    on_embeddings = True

    def encode(self, positions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.encode(self.positions(x.shape[1], x.device)).to(x.dtype)


class AttentionPE(PositionalEncoding):
    """Acts inside attention; q and k are [B, H, T, d_head], scores are [B, H, T, T] (query, key).

    Two more hooks, for PEs that need them: `see(x)` is handed the layer's input [B, T, d_model]
    before q and k (when `reads_input`; FoX's forget gates read it), and `attention_weights(logits)`
    turns the logits into the attention (softmax by default; stick-breaking replaces it, which
    makes the attention materialise the logits).
    """

    reads_input: ClassVar[bool] = False

    def see(self, x: torch.Tensor) -> None:
        """The layer's input [B, T, d_model] (called before rotate and bias when `reads_input`)."""

    def attention_weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits, dim=-1)

    @property
    def replaces_softmax(self) -> bool:
        return type(self).attention_weights is not AttentionPE.attention_weights

    def rotate(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return q, k

    def bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor | None:
        return None

    record: dict | None = None  # set by che.models.transformer.record_attention

    def logits(self, scores: torch.Tensor, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        b = self.bias(q, k)
        if self.record is not None and b is not None:
            self.record["bias"] = b.detach()
        return scores if b is None else scores + b

    @property
    def transforms_scores(self) -> bool:
        """True when `logits` is overridden, i.e. the attention must hand over the score matrix."""
        return type(self).logits is not AttentionPE.logits


class BiasPE(AttentionPE):
    """An additive bias B[h, i, j] that is a function of the positions only (not of the content).

    Subclasses implement `bias_from_offsets(offsets, positions) -> [H, T, T]` from the signed
    key-minus-query offsets [T, T] (and the query positions [T], for a bias that needs them), or,
    if the bias is not a function of offsets, `bias_from_positions(positions)`; DAPE can wrap any
    of them. Randomized (`rand-`), the offsets are RPE's (`rand_mode` "offsets" or "reference":
    sorted random r_1 < ... < r_{T-1} from [1, L), offset j - i encoded as sign(j - i) r_|i-j|,
    the query at i at position r_i) or those of random positions ("positions": p_j - p_i).
    """

    bias_from_positions_only = True

    def bias_from_offsets(self, offsets: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def bias_from_positions(self, positions: torch.Tensor) -> torch.Tensor:
        return self.bias_from_offsets(signed_offsets(positions), positions)

    @classmethod
    def defines_offsets(cls) -> bool:
        return cls.bias_from_offsets is not BiasPE.bias_from_offsets

    def bias(self, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        length = q.shape[-2]
        if self.draws_randomly() and self.config.rand_mode != "positions":
            offsets, positions = random_offset_matrix(length, self.config.rand_max_length, q.device)
            return self.bias_from_offsets(offsets, positions).to(q.dtype)
        return self.bias_from_positions(self.positions(length, q.device)).to(q.dtype)


# -- modifiers ------------------------------------------------------------------------------------
class PEModifier(PerPairCost):
    """A word of a PE name that changes the PE it is applied to: a prefix (`dape-`, `rand-`) or a
    suffix (`+causal`). Its class declares its spec, as a PE's does, and is registered in
    `che.registry.PE_MODIFIERS` (che.pe_names reads names with them):

    - `name`, `prefix` or `suffix`, `position` among the prefixes (outermost 0; the grammar is
      `[ssmax-][fox-][dape-|dape2-][rand-]BASE[+causal]`), `alone` (a name that means the modifier
      over `alone_base`: `fox` is `fox-none`), `listed` (`che pes` lists it with each base);
    - `label` (its name in a PE's family: "DAPE over alibi"), `citation`, `form` (what it does);
    - `version_key` and `version` (part of the identity of every run it is in, under that key;
      `version_over(base)`, where it computes differently over some bases);
    - `causal_refusal`: why it cannot be causal (None: it can);
    - `sort_rank`: (a slot, a rank in it) placing modified columns after the plain ones;
    - `refuses(base, inner, config)`: why it cannot apply to `base` under the modifiers `inner` (or
      None); `wrap(module, config, causal)`: the module with it applied;
    - `memory_per_pair`, `flops_per_pair`, `settings`: as a PE's.
    """

    name: ClassVar[str]
    prefix: ClassVar[str] = ""
    suffix: ClassVar[str] = ""
    position: ClassVar[int] = 0
    alone: ClassVar[str | None] = None
    alone_base: ClassVar[str | None] = None
    listed: ClassVar[bool] = False
    label: ClassVar[str] = ""
    citation: ClassVar[str] = ""
    form: ClassVar[str] = ""
    version_key: ClassVar[str | None] = None
    version: ClassVar[int] = 1
    causal_refusal: ClassVar[str | None] = None
    sort_rank: ClassVar[tuple[int, int]] = (0, 0)
    settings: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def refuses(cls, base: type, inner: list, config) -> str | None:
        return None

    @classmethod
    def version_over(cls, base: type) -> int:
        return cls.version

    @classmethod
    def wrap(cls, module, config, causal: bool):
        return module



class Randomized(PEModifier):
    """`rand-`: the PE's positions (or RPE's offsets) drawn at random (see the module's docstring)."""

    name, prefix, position, listed, label = "rand", "rand-", 3, True, "randomized"
    sort_rank = (2, 1)
    settings = ("rand_max_length", "rand_at_eval", "rand_mode")
    citation = "Ruoss et al. 2023, Randomized Positional Encodings Boost Length Generalization"
    form = ("redrawn every forward pass (per layer for attention PEs), shared by the batch, from [0, L), "
            "L = rand_max_length. Absolute and rotary PEs: T sorted positions from [0, L). Relative and bias PEs "
            "by --set rand_mode=...: offsets (default, RPE's method: sorted r_1 < ... < r_{T-1} from [1, L), "
            "distance |i-j| -> r_|i-j|), reference (RPE's released code bit for bit; its NOISY_RELATIVE encodes "
            "every key right of the query alike) or positions (T sorted positions, offsets p_i - p_j)")

    @classmethod
    def refuses(cls, base, inner, config):
        if not base.position_based:
            from che.registry import PES

            randomizable = ", ".join(e.name for e in PES.entries() if e.obj.position_based)
            return f"'{base.name}' uses no positions, so it cannot be randomized (randomizable: {randomizable})"
        if base.refuses.get("rand"):
            return f"'{base.name}' cannot be randomized: {base.refuses['rand']}"
        mode = getattr(config, "rand_mode", None)  # one of che.config.RAND_MODES (validated there)
        if mode not in (None, "positions") and issubclass(base, BiasPE) and not base.defines_offsets():
            return (f"'{base.name}' defines its bias from positions only, so it cannot draw random offsets; "
                    f"use --set rand_mode=positions")
        return None


def random_distances(length: int, max_length: int, device) -> torch.Tensor:
    """[T] distances: 0, then one `random_offsets` draw r_1 < ... < r_{T-1} (r_d stands for d)."""
    return torch.cat([torch.zeros(1, dtype=torch.long, device=device),
                      random_offsets(length - 1, max_length, device)])


def random_offset_matrix(length: int, max_length: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """RPE's randomized offsets: ([T, T] sign(j - i) r_|i-j|, [T] query positions r_i)."""
    distances = random_distances(length, max_length, device)
    steps = signed_offsets(torch.arange(length, device=device))
    return torch.sign(steps) * distances[steps.abs()], distances


def signed_offsets(positions: torch.Tensor) -> torch.Tensor:
    """[T, T] matrix of key minus query positions, j - i (negative for keys left of the query)."""
    return positions[None, :] - positions[:, None]
