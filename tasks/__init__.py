"""The CHE tasks, one module each, grouped by Chomsky level (imported as `che.tasks`).

Importing this package registers the 15 built-in tasks; `che.registry.TASKS` holds them.
"""

from che.tasks.base import LEVELS, Batch, Task

# Importing a task module registers its task (the @register_task decorator).
from che.tasks.regular import parity_check  # noqa: F401,E402

__all__ = ["LEVELS", "Batch", "Task"]
