"""The CHE tasks, one module each, grouped by Chomsky level (imported as `che.tasks`).

Each task is one class behind the base class `Task`; the built-in ones are registered as entry points
(`pyproject.toml`, group `che.tasks`), which `che.registry.TASKS` loads, and each declares its row in
the CHE papers' tables (`Task.order`).
"""

from che.tasks.base import LEVELS, Batch, Task

__all__ = ["LEVELS", "Batch", "Task"]
