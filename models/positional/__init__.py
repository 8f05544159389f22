"""The positional-encoding zoo and how PE names are read.

A name is `[dape-|dape2-][rand-]BASE`:
- BASE is a registered PE (`che pes`), or one of its aliases (`kerple` is `kerple-log`);
- `rand-` randomizes its positions (Ruoss et al. 2023); only PEs that use positions accept it;
- `dape-` / `dape2-` wrap an additive-bias PE (or `none`) in DAPE / DAPE V2 (Zheng et al.).
"""

from __future__ import annotations

from dataclasses import dataclass

from che.errors import CheError
from che.models.positional.dape import CITATION as DAPE_CITATION
from che.models.positional.base import AbsolutePE, AttentionPE, BiasPE, PositionalEncoding  # noqa: F401
from che import registry
from che.registry import BUILTIN, PES

# Importing a PE module registers its PEs (the @register_pe decorator).
from che.models.positional import none, absolute, rotary, biases, relative, cope  # noqa: F401,E402,I001

DAPE_PREFIXES = {"dape-": "dape", "dape2-": "dape2"}
RANDOM_PREFIX = "rand-"


@dataclass(frozen=True)
class PEBuild:
    """A parsed PE name: which class, randomized or not, wrapped in DAPE or not."""

    name: str          # canonical name, e.g. "dape-kerple-log" for "dape-kerple"
    cls: type          # the base PE class
    randomized: bool
    dape: str | None   # None, "dape" or "dape2"
    config: object

    @property
    def acts_on_embeddings(self) -> bool:
        return issubclass(self.cls, AbsolutePE) and self.dape is None

    def make(self) -> PositionalEncoding:
        """A fresh PE module (the model makes one per layer for attention PEs)."""
        from che.models.positional.dape import make_dape

        base = self.cls(self.config, randomized=self.randomized)
        return make_dape(self.dape, base, self.config) if self.dape else base


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
    """Every valid PE name (without aliases), modifiers included."""
    names = []
    for entry in PES.entries():
        cls = entry.obj
        variants = [cls.name] + ([RANDOM_PREFIX + cls.name] if cls.position_based else [])
        names += variants
        if dape_accepts(cls):
            names += [prefix + v for prefix in DAPE_PREFIXES for v in variants]
    return names


def parse_pe(name: str, config) -> PEBuild:
    rest, dape = name, None
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
                           f"random offsets; use --rand-mode positions")
    if dape and not dape_accepts(cls):
        accepted = ", ".join(sorted({c.name for c in classes.values() if dape_accepts(c)}))
        raise CheError(f"'{name}': DAPE needs an additive-bias PE or none, not '{cls.name}' "
                       f"(choices: {accepted})")
    canonical = ({"dape": "dape-", "dape2": "dape2-"}.get(dape, "")
                 + (RANDOM_PREFIX if randomized else "") + cls.name)
    return PEBuild(canonical, cls, randomized, dape, config)


def pe_versions(name: str) -> dict[str, int]:
    """The versions of the classes a PE name builds (part of a run's identity)."""
    from che.models.positional.dape import DAPE

    build = parse_pe(name, None)
    versions = {build.cls.name: getattr(build.cls, "version", 1)}
    if build.dape:
        versions["dape"] = DAPE.version
    return versions


registry.pe_versions = pe_versions


def canonical_pe_name(name: str) -> str:
    """`dape-kerple` -> `dape-kerple-log`; raises CheError for an unknown name."""
    return parse_pe(name, None).name


# -- descriptions for `che pes` -------------------------------------------------------------------
def parameter_counts(build: PEBuild) -> dict[str, int]:
    """What one run of a model with this PE trains for it, by part: {"<base pe>": n, "dape": n}
    per module; the model has one module (absolute PEs) or one per layer (attention PEs)."""
    module = build.make()
    if build.dape:
        base = sum(p.numel() for p in module.base.parameters())
        return {build.cls.name: base, build.dape: sum(p.numel() for p in module.parameters()) - base}
    return {build.cls.name: sum(p.numel() for p in module.parameters())}


def _parameters_text(build: PEBuild) -> str:
    """'9,690 = 5 layers x (330 fire + 1,608 dape)': the parameters a model of this PE trains for
    it (`build.config`'s size), as a run counts them."""
    parts = {name: n for name, n in parameter_counts(build).items() if n}
    per_module = sum(parts.values())
    if not per_module:
        return "0"
    modules = 1 if build.acts_on_embeddings else build.config.n_layers
    inside = " + ".join(f"{n:,} {name}" for name, n in parts.items()) if len(parts) > 1 else f"{per_module:,}"
    if modules == 1:
        return f"{per_module:,}" + (f" = {inside}" if len(parts) > 1 else "")
    return f"{modules * per_module:,} = {modules} layers x " + (f"({inside})" if len(parts) > 1 else inside)


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
                          "positions from [0, L). Relative and bias PEs by --rand-mode: offsets (default, "
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
    for row in rows[-3:]:
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
    check_range("--heads", heads, 1, 64)
    if heads * length * length > MAX_SHOWN_ENTRIES:
        raise CheError(f"--heads x --length^2 = {heads * length * length:,} numbers is more than --show prints "
                       f"({MAX_SHOWN_ENTRIES:,}); lower --length or --heads")

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
    with torch.no_grad():
        bias = module.bias(zeros, zeros)
        if bias is None and module.transforms_scores:
            return None, f"{build.name} transforms the scores from q and k; it has no fixed bias"
    if bias is None:
        return None, f"{build.name} adds no attention bias"
    if not isinstance(module, BiasPE):
        note = (note + "; " if note else "") + "content-dependent; shown for q = k = 0"
    return bias.expand(1, heads, length, length)[0] if bias.dim() == 4 else bias, note
