"""The positional-encoding zoo and how PE names are read.

A name is `[ssmax-][fox-][dape-|dape2-][rand-]BASE[+causal]`:
- BASE is a registered PE (`che pes`), or one of its aliases (`kerple` is `kerple-log`);
- `rand-` randomizes its positions (Ruoss et al. 2023); only PEs that use positions accept it;
- `dape-` / `dape2-` wrap an additive-bias PE (or `none`) in DAPE / DAPE V2 (Zheng et al.);
- `fox-` adds FoX's forget-gate decays to an attention PE's logits (Lin et al. 2025; `fox` alone is
  `fox-none`), `ssmax-` scales its logits by s_h log n (Nakanishi 2025);
- `+causal` makes the model causal: every attention layer masks the keys right of the query.
"""

from __future__ import annotations

from dataclasses import dataclass

from che.errors import CheError
from che.models.positional.dape import CITATION as DAPE_CITATION
from che.models.positional.base import AbsolutePE, AttentionPE, BiasPE, PositionalEncoding  # noqa: F401
from che.models.positional.forgetting import CITATION as FOX_CITATION
from che.models.positional.ssmax import CITATION as SSMAX_CITATION
from che import registry
from che.registry import (BUILTIN, CAUSAL_SUFFIX, DAPE2_PREFIX, DAPE_PREFIX, FOX, FOX_PREFIX, PES, RANDOM_PREFIX,
                          SSMAX_PREFIX)

# Importing a PE module registers its PEs (the @register_pe decorator).
from che.models.positional import none, absolute, rotary, biases, relative, cope  # noqa: F401,E402,I001
from che.models.positional import stick_breaking, bilevel  # noqa: F401,E402,I001

DAPE_PREFIXES = {DAPE_PREFIX: "dape", DAPE2_PREFIX: "dape2"}


@dataclass(frozen=True)
class PEBuild:
    """A parsed PE name: which class, randomized or not, wrapped in DAPE, FoX or SSMax or not,
    causal or not."""

    name: str          # canonical name, e.g. "dape-kerple-log" for "dape-kerple"
    cls: type          # the base PE class
    randomized: bool
    dape: str | None   # None, "dape" or "dape2"
    config: object
    fox: bool = False
    ssmax: bool = False
    causal: bool = False

    @property
    def acts_on_embeddings(self) -> bool:
        """Only on the token embeddings (absolute PEs): no PE module in attention."""
        return issubclass(self.cls, AbsolutePE) and self.dape is None

    @property
    def on_embeddings(self) -> bool:
        return self.acts_on_embeddings or getattr(self.cls, "embedding", None) is not None

    @property
    def in_attention(self) -> bool:
        return not self.acts_on_embeddings

    @property
    def uses_segments(self) -> bool:
        return self.cls.uses_segments

    def make(self) -> PositionalEncoding:
        """A fresh PE module (the model makes one per layer for attention PEs)."""
        from che.models.positional.dape import make_dape
        from che.models.positional.forgetting import ForgettingAttention
        from che.models.positional.ssmax import ScalableSoftmax

        module = self.cls(self.config, randomized=self.randomized)
        module = make_dape(self.dape, module, self.config) if self.dape else module
        if self.fox:
            module = ForgettingAttention(self.config, module, self.causal)
        if self.ssmax:
            module = ScalableSoftmax(self.config, module)
        for part in module.modules():
            if isinstance(part, PositionalEncoding):
                part.causal = self.causal
        return module

    def make_embedding(self):
        """The module on the token embeddings: the absolute PE, or a PE's embedding part (BiPE)."""
        return self.make() if self.acts_on_embeddings else self.cls.embedding(self.config)


def base_classes() -> dict[str, type]:
    """Every registered base PE by name and alias."""
    classes = {}
    for entry in PES.entries():
        classes[entry.name] = entry.obj
        for alias in getattr(entry.obj, "aliases", ()):
            classes.setdefault(alias, entry.obj)
    return classes


def dape_accepts(cls: type) -> bool:
    return issubclass(cls, BiasPE) or cls.name == "none"


def pe_names() -> list[str]:
    """Every valid PE name (without aliases) with the rand- and DAPE modifiers, and `fox` (`ssmax-`,
    `fox-` and `+causal` combine further: `che pes`)."""
    names = []
    for entry in PES.entries():
        cls = entry.obj
        variants = [cls.name] + ([RANDOM_PREFIX + cls.name] if cls.position_based else [])
        names += variants
        if dape_accepts(cls):
            names += [prefix + v for prefix in DAPE_PREFIXES for v in variants]
    return names + [FOX]


