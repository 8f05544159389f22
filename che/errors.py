"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""

import difflib
from collections.abc import Iterable


class CheError(Exception):
    """A problem with the user's input or data, reported without a traceback."""


def unknown_name_error(kind: str, name: str, choices: Iterable[str]) -> CheError:
    """`unknown task 'revers_string'; did you mean 'reverse_string'? (choices: ...)`."""
    choices = sorted(choices)
    close = difflib.get_close_matches(name, choices, n=3, cutoff=0.6)
    hint = ""
    if close:
        hint = "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?"
    return CheError(f"unknown {kind} '{name}'{hint} (choices: {', '.join(choices)})")
