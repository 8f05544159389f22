"""stack_manipulation (dcf): apply POP/PUSH actions to a given stack."""

import torch

from che.registry import register_task
from che.tasks.base import Task

POP, PUSH0, PUSH1 = 2, 3, 4   # input ids of the actions; 0 and 1 are stack symbols
TERMINATOR = 2                # output id after the final stack


def targets_for(tokens: torch.Tensor) -> torch.Tensor:
    """[B, N] inputs `bits... actions...` -> [B, N+1]: final stack top to bottom, 2, then 0s.

    Vectorised without simulating the stack:
    - the height after each action is the walk `x = prefix + cumsum(+1 push / -1 pop)` reflected at
      0 (POP on an empty stack is ignored): `h = x - min(0, running min of x)`;
    - the symbol at level j of the final stack was written by the LAST push that reached level j
      (to be back at level j after dropping below it needs such a push); with no such push it is
      the initial symbol j, which then was never popped.
    """
    batch_size, length = tokens.shape
    pos = torch.arange(length)
    is_action = tokens >= POP
    prefix = (~is_action).sum(dim=1, keepdim=True)       # initial stack size (the bits come first)
    is_push = tokens >= PUSH0
    step = 2 * is_push.long() - is_action.long()      # +1 push, -1 pop, 0 stack symbol
    walk = prefix + step.cumsum(dim=1)
    height = walk - walk.cummin(dim=1).values.clamp(max=0)
    final_height = height[:, -1:]

    # Level j (1..N) of the final stack; column 0 is a dump for positions that are not pushes.
    last_push = torch.full((batch_size, length + 1), -1, dtype=torch.long)
    last_push.scatter_reduce_(1, torch.where(is_push, height, 0), torch.where(is_push, pos, -1),
                              reduce="amax", include_self=True)
    pushed_symbol = tokens.gather(1, last_push.clamp(min=0)) - PUSH0
    initial_symbol = torch.cat([torch.zeros(batch_size, 1, dtype=torch.long), tokens], dim=1)
    level_symbol = torch.where(last_push >= 0, pushed_symbol, initial_symbol)

    out_pos = torch.arange(length + 1)
    top_down = level_symbol.gather(1, (final_height - out_pos).clamp(min=0))
    return torch.where(out_pos < final_height, top_down,
                       torch.where(out_pos == final_height, TERMINATOR, 0))


@register_task
class StackManipulation(Task):
    """An initial stack (bits, bottom to top) then actions; output the final stack top to bottom.

    Input ids: 0, 1 stack symbols; 2 = POP, 3 = PUSH 0, 4 = PUSH 1. For N >= 2 the prefix length
    (initial stack size) is U{1..N-1}, its tokens are i.i.d. bits and the remaining N - prefix >= 1
    tokens are i.i.d. actions U{2,3,4}. Actions apply left to right; POP on an empty stack is
    ignored. Output: the final stack top to bottom, the terminator 2, then 0s up to N+1 tokens; the
    accuracy mask covers positions up to and including the terminator (the loss covers all).

    Example: `0 1 PUSH1 POP POP` (0 1 4 2 2): [0,1] -> [0,1,1] -> [0,1] -> [0], so the
    output is `0 2 0 0 0 0`.

    Notes: N = 1 is a single random bit with no actions and output `[bit, 2]`.
    """

    name = "stack_manipulation"
    level, order = "dcf", 5
    input_size = 5
    output_size = 3
    classification = False
    output_length_rule = "N+1"
    terminator = TERMINATOR
    input_symbols = ("0", "1", "POP", "PUSH0", "PUSH1")
    output_symbols = ("0", "1", "$")

    def output_length(self, length):
        return length + 1


    def _sample(self, batch_size, length, generator):
        if length == 1:
            prefix = torch.ones(batch_size, 1, dtype=torch.long)
        else:
            prefix = torch.randint(1, length, (batch_size, 1), generator=generator)
        bits = torch.randint(0, 2, (batch_size, length), generator=generator)
        actions = torch.randint(POP, PUSH1 + 1, (batch_size, length), generator=generator)
        tokens = torch.where(torch.arange(length) < prefix, bits, actions)
        return tokens, targets_for(tokens)
