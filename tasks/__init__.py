"""The CHE tasks, one module each, grouped by Chomsky level (imported as `che.tasks`).

Importing this package registers the 15 built-in tasks; `che.registry.TASKS` holds them.
"""

from che.tasks.base import LEVELS, Batch, Task

# Importing a task module registers its task (the @register_task decorator). The order is the
# CHE reference's TASK_LEVELS order, which is the order the registry lists them in.
# isort: off
from che.tasks.regular import (  # noqa: F401,E402
    even_pairs, modular_arithmetic, parity_check, cycle_navigation)
from che.tasks.dcf import (  # noqa: F401,E402
    stack_manipulation, reverse_string, modular_arithmetic_brackets, solve_equation)
from che.tasks.cs import (  # noqa: F401,E402
    duplicate_string, missing_duplicate_string, odds_first, binary_addition, binary_multiplication,
    compute_sqrt, bucket_sort)
# isort: on

__all__ = ["LEVELS", "Batch", "Task"]
