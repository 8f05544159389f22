"""The shared CHE transformer and the positional-encoding zoo (imported as `che.models`); the
model's configuration is `che.config.ModelConfig`."""

from che.models.transformer import Transformer

__all__ = ["Transformer"]
