"""What a PE name means: the one reader of the grammar

    NAME     = LAYERS[+causal]
    LAYERS   = PE | PE~PE~...         a layer schedule: layer l has the (l mod k)-th PE
    PE       = [ssmax-][fox-][dape-|dape2-][rand-]BASE

A PE is a base (a class in `che.registry.PES`, by name or alias) with modifiers (classes in
`che.registry.PE_MODIFIERS`): prefixes, outermost first, and suffixes. Each modifier declares the
word it adds (`prefix` or `suffix`), its `position` among the prefixes (outermost 0), an `alone`
form if it stands for itself over a base (`fox` is `fox-none`), and `refuses(...)`: why it cannot
apply to a base (a reason, or None). Each base declares its spec (see
`che.models.positional.base.PositionalEncoding`): version, forms, the modes it refuses, its column;
a registered base may itself be a named layer schedule (`schedule`, e.g. `irope`). The suffixes
apply to every layer of a schedule. Everything here asks those declarations; no other module reads
a PE name's text.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from che.errors import CheError, echo
from che.registry import PE_MODIFIERS, PES


SCHEDULE = "~"  # joins the PEs of a layer schedule: `none~alibi`


class WrittenSchedule:
    """The spec of a layer schedule written in a name (`rope~none`), as a registered PE's would be."""

    name, family, citation, column, version = "schedule", "layer schedule", "", math.inf, 1
    settings: tuple[str, ...] = ()
    refuses: dict[str, str] = {}
    on_embeddings = False
    position_based = False


@dataclass(frozen=True)
class PEName:
    """A parsed PE name: the base class, its prefix modifiers (outermost first) and its suffixes;
    for a layer schedule, the PE of each layer of its cycle (`layers`)."""

    name: str                      # canonical: "dape-kerple-log" for "dape-kerple"
    base: type
    prefixes: tuple[type, ...]     # e.g. (ScalableSoftmax, ForgettingAttention): `ssmax-fox-...`
    suffixes: tuple[type, ...]     # e.g. (Causal,): `...+causal`
    layers: tuple[PEName, ...] = ()  # a schedule's cycle: layer l has layers[l % len(layers)]

    def layer(self, index: int) -> PEName:
        """The PE of layer `index` (this PE itself, unless it is a schedule)."""
        return self.layers[index % len(self.layers)] if self.layers else self

    @property
    def modifiers(self) -> tuple[type, ...]:
        return self.prefixes + self.suffixes

    def has(self, modifier: str) -> bool:
        """Whether the name carries the modifier registered as `modifier` ("rand", "dape", "causal", ...),
        in any layer of a schedule."""
        return any(m.name == modifier for m in self.modifiers) or any(layer.has(modifier) for layer in self.layers)

    def without(self, modifier: str) -> str:
        """The canonical name of the same PE without the modifier registered as `modifier`."""
        return canonical([m for m in self.prefixes if m.name != modifier], self.base,
                         [m for m in self.suffixes if m.name != modifier])

    def without_suffixes(self) -> str:
        if self.layers:
            return self.name[:len(self.name) - sum(len(m.suffix) for m in self.suffixes)]
        return canonical(self.prefixes, self.base, [])

    def reads(self, setting: str) -> bool:
        """Whether a part of this PE (its base or a modifier, or a layer's) reads the setting."""
        return (any(setting in part.settings for part in (self.base, *self.modifiers))
                or any(layer.reads(setting) for layer in self.layers))

    @property
    def causal(self) -> bool:
        return self.has("causal")

    @property
    def randomized(self) -> bool:
        return self.has("rand")

    def versions(self) -> dict[str, int]:
        """The versions of the code this name runs, part of a run's identity: the base's (its causal
        form's in a causal model, where that changed on its own), and each modifier's that has one;
        a schedule's, its own and its layers'."""
        if self.layers:
            versions = {} if self.base is WrittenSchedule else {self.base.name: self.base.version}
            for layer in self.layers:
                versions |= layer.versions()
            return versions
        causal_version = getattr(self.base, "causal_version", None) if self.causal else None
        versions = {self.base.name: causal_version or getattr(self.base, "version", 1)}
        for modifier in self.prefixes:
            if modifier.version_key:
                versions[modifier.version_key] = modifier.version_over(self.base)
        return versions

    def sort_key(self) -> tuple:
        """Where the PE's column sorts: plain PEs in the order their classes declare (`column`), each
        causal column beside its bidirectional one, then the modified ones, grouped as the modifiers
        declare (`sort_rank`: a slot and a rank within it)."""
        name = self.without_suffixes() if self.base is WrittenSchedule else self.base.name
        return sort_key(self.prefixes, getattr(self.base, "column", math.inf), name, self.causal)


