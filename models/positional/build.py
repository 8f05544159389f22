"""A PE name made into modules: what the model puts on its embeddings and in each attention layer.

`parse_pe(name, config)` reads the name (`che.pe_names`) and returns a `PEBuild`, which makes a fresh
module per call: the base PE, wrapped by its prefix modifiers from the innermost out (`dape-`, then
`fox-`, then `ssmax-`), each told whether the model is causal.
"""

from __future__ import annotations

from dataclasses import dataclass

from che.models.positional.base import AbsolutePE, PositionalEncoding
from che.pe_names import PEName, evaluated_as, read


@dataclass(frozen=True)
class PEBuild:
    """A parsed PE name with the model's config: which modules it makes, and where they go."""

    pe: PEName
    config: object

    @property
    def name(self) -> str:
        return self.pe.name

    @property
    def cls(self) -> type:
        return self.pe.base

    @property
    def randomized(self) -> bool:
        return self.pe.randomized

    @property
    def causal(self) -> bool:
        return self.pe.causal

    @property
    def acts_on_embeddings(self) -> bool:
        """Only on the token embeddings (absolute PEs; every modifier that acts in attention refuses
        them, and so do schedules): no PE module in attention."""
        return not self.pe.layers and issubclass(self.cls, AbsolutePE)

    @property
    def on_embeddings(self) -> bool:
        return not self.pe.layers and (self.acts_on_embeddings or getattr(self.cls, "embedding", None) is not None)

    @property
    def in_attention(self) -> bool:
        return not self.acts_on_embeddings

    @property
    def uses_segments(self) -> bool:
        return not self.pe.layers and self.cls.uses_segments

    def layer(self, index: int) -> PEBuild:
        """The PEBuild of layer `index` (a layer schedule's PE there; this one otherwise)."""
        return PEBuild(self.pe.layer(index), self.config) if self.pe.layers else self

    def make(self, layer: int = 0) -> PositionalEncoding:
        """A fresh PE module for layer `layer` (the model makes one per layer for attention PEs)."""
        if self.pe.layers:
            return self.layer(layer).make()
        module = self.cls(self.config, randomized=self.randomized)
        for modifier in reversed(self.pe.prefixes):
            module = modifier.wrap(module, self.config, self.causal)
        for part in module.modules():
            if isinstance(part, PositionalEncoding):
                part.causal = self.causal
        return module

    def make_embedding(self):
        """The module on the token embeddings: the absolute PE, or a PE's embedding part (BiPE)."""
        return self.make() if self.acts_on_embeddings else self.cls.embedding(self.config)

    def parts(self) -> list[type]:
        """The base and every modifier, the classes whose specs describe this PE."""
        return [self.cls, *self.pe.modifiers]

    def layers(self) -> list[PEBuild]:
        """The PE of each layer of the model (`config.n_layers`)."""
        return [self.layer(index) for index in range(self.config.n_layers)]

    def memory_per_pair(self, device_type: str = "cpu") -> int:
        """float32 numbers per (query, key) pair of an example that the PE holds beyond attention's own
        (in the layer that holds most: one layer computes at a time)."""
        if self.pe.layers:
            return max(layer.memory_per_pair(device_type) for layer in self.layers())
        return sum(part.memory_per_pair(self.config, device_type) for part in self.parts())

    def flops_per_pair(self) -> float:
        """FLOPs per (query, key) pair, example and layer that the PE adds to a forward pass (the mean
        over the layers)."""
        if self.pe.layers:
            return sum(layer.flops_per_pair() for layer in self.layers()) / self.config.n_layers
        return sum(part.flops_per_pair(self.config) for part in self.parts())


def parse_pe(name: str, config) -> PEBuild:
    """The PEBuild of a PE name (`config`: the model's ModelConfig, or None to read the name only),
    as the config evaluates it (a `rope` model under rope_scaling=yarn computes as `rope-yarn`)."""
    return PEBuild(evaluated_as(read(name, config), config), config)


def parameter_counts(build: PEBuild) -> dict[str, int]:
    """What one run of a model with this PE trains for it, by part, per module ({"fire": n, "dape": n},
    modifiers outermost first); the model has one module (absolute PEs) or one per layer (attention
    PEs), and BiPE also one embedding table (`embedding_parameters`)."""
    module = build.make() if build.in_attention else build.make_embedding()
    counts = {}
    for modifier in build.pe.prefixes:  # the wrappers, outermost first (rand- wraps nothing)
        if hasattr(module, "base") and isinstance(module, modifier):
            counts[modifier.name] = (sum(p.numel() for p in module.parameters())
                                     - sum(p.numel() for p in module.base.parameters()))
            module = module.base
    return {build.cls.name: sum(p.numel() for p in module.parameters())} | counts


def embedding_parameters(build: PEBuild) -> int:
    """Parameters of the embedding part of a PE that also acts in attention (BiPE's table)."""
    if not (build.on_embeddings and build.in_attention):
        return 0
    return sum(p.numel() for p in build.make_embedding().parameters())


def parameters_text(build: PEBuild) -> str:
    """'9,690 = 5 layers x (330 fire + 1,608 dape)': the parameters a model of this PE trains for
    it (`build.config`'s size), as a run counts them (a schedule's, layer by layer)."""
    if build.pe.layers:
        per_layer = [sum(parameter_counts(layer).values()) for layer in build.layers()]
        total = sum(per_layer)
        return f"{total:,}" + (" = " + " + ".join(f"{n:,}" for n in per_layer) + " (by layer)" if total else "")
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