def parse_pe(name: str, config) -> PEBuild:
    rest, causal = name, name.endswith(CAUSAL_SUFFIX)
    if causal:
        rest = rest[:-len(CAUSAL_SUFFIX)]
    ssmax = rest.startswith(SSMAX_PREFIX)
    if ssmax:
        rest = rest[len(SSMAX_PREFIX):]
    fox = rest == FOX or rest.startswith(FOX_PREFIX)
    if fox:
        rest = "none" if rest == FOX else rest[len(FOX_PREFIX):]
    dape = None
    for prefix, kind in DAPE_PREFIXES.items():
        if rest.startswith(prefix):
            rest, dape = rest[len(prefix):], kind
    randomized = rest.startswith(RANDOM_PREFIX)
    if randomized:
        rest = rest[len(RANDOM_PREFIX):]
    classes = base_classes()
    cls = classes.get(rest)
    if cls is None:
        raise PES.unknown(name, pe_names())
    if randomized and not cls.position_based:
        raise CheError(f"'{name}': '{cls.name}' uses no positions, so it cannot be randomized "
                       f"(randomizable: {', '.join(n for n, c in classes.items() if c.position_based)})")
    if randomized and config is not None:
        mode = config.rand_mode  # one of che.config.RAND_MODES (RunConfig.validate checks it)
        if mode != "positions" and issubclass(cls, BiasPE) and not cls.defines_offsets():
            raise CheError(f"'{name}': '{cls.name}' defines its bias from positions only, so it cannot draw "
                           f"random offsets; use --set rand_mode=positions")
    if dape and not dape_accepts(cls):
        accepted = ", ".join(sorted({c.name for c in classes.values() if dape_accepts(c)}))
        raise CheError(f"'{name}': DAPE needs an additive-bias PE or none, not '{cls.name}' "
                       f"(choices: {accepted})")
    if dape == "dape2" and causal:
        raise CheError(f"'{name}': DAPE V2's convolutions run along the keys, so a query's logits would "
                       f"read keys right of it; use dape- for a causal model")
    if fox or ssmax:
        modifier = "ssmax-" if ssmax else "fox-"
        if dape or issubclass(cls, AbsolutePE) or cls.logits is not AttentionPE.logits:
            raise CheError(f"'{name}': {modifier} acts on the logits of an attention PE that does not transform "
                           f"the scores (none, rope, a bias PE, ...), not on "
                           f"'{({'dape': 'dape-', 'dape2': 'dape2-'}.get(dape, '')) + cls.name}'")
    canonical = ((SSMAX_PREFIX if ssmax else "") + (FOX_PREFIX if fox else "")
                 + {"dape": "dape-", "dape2": "dape2-"}.get(dape, "")
                 + (RANDOM_PREFIX if randomized else "") + cls.name)
    if fox and canonical.endswith(FOX_PREFIX + "none"):
        canonical = canonical[:-len("-none")]
    return PEBuild(canonical + (CAUSAL_SUFFIX if causal else ""), cls, randomized, dape, config,
                   fox=fox, ssmax=ssmax, causal=causal)


def pe_versions(name: str) -> dict[str, int]:
    """The versions of the classes a PE name builds (part of a run's identity)."""
    from che.models.positional.dape import DAPE

    build = parse_pe(name, None)
    causal_version = getattr(build.cls, "causal_version", None) if build.causal else None
    versions = {build.cls.name: causal_version or getattr(build.cls, "version", 1)}
    if build.dape:
        versions["dape"] = DAPE.version
    for modifier in ("fox", "ssmax"):
        if getattr(build, modifier):
            versions[modifier] = 1
    return versions


registry.pe_versions = pe_versions


def canonical_pe_name(name: str) -> str:
    """`dape-kerple` -> `dape-kerple-log`; raises CheError for an unknown name."""
    return parse_pe(name, None).name


