"""cycle_navigation (regular): where does a walk on a 5-cycle end?"""

import torch

from che.registry import register_task
from che.tasks.base import Task

CYCLE_LENGTH = 5


def targets_for(moves: torch.Tensor) -> torch.Tensor:
    """[B, N] tokens in {0,1,2} -> [B, 1] final position: sum(t - 1) mod 5 (torch % is non-negative)."""
    return (moves - 1).sum(dim=1, keepdim=True) % CYCLE_LENGTH


@register_task
class CycleNavigation(Task):
    """N i.i.d. tokens in {0, 1, 2}; token t moves the walker by t - 1 on a cycle of 5 states.

    The walk starts at state 0 and the label is the final state, sum(t - 1) mod 5.
    Example: `1 0 1 0 1` = moves 0,-1,0,-1,0 -> -2 = 3 (mod 5); `0 -> 4`.

    Note: token 0 is a move LEFT (-1), 1 is STAY and 2 is RIGHT (+1). The reference docstring's
    "0 stay, 1 right, -1 left" describes the moves t - 1, not the token ids.
    """

    name = "cycle_navigation"
    level, order = "regular", 4
    input_size = 3
    output_size = CYCLE_LENGTH
    input_symbols = ("L", "S", "R")  # left, stay, right
    output_symbols = ("0", "1", "2", "3", "4")

    def _sample(self, batch_size, length, generator):
        moves = torch.randint(0, 3, (batch_size, length), generator=generator)
        return moves, targets_for(moves)
