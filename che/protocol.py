"""Protocols: runs grouped by everything that determines a result but the task, PE, seed and lr.

A leaderboard cell and a comparison aggregate over seeds and learning rates only, so runs of
different protocols (a smoke run and a `cpu` run of one task and PE) are never mixed: `protocols`
groups a table of runs, `select_protocol` picks one, and `plumbing_check` says whether the runs are
smoke runs, which measure nothing.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from che.errors import CheError, unknown_name_error

# A protocol is everything that determines a run's result but its task, PE, seed and learning rate:
# the settings a cell's runs must share (they aggregate over seeds and learning rates). Each setting
# says whether it is part of it (`che.config.setting`'s `protocol`).
# What a protocol's description names first.
HEADLINE = (("steps", "{} steps"), ("batch_size", "batch {}"), ("train_length", "train 1..{}"),
            ("max_test_length", "test 1..{}"), ("d_model", "d_model {}"))


@dataclass
class Protocol:
    label: str            # the preset's name, made unique ("cpu", "smoke", "cpu-2")
    settings: dict        # the settings its runs share
    differs: list[str]    # the settings in which it differs from the other protocols present
    runs: pd.DataFrame

    def describe(self) -> str:
        parts = [fmt.format(self.settings[key]) for key, fmt in HEADLINE if key in self.settings]
        parts += [f"{key} {_setting_text(self.settings[key])}" for key in self.differs
                  if key not in dict(HEADLINE)]
        return f"{self.label}: {', '.join(parts)}"


def _setting_text(value) -> str:
    value = value.item() if hasattr(value, "item") else value  # numpy scalars from pandas
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True)


def protocol_columns(runs: pd.DataFrame) -> list[str]:
    from che.config import protocol_settings

    return [f for f in protocol_settings() if f in runs.columns]


def current(runs: pd.DataFrame) -> pd.DataFrame:
    """The runs made by this code's implementations of their tasks and PEs: a result of an earlier
    one (`che.results.outdated`: a changed causal form, say) never shares a table with today's."""
    return runs[~runs["outdated"].astype(bool)] if "outdated" in runs else runs


def outdated_note(runs: pd.DataFrame) -> str | None:
    """A line naming the results of earlier implementations that tables and comparisons leave out."""
    if "outdated" not in runs or not runs["outdated"].any():
        return None
    old = runs[runs["outdated"].astype(bool)]
    counts = ", ".join(f"{task} x {pe}: {n}" for (task, pe), n in old.groupby(["task", "pe"]).size().items())
    return (f"note: {len(old)} result(s) made by an earlier implementation of their task or PE are left out "
            f"({counts}); run them again with this version (their run ids differ)")


def protocols(runs: pd.DataFrame) -> list[Protocol]:
    """The protocols of a table of runs (those of this code's implementations: `current`), the one
    with the most runs first."""
    runs = current(runs)
    if runs.empty:
        raise CheError("every result here was made by an earlier implementation of its task or PE; run them again")
    columns = protocol_columns(runs)
    keys = runs[columns].apply(lambda row: json.dumps([_setting_text(v) for v in row]), axis=1)
    groups = sorted(runs.groupby(keys, sort=False), key=lambda item: -len(item[1]))
    found, labels = [], {}
    for _, group in groups:
        first = group.iloc[0]
        settings = {column: first[column].item() if hasattr(first[column], "item") else first[column]
                    for column in columns}
        preset = str(group["preset"].mode().iloc[0]) if "preset" in group else "custom"
        labels[preset] = labels.get(preset, 0) + 1
        label = preset if labels[preset] == 1 else f"{preset}-{labels[preset]}"
        found.append(Protocol(label, settings, [], group))
    for protocol in found:
        protocol.differs = [c for c in columns if any(_setting_text(protocol.settings[c]) != _setting_text(
            other.settings[c]) for other in found)]
    return found


def mixed_protocols_line(found: list[Protocol]) -> str:
    differs = sorted({key for p in found for key in p.differs}, key=lambda key: protocol_columns_order(key))
    return (f"these results hold {len(found)} protocols, which differ in {', '.join(differs)}: one table each, "
            f"never mixed in a cell ({'; '.join(p.describe() for p in found)}); --protocol NAME shows one")


def protocol_columns_order(key: str) -> int:
    from che.config import SETTINGS

    names = list(SETTINGS)
    return names.index(key) if key in names else len(names)


ANY_PROTOCOL = "any"  # all runs, whatever their protocols: a deliberate comparison across them
SMOKE = "smoke"


def plumbing_check(runs: pd.DataFrame) -> bool:
    """Whether runs are smoke runs (the smoke preset, at most its steps): they check that everything
    runs, and every PE scores about chance, so a table of them measures nothing."""
    from che.config import PRESETS

    return bool("preset" in runs and (runs["preset"] == SMOKE).all()
                and (runs["steps"] <= PRESETS[SMOKE]["steps"]).all())


PLUMBING_TITLE = "(smoke runs: a plumbing check, not a measurement)"
PLUMBING = "smoke runs, which train too few steps to learn: a plumbing check, not a measurement"


def select_protocol(runs: pd.DataFrame, label: str | None) -> Protocol:
    """One protocol of the runs: `label`, or the only one there is (else a CheError naming them);
    `ANY_PROTOCOL` takes every run as one protocol, earlier implementations' too (to compare two
    versions of the code, say)."""
    if label == ANY_PROTOCOL:
        return Protocol(ANY_PROTOCOL, {}, [], runs)
    found = protocols(runs)
    if label is None:
        if len(found) > 1:
            raise CheError(mixed_protocols_line(found).replace("one table each, never mixed in a cell",
                                                               "a leaderboard takes one")
                           .replace("--protocol NAME shows one", "choose one with --protocol NAME"))
        return found[0]
    for protocol in found:
        if protocol.label == label:
            return protocol
    raise unknown_name_error("protocol", label, [p.label for p in found])