# -- descriptions for `che pes` -------------------------------------------------------------------
def parameter_counts(build: PEBuild) -> dict[str, int]:
    """What one run of a model with this PE trains for it, by part, per module ({"fire": n, "dape": n},
    modifiers outermost first); the model has one module (absolute PEs) or one per layer (attention
    PEs), and BiPE also one embedding table (`embedding_parameters`)."""
    module = build.make() if build.in_attention else build.make_embedding()
    counts = {}
    while hasattr(module, "base"):  # DAPE, FoX, SSMax around the base PE
        label = {"ForgettingAttention": "fox", "ScalableSoftmax": "ssmax"}.get(type(module).__name__, build.dape)
        counts[label] = sum(p.numel() for p in module.parameters()) - sum(p.numel() for p in module.base.parameters())
        module = module.base
    return {build.cls.name: sum(p.numel() for p in module.parameters())} | counts


def embedding_parameters(build: PEBuild) -> int:
    """Parameters of the embedding part of a PE that also acts in attention (BiPE's table)."""
    if not (build.on_embeddings and build.in_attention):
        return 0
    return sum(p.numel() for p in build.make_embedding().parameters())


def _parameters_text(build: PEBuild) -> str:
    """'9,690 = 5 layers x (330 fire + 1,608 dape)': the parameters a model of this PE trains for
    it (`build.config`'s size), as a run counts them."""
    parts = {name: n for name, n in parameter_counts(build).items() if n}
    per_module = sum(parts.values())
    table = embedding_parameters(build)
    if not per_module:
        return f"{table:,} (the embedding table)" if table else "0"
    modules = 1 if build.acts_on_embeddings else build.config.n_layers
    inside = " + ".join(f"{n:,} {name}" for name, n in parts.items()) if len(parts) > 1 else f"{per_module:,}"
    if modules == 1:
        return f"{per_module:,}" + (f" = {inside}" if len(parts) > 1 else "")
    text = f"{modules * per_module:,} = {modules} layers x " + (f"({inside})" if len(parts) > 1 else inside)
    return text if not table else f"{modules * per_module + table:,} = {table:,} (the embedding table) + {text}"


def describe_pes(config) -> list[dict]:
    """One row per base PE, then the modifiers, with the parameters a model of `config`'s size
    trains for each."""
    rows = []
    for entry in PES.entries():
        cls = entry.obj
        build = parse_pe(cls.name, config)
        rows.append({"name": cls.name, "family": cls.family, "parameters": _parameters_text(build),
                     "bidirectional": cls.bidirectional, "citation": cls.citation, "cite": short_citation(cls.citation),
                     "source": entry.source, "aliases": {alias: cls.name for alias in cls.aliases},
                     "about": " ".join((cls.__doc__ or "").split())})
    dape = _parameters_text(parse_pe("dape-alibi", config))  # ALiBi has none: DAPE's own
    dape2 = _parameters_text(parse_pe("dape2-alibi", config))
    rows += [
        {"name": "rand-<pe>", "family": "modifier", "parameters": "as <pe>",
         "bidirectional": "as <pe>; redrawn every forward pass (per layer for attention PEs), shared by "
                          f"the batch, L = {config.rand_max_length}. Absolute and rotary PEs: T sorted "
                          "positions from [0, L). Relative and bias PEs by --set rand_mode=...: offsets (default, "
                          "RPE's method: sorted r_1 < ... < r_{T-1} from [1, L), distance |i-j| -> r_|i-j|), "
                          "reference (RPE's released code bit for bit; its NOISY_RELATIVE encodes every key "
                          "right of the query alike) or positions (T sorted positions, offsets p_i - p_j)",
         "citation": "Ruoss et al. 2023, Randomized Positional Encodings Boost Length Generalization",
         "source": BUILTIN},
        {"name": "dape-<bias pe>", "family": "modifier", "parameters": f"<bias pe> + {dape}",
         "bidirectional": "native: A = S + B + f(S, B), f = MLP 2H -> D -> H at every (i, j)",
         "citation": DAPE_CITATION, "source": BUILTIN},
        {"name": "dape2-<bias pe>", "family": "modifier", "parameters": f"<bias pe> + {dape2}",
         "bidirectional": f"native: f = two 1 x {config.dape_kernel} convolutions over [S; B], all keys visible",
         "citation": "Zheng et al. 2025, DAPE V2: Process Attention Score as Feature Map (arXiv 2410.04798)",
         "source": BUILTIN},
    ]
    fox = _parameters_text(parse_pe("fox", config))
    ssmax = _parameters_text(parse_pe("ssmax-none", config))
    rows += [
        {"name": "fox-<pe>", "family": "modifier", "parameters": f"<pe> + {fox}",
         "bidirectional": "FoX's forget gates, f_t = sigmoid(w^T x_t + b) per head from the attention input, add "
                          "D_ij = sum_{l=j+1..i} log f_l to the logits (`fox` alone: over none, as the paper; gates "
                          "initialised as the authors' code, w ~ N(0, 0.02), b = 0). Bidirectional (che's form): keys "
                          "right of the query decay through a second gate, D_ij = sum_{l=i..j-1} log g_l",
         "citation": FOX_CITATION, "source": BUILTIN},
        {"name": "ssmax-<pe>", "family": "modifier", "parameters": f"<pe> + {ssmax}",
         "bidirectional": "Scalable-Softmax: the logits of query i times s_h log n_i (n_i keys seen: T, or i + 1 "
                          "causal), s_h learned per head and layer, initialised to 0.43 (the value of the paper's "
                          "Figure 1; the paper does not give its initial s)",
         "citation": SSMAX_CITATION, "source": BUILTIN},
        {"name": "<pe>+causal", "family": "modifier", "parameters": "as <pe>",
         "bidirectional": "a causal model: every attention layer masks the keys right of the query (the outputs "
                          "are read after the whole input, so they still see all of it). NoPE under a causal mask "
                          "is Kazemnejad et al.'s baseline. DAPE V2 refuses it (its convolutions read along the keys)",
         "citation": "Kazemnejad et al. 2023, The Impact of Positional Encoding on Length Generalization in "
                     "Transformers (NeurIPS 2023)", "source": BUILTIN},
    ]
    for row in rows[-6:]:
        row["cite"] = short_citation(row["citation"])
        row["about"] = row["bidirectional"]
        row["aliases"] = {}
    return rows