def sort_key(prefixes, column: float, base: str, causal: bool) -> tuple:
    slots = [0, 0, 0]
    for modifier in prefixes:
        slot, rank = modifier.sort_rank
        slots[slot] += rank
    return (*slots, column, base, causal)


def modifiers() -> tuple[list[type], list[type]]:
    """(the prefix modifiers, outermost first; the suffix modifiers)."""
    found = [entry.obj for entry in PE_MODIFIERS.entries()]
    prefixes = sorted((m for m in found if m.prefix), key=lambda m: m.position)
    return prefixes, [m for m in found if m.suffix]


def split(name: str) -> tuple[list[type], str, list[type]]:
    """(prefix modifiers, the base's name as written, suffix modifiers): the name's words, whatever
    the base (a plugin's PE that is not loaded reads as well)."""
    prefixes, suffixes = modifiers()
    rest, found_suffixes = name, []
    for modifier in suffixes:
        if rest.endswith(modifier.suffix):
            rest, found_suffixes = rest[:-len(modifier.suffix)], [modifier] + found_suffixes
    found_prefixes = []
    for modifier in prefixes:
        if any(m.position == modifier.position for m in found_prefixes):
            continue  # one of a position (`dape-` or `dape2-`)
        if modifier.alone and rest == modifier.alone:
            return found_prefixes + [modifier], modifier.alone_base, found_suffixes
        if rest.startswith(modifier.prefix):
            found_prefixes.append(modifier)
            rest = rest[len(modifier.prefix):]
    return found_prefixes, rest, found_suffixes


def base_classes() -> dict[str, type]:
    """Every registered base PE by name and alias."""
    classes = {}
    for entry in PES.entries():
        classes[entry.name] = entry.obj
        for alias in getattr(entry.obj, "aliases", ()):
            classes.setdefault(alias, entry.obj)
    return classes


def read(name: str, config=None) -> PEName:
    """The PEName that `name` means, or a one-line CheError: an unknown base, or a combination that
    cannot work (each modifier and base says why). `config` (a ModelConfig) lets a modifier check
    settings it depends on (`rand-` and `rand_mode`)."""
    suffixes = split(name)[2]
    body = name[:len(name) - sum(len(m.suffix) for m in suffixes)]
    if SCHEDULE in body:  # `~` binds loosest: `fox-rope~none` is fox-rope, then none
        return schedule(name, body.split(SCHEDULE), WrittenSchedule, suffixes, config)
    prefixes, rest, suffixes = split(name)
    base = base_classes().get(rest)
    if base is None:
        raise PES.unknown(name, names())
    if getattr(base, "schedule", None):
        if prefixes:
            raise CheError(f"'{echo(name)}': '{base.name}' is a layer schedule; a modifier applies to the PEs of "
                           f"its layers: write them with it ({SCHEDULE.join(base.schedule)})")
        return schedule(name, list(base.schedule), base, suffixes, config)
    for modifier in prefixes + suffixes:
        inner = prefixes[prefixes.index(modifier) + 1:] if modifier in prefixes else prefixes
        reason = modifier.refuses(base, inner, config)
        if reason:
            raise CheError(f"'{echo(name)}': {reason}")
    if not suffixes and getattr(base, "refuses", {}).get("bidirectional"):
        raise CheError(f"'{echo(name)}': {base.name} has no bidirectional form: {base.refuses['bidirectional']}")
    return PEName(canonical(prefixes, base, suffixes), base, tuple(prefixes), tuple(suffixes))


def schedule(name: str, parts: list[str], base: type, suffixes: list, config) -> PEName:
    """A layer schedule: each part read as a PE of its own (with the schedule's suffixes); a part
    that acts on the embeddings, or is a schedule itself, is refused."""
    written = "".join(m.suffix for m in suffixes)
    layers = []
    for part in parts:
        if not part:
            raise CheError(f"'{echo(name)}': a layer schedule joins PEs with '{SCHEDULE}' (`none{SCHEDULE}alibi`); "
                           f"one is empty")
        if split(part)[2]:  # `none~alibi+causal~rope`: the model is causal in every layer or in none
            raise CheError(f"'{echo(name)}': {''.join(m.suffix for m in split(part)[2])} applies to every "
                           f"layer of a schedule: write it once, at the end (`none{SCHEDULE}alibi+causal`)")
        layer = read(part + written, config)
        if layer.layers or getattr(layer.base, "on_embeddings", False):
            raise CheError(f"'{echo(name)}': a layer schedule interleaves PEs that act in attention; '{part}' "
                           + ("is a schedule itself" if layer.layers else "acts on the token embeddings"))
        layers.append(layer)
    text = (base.name if base is not WrittenSchedule else SCHEDULE.join(layer.without_suffixes() for layer in layers))
    return PEName(text + written, base, (), tuple(suffixes), tuple(layers))


