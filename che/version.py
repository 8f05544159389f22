"""The version of che (distribution che-bench)."""

__version__ = "0.3.0"
