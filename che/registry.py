"""Registries of tasks, positional encodings and PE modifiers, and plugin loading.

Every registration is declared where tools can see it: the built-in tasks, PEs and PE modifiers are
entry points of che's own distribution (`pyproject.toml`, groups `che.tasks`,
`che.positional_encodings`, `che.pe_modifiers`, each `name = "module:Class"`), and plugins are found
in three ways:

- the same entry-point groups of other installed packages (an entry point names a module, or a
  class in it; a class not yet registered is registered under its `name`);
- `--plugin PATH_OR_MODULE` on the command line (a `.py` file or an importable module);
- the environment variable `CHE_PLUGINS` (the same, separated by the OS path separator).

A registry loads its entry points the first time it is asked for a name (lazily: importing che
registers nothing). A plugin module registers its classes with the `@register_task` / `@register_pe`
decorators (che's own modules carry them too, so that any of them reads as a plugin).

Built-in names win a clash, with a warning. A plugin that fails to import is reported by name: at
once when it was asked for with `--plugin`, and otherwise (entry points, `CHE_PLUGINS`) as a warning
and in the error of a lookup that fails, so that it does not break commands that never use it.

Every name is checked when it is registered (`check_name`): it becomes a folder of every results
folder and a word of tables and messages, so it has one safe form, and a PE's name must not read as
a modified PE's (`dape-x`, `x+causal`: the words the registered modifiers declare).
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import importlib.util
import math
import os
import re
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from che.errors import CheError, unknown_name_error

BUILTIN = "builtin"

# A task's or PE's name is a path component of results (`<results>/<task>/<pe>/`), a table column and
# a word in messages: no separators, dots, spaces, capitals or markup.
NAME_FORM = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
NAME_RULE = "1 to 40 lower-case letters, digits, '-' and '_', starting with a letter or digit"
DISTRIBUTION = "che-bench"  # entry points of this distribution are the built-ins


class CheWarning(UserWarning):
    """A problem worth one line on stderr that does not stop the command."""


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # "builtin", or the plugin it came from


class Registry:
    """Name -> object, filled by built-in modules, entry points and plugin files."""

    def __init__(self, kind: str, entry_point_group: str, make: Callable[[Any], Any] = lambda cls: cls,
                 listed_by: str | None = None, reserved_words: Callable[[], tuple[tuple[str, ...], tuple[str, ...]]] | None = None,
                 order: str | None = None):
        self.kind = kind
        self.order = order  # the attribute each object declares its place in listings with (plugins last)
        self.reserved_words = reserved_words  # (prefixes, names) a name must not read as: the PE modifiers'
        self.listed_by = listed_by  # the command that lists the names
        self.entry_point_group = entry_point_group
        self._make = make  # turns a registered class into the stored object
        self._entries: dict[str, Entry] = {}
        self._loaded = False
        self.broken: dict[str, str] = {}  # plugin -> why it failed to load

    # -- registration -------------------------------------------------------------------------
    def register(self, cls: Any, name: str | None = None) -> Any:
        name = name or getattr(cls, "name", None)
        if not name:
            raise CheError(f"{self.kind} {cls!r} has no 'name' to register under")
        source = _current_source
        for word in [name, *getattr(cls, "aliases", ())]:
            self.check_name(word)
        existing = self._entries.get(name)
        if existing is not None and existing.obj is not cls and existing.source != source:
            if existing.source == BUILTIN:
                warnings.warn(f"plugin '{source}' defines {self.kind} '{name}', which is built in; "
                              f"the built-in one is used", CheWarning, stacklevel=3)
                return cls
            warnings.warn(f"{self.kind} '{name}' from plugin '{source}' replaces the one from "
                          f"plugin '{existing.source}'", CheWarning, stacklevel=3)
        self._entries[name] = Entry(name, self._make(cls), source)
        return cls

    def check_name(self, name: Any) -> None:
        """Refuse a name outside NAME_FORM, or one that reads as a modified PE."""
        problem = None
        if not isinstance(name, str) or not NAME_FORM.fullmatch(name):
            problem = f"a name is {NAME_RULE}"
        elif self.reserved_words is not None and _current_source != BUILTIN:  # built-ins: tests/test_plugins.py
            prefixes, names = self.reserved_words()
            if name in names or name.startswith(prefixes):
                problem = f"it would read as a modified {self.kind} (the modifiers: {', '.join([*prefixes, *names])})"
        if problem is not None:  # a plugin's loader names the plugin
            raise CheError(f"{self.kind} name {_shown(name)} is refused: {problem}")

    # -- lookup -------------------------------------------------------------------------------
    def get(self, name: str) -> Any:
        self.ensure_loaded()
        entry = self._entries.get(name)
        if entry is None:
            raise self.unknown(name, self._entries)
        return entry.obj

    def unknown(self, name: str, choices) -> CheError:
        """The unknown-name error, naming any plugin that failed to load (it may have defined it)."""
        err = unknown_name_error(self.kind, name, choices, listed_by=self.listed_by)
        if self.broken:
            failed = "; ".join(f"plugin '{p}' failed to load: {why}" for p, why in self.broken.items())
            err = CheError(f"{err} [{failed}]")
        return err

    def entries(self) -> list[Entry]:
        self.ensure_loaded()
        entries = list(self._entries.values())
        if self.order:
            entries.sort(key=lambda e: getattr(e.obj, self.order, math.inf))
        return entries

    def names(self) -> list[str]:
        return [e.name for e in self.entries()]

    def __contains__(self, name: str) -> bool:
        self.ensure_loaded()
        return name in self._entries

    # -- loading ------------------------------------------------------------------------------
    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        builtin = [ep for ep in _entry_points(self.entry_point_group) if _distribution(ep) == DISTRIBUTION]
        if not builtin:
            raise CheError(f"che's built-in {self.kind}s are not registered: its entry points are missing (che is "
                           f"not installed, or installed before they were declared); install it again: "
                           f"pip install -e . (or make setup)")
        with _source(BUILTIN):
            for ep in builtin:
                self.register(ep.load(), ep.name)
        for ep in plugin_entry_points(self.entry_point_group):
            label = f"{ep.name} ({ep.value})"
            try:
                with _source(ep.name):
                    obj = ep.load()
                    if isinstance(obj, type) and not any(e.obj is obj or getattr(e.obj, "__class__", None) is obj
                                                         for e in self._entries.values()):
                        self.register(obj, getattr(obj, "name", None) or ep.name)
            except Exception as exc:  # a broken plugin must not break the rest
                self._record_broken(label, exc)
        for spec in env_plugins():
            try:
                load_plugin(spec)
            except CheError as exc:
                self._record_broken(spec, exc.__cause__ or exc)

    def _record_broken(self, plugin: str, exc: BaseException) -> None:
        why = _why(exc)
        self.broken[plugin] = why
        warnings.warn(f"plugin '{plugin}' failed to load and is ignored: {why}", CheWarning, stacklevel=2)


def _shown(name: Any, limit: int = 60) -> str:
    """A name as a message quotes it: on one line (repr escapes newlines), cut when long."""
    text = repr(name)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(name) if isinstance(name, str) else '?'} characters)"


def _why(exc: BaseException) -> str:
    """Why a plugin failed to load: che's own refusal as it is, anything else with its type."""
    return str(exc) if isinstance(exc, CheError) else f"{type(exc).__name__}: {exc}"


