"""che: the Chomsky Hierarchy Evaluation of positional encodings for length generalization.

The Python API (the `che` command is a thin layer over it; the functions are in che/api.py):

    import che
    result = che.run("reverse_string", "dape-kerple", preset="smoke")   # train, evaluate, store
    runs = che.load_results("results/runs")                           # one row per run (pandas)
    board = che.leaderboard(runs, agg="mean")                          # tasks x PEs
    table = che.compare(runs, "dape-kerple-log", "kerple-log")         # per task, with p-values
"""

from che.api import compare, leaderboard, load_results, protocols, run
from che.errors import CheError
from che.registry import register_pe, register_task
from che.version import __version__

__all__ = ["CheError", "register_pe", "register_task", "__version__", "run", "load_results", "leaderboard",
           "protocols", "compare"]
