"""che: the Chomsky Hierarchy Evaluation of positional encodings for length generalization."""

__version__ = "0.2.0"

from che.errors import CheError
from che.registry import register_pe, register_task

__all__ = ["CheError", "register_pe", "register_task", "__version__"]