def short_citation(citation: str) -> str:
    """'Press et al. 2022, Train Short, Test Long (ALiBi)' -> 'Press et al. 2022': the first source's
    authors and year, for tables that must fit 80 columns (`che pes NAME` gives the whole one)."""
    return citation.split(";")[0].split(",")[0].strip()


MAX_SHOWN_ENTRIES = 2_000_000  # heads x T x T numbers `che pes --show` prints or draws


def initial_bias(name: str, length: int, heads: int):
    """(bias [H, T, T] or None, note) that PE `name` adds to the scaled scores at initialisation."""
    import torch

    from che.errors import check_range

    check_range("--length", length, 1, 4096)
    check_range("--n-heads", heads, 1, 64)
    if heads * length * length > MAX_SHOWN_ENTRIES:
        raise CheError(f"--n-heads x --length^2 = {heads * length * length:,} numbers is more than --show prints "
                       f"({MAX_SHOWN_ENTRIES:,}); lower --length or --n-heads")

    from che.config import ModelConfig

    config = ModelConfig(input_size=2, output_size=2, n_heads=heads, d_model=8 * heads, pe=name)
    build = parse_pe(name, config)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build.make().eval()
    if build.acts_on_embeddings:
        return None, f"{build.name} is added to the token embeddings; it adds no attention bias"
    note = ""
    if build.dape:
        note = "f(S, B) depends on the attention scores; shown: the bias B of the wrapped PE"
        module = module.base
        if build.cls.name == "none":
            return None, note.replace("; shown: the bias B of the wrapped PE", "; there is no B")
    if build.randomized:
        note = (note + "; " if note else "") + "one draw of randomized positions"
    zeros = torch.zeros(1, heads, length, config.d_head)
    if build.uses_segments:
        from che.models.positional.bilevel import segment_positions

        segments = segment_positions(torch.zeros(1, length, dtype=torch.long), (), config.bipe_segment)
        for part in module.modules():
            if getattr(part, "uses_segments", False):
                part.segments = segments
        note = (note + "; " if note else "") + f"segments: chunks of {config.bipe_segment} tokens"
    if build.causal:
        note = (note + "; " if note else "") + "keys right of the query are masked"
    with torch.no_grad():
        if module.reads_input:
            module.see(torch.zeros(1, length, config.d_model))
            note = (note + "; " if note else "") + "for a layer input x = 0"
        bias = module.bias(zeros, zeros)
        if bias is None and module.transforms_scores:
            return None, f"{build.name} transforms the scores from q and k; it has no fixed bias"
    if bias is None:
        return None, f"{build.name} adds no attention bias"
    if not isinstance(module, BiasPE):
        note = (note + "; " if note else "") + "content-dependent; shown for q = k = 0"
    return bias.expand(1, heads, length, length)[0] if bias.dim() == 4 else bias, note
