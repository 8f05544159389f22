"""none (NoPE): no positional information; only token content tells positions apart."""

from che.models.positional.base import AttentionPE
from che.registry import register_pe


@register_pe
class NoPE(AttentionPE):
    """No positional encoding. In an encoder without a causal mask the model is permutation
    equivariant, so only the empty output tokens' content (all identical) and the inputs' bag of
    tokens are visible."""

    name = "none"
    family = "none"
    column = 0
    bias_from_positions_only = True  # no bias at all: DAPE over it is f(S)
    jax_reference = {}
    bidirectional_form = "native: nothing tells positions apart (the encoder is permutation equivariant)"
    causal_form = "Kazemnejad et al.'s NoPE: the causal mask alone tells positions apart"
    citation = "Kazemnejad et al. 2023 (NoPE); Delétang et al. 2023 (CHE baseline)"
    position_based = False
