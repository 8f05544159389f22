"""The positional-encoding zoo: one module per family, each PE one class that declares its spec.

The interface is in `base.py` (`AbsolutePE`, `AttentionPE`, `BiasPE`; the modifiers' `PEModifier`),
the names are read by `che.pe_names`, and `build.py` makes modules from them. The built-in PEs and
modifiers are registered as entry points (`pyproject.toml`; `che.registry` loads them).
"""

from che.models.positional.base import AbsolutePE, AttentionPE, BiasPE, PEModifier, PositionalEncoding
from che.models.positional.build import PEBuild, parse_pe
from che.pe_names import base_classes, canonical_name as canonical_pe_name, names as pe_names

__all__ = ["AbsolutePE", "AttentionPE", "BiasPE", "PEModifier", "PositionalEncoding", "PEBuild", "parse_pe",
           "base_classes", "canonical_pe_name", "pe_names"]
