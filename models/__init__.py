"""The shared CHE transformer and the positional-encoding zoo (imported as `che.models`)."""

from che.models.transformer import ModelConfig, Transformer

__all__ = ["ModelConfig", "Transformer"]