def evaluation_variants(setting: str | None = None, value=None) -> list[type]:
    """The registered PEs that declare themselves another PE evaluated under a setting
    (`evaluation_of`: rope-yarn is rope under rope_scaling=yarn), or those of `setting`=`value`."""
    variants = [entry.obj for entry in PES.entries() if getattr(entry.obj, "evaluation_of", None)]
    if setting is None:
        return variants
    return [v for v in variants if tuple(v.evaluation_of[1:]) == (setting, value)]


def evaluated_as(pe: PEName, config) -> PEName:
    """The PE a model of `pe` computes as under `config` (a ModelConfig): `pe` itself, or, where the
    config sets an evaluation setting to a value under which a registered PE declares itself `pe`'s
    base (`evaluation_of`: `rope-yarn` is `rope` under rope_scaling=yarn), that PE with the same
    modifiers (which may refuse it). A one-line CheError where the setting has no such PE for `pe`."""
    if config is None:
        return pe
    unset = {f.name: f.metadata.get("absent") for f in dataclasses.fields(config)}  # each setting's "off" value
    for setting in dict.fromkeys(v.evaluation_of[1] for v in evaluation_variants()):
        value = getattr(config, setting)
        if value == unset[setting]:
            continue
        found = evaluation_variants(setting, value)
        for variant in found:
            if variant.evaluation_of[0] == pe.base.name:
                try:
                    return read(canonical(pe.prefixes, variant, pe.suffixes), config)
                except CheError as exc:
                    raise CheError(f"{setting}={echo(str(value))} on '{echo(pe.name)}': {exc}") from None
        applies = ", ".join(f"{v.evaluation_of[0]} (as {v.name})" for v in found)
        raise CheError(f"{setting}={echo(str(value))} applies to {applies or 'no PE'}, not to '{echo(pe.name)}'")
    return pe


def canonical(prefixes, base: type, suffixes) -> str:
    words = [m.prefix for m in prefixes]
    last = prefixes[-1] if prefixes else None
    if last is not None and last.alone and base.name == last.alone_base:
        words[-1] = last.alone  # `fox`, not `fox-none`
        return "".join(words) + "".join(m.suffix for m in suffixes)
    return "".join(words) + base.name + "".join(m.suffix for m in suffixes)


def canonical_name(name: str) -> str:
    """`dape-kerple` -> `dape-kerple-log`; raises CheError for an unknown name."""
    return read(name).name


def names() -> list[str]:
    """Every valid PE name (without aliases) with the modifiers that declare themselves `listed`
    (`rand-`, `dape-`, `dape2-`), and the modifiers' names of their own (`fox`); the others combine
    further, and every name takes the suffixes (`che pes`)."""
    prefixes, _ = modifiers()
    listed = sorted({m.position for m in prefixes if m.listed}, reverse=True)  # innermost first
    found, alone = [], []
    for entry in PES.entries():
        base = entry.obj
        variants = [([], base.name)]
        for position in listed:
            variants += [([m, *inner], m.prefix + text) for m in prefixes if m.listed and m.position == position
                         for inner, text in variants if not m.refuses(base, inner, None)]
        found += [text for _, text in variants]
        alone += [m.alone for m in prefixes if m.alone and m.alone_base == base.name]
    return found + alone


def reads_setting(name: str, setting: str) -> bool:
    """Whether a PE name found in results reads the setting (its base, where registered, or a modifier)."""
    prefixes, base, suffixes = split(name)
    parts = [*prefixes, *suffixes] + ([base_classes()[base]] if base in base_classes() else [])
    return any(setting in part.settings for part in parts)


def read_by_some_pe(setting: str) -> bool:
    """Whether the setting belongs to some PE or modifier (which declares it), not to every model."""
    return any(setting in entry.obj.settings for registry in (PES, PE_MODIFIERS) for entry in registry.entries())


def sort_key_of(name: str) -> tuple:
    """Where a PE's column sorts, for any name found in results: a name of a PE that is not
    registered (a plugin's, not loaded) sorts after the registered ones of its group, by name."""
    try:
        return read(name).sort_key()
    except CheError:
        prefixes, base, suffixes = split(name)
        return sort_key(prefixes, math.inf, base, any(m.name == "causal" for m in suffixes))