# -- plugin modules -------------------------------------------------------------------------------
_current_source = BUILTIN
_loaded_plugins: dict[str, str] = {}  # spec as given -> canonical spec (absolute path or module)


@contextlib.contextmanager
def _source(name: str) -> Iterator[None]:
    global _current_source
    previous, _current_source = _current_source, name
    try:
        yield
    finally:
        _current_source = previous


def _entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    return list(importlib.metadata.entry_points(group=group))


def _distribution(ep: importlib.metadata.EntryPoint) -> str | None:
    return ep.dist.name if ep.dist is not None else None


def plugin_entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The entry points of a group that other installed packages declare (not che's built-ins)."""
    return [ep for ep in _entry_points(group) if _distribution(ep) != DISTRIBUTION]


def env_plugins() -> list[str]:
    return [s for s in os.environ.get("CHE_PLUGINS", "").split(os.pathsep) if s.strip()]


def _canonical(spec: str) -> str:
    path = Path(spec)
    if spec.endswith(".py") or path.exists():
        return str(path.resolve())
    return spec


def load_plugin(spec: str) -> None:
    """Import a plugin given as a `.py` path or a module name; its decorators register it."""
    canonical = _canonical(spec)
    if canonical in _loaded_plugins.values():
        return
    _ensure_builtins()  # so that a clash with a built-in name is seen as one
    try:
        with _source(spec):
            if canonical.endswith(".py") or Path(canonical).exists():
                path = Path(canonical)
                if not path.is_file():
                    raise FileNotFoundError(f"no such file: {spec}")
                module_name = f"che_plugin_{path.stem}_{abs(hash(canonical)) % 10**8}"
                module_spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(module_spec)
                sys.modules[module_name] = module
                module_spec.loader.exec_module(module)
            else:
                importlib.import_module(spec)
    except Exception as exc:
        raise CheError(f"plugin '{spec}' failed to load: {_why(exc)}") from exc
    _loaded_plugins[spec] = canonical


def load_plugins(specs: list[str] | None) -> None:
    for spec in specs or []:
        load_plugin(spec)


def loaded_plugins() -> list[str]:
    """Plugins loaded explicitly or from CHE_PLUGINS, as specs another process can load again."""
    return sorted(set(_loaded_plugins.values()))


def _ensure_builtins() -> None:
    for registry in (TASKS, PES, PE_MODIFIERS):
        registry.ensure_loaded()


def modifier_words() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(prefixes, names) that the registered PE modifiers add to a PE name (`dape-`, `fox`, ...)."""
    modifiers = [entry.obj for entry in PE_MODIFIERS.entries()]
    prefixes = tuple(m.prefix for m in modifiers if m.prefix)
    return prefixes, tuple(m.alone for m in modifiers if m.alone)


# -- the registries -------------------------------------------------------------------------------
TASKS = Registry("task", "che.tasks", make=lambda cls: cls(), listed_by="che tasks", order="order")
PES = Registry("positional encoding", "che.positional_encodings", listed_by="che pes", reserved_words=modifier_words,
               order="column")
PE_MODIFIERS = Registry("PE modifier", "che.pe_modifiers", listed_by="che pes", order="position")


def register_task(cls: type) -> type:
    """Class decorator: register a `che.tasks.Task` subclass under its `name`."""
    return TASKS.register(cls)


def register_pe(cls: type) -> type:
    """Class decorator: register a positional encoding class under its `name`."""
    return PES.register(cls)


def register_pe_modifier(cls: type) -> type:
    """Class decorator: register a PE modifier (a prefix such as `dape-`, or a suffix such as
    `+causal`) under its `name`."""
    return PE_MODIFIERS.register(cls)

