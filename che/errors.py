"""User-facing errors: the CLI prints them as one line on stderr and exits with code 2."""

import difflib
import re
from collections.abc import Iterable

LISTED_UP_TO = 20  # longer lists of choices (the 66 PE names) are named by the command that lists them
ECHOED_UP_TO = 60  # characters of the user's input that a message repeats: a mistyped name, not a pasted file


class CheError(Exception):
    """A problem with the user's input or data, reported without a traceback."""


def echo(text) -> str:
    """What the user typed, as a message repeats it: whole up to ECHOED_UP_TO characters, else its
    beginning and an ellipsis (a 10,000-character name makes a one-line error, not a page)."""
    text = str(text)
    return text if len(text) <= ECHOED_UP_TO else text[:ECHOED_UP_TO - 3] + "..."


def echo_words(message: str) -> str:
    """Another library's message (click's usage errors), each word of it longer than ECHOED_UP_TO
    characters (what the user typed) shortened as `echo` does."""
    return re.sub(rf"\S{{{ECHOED_UP_TO + 1},}}", lambda match: echo(match.group()), message)


def closest(name: str, choices: Iterable[str], n: int = 3) -> list[str]:
    """The choices closest to `name`, ignoring case ('DAPE-FIRE' finds 'dape-fire')."""
    by_lower: dict[str, str] = {}
    for choice in choices:
        by_lower.setdefault(choice.lower(), choice)
    matches = difflib.get_close_matches(name.lower(), list(by_lower), n=n, cutoff=0.6)
    return [by_lower[m] for m in matches]


def unknown_name_error(kind: str, name: str, choices: Iterable[str], listed_by: str | None = None) -> CheError:
    """`unknown task 'revers_string'; did you mean 'reverse_string'? (choices: ...)`. Long lists of
    choices are not printed: `listed_by` names the command that lists them (`che pes`)."""
    choices = sorted(choices)
    close = closest(name, choices)
    hint = "; did you mean " + " or ".join(f"'{c}'" for c in close) + "?" if close else ""
    if len(choices) <= LISTED_UP_TO or listed_by is None:
        where = f"choices: {', '.join(choices)}"
    else:
        where = f"{len(choices)} choices: `{listed_by}` lists them"
    return CheError(f"unknown {kind} '{echo(name)}'{hint} ({where})")


def check_range(what: str, value, low, high=None) -> None:
    """`value` in [low, high] (or at least `low`), else a one-line CheError naming `what`."""
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise CheError(f"{what} must be {bound}, got {value}")
