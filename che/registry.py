"""Registries of tasks and positional encodings, and plugin loading.

Built-ins register themselves with the `@register_task` / `@register_pe` decorators when their
modules are imported. Plugins are ordinary modules that use the same decorators; they are found in
three ways:

- the entry-point groups `che.tasks` and `che.positional_encodings` of installed packages (an entry
  point names a module, or a class in it; a class not yet registered is registered under its `name`);
- `--plugin PATH_OR_MODULE` on the command line (a `.py` file or an importable module);
- the environment variable `CHE_PLUGINS` (the same, separated by the OS path separator).

Built-in names win a clash, with a warning. A plugin that fails to import is reported by name: at
once when it was asked for with `--plugin`, and otherwise (entry points, `CHE_PLUGINS`) as a warning
and in the error of a lookup that fails, so that it does not break commands that never use it.

Every name is checked when it is registered (`check_name`): it becomes a folder of every results
folder and a word of tables and messages, so it has one safe form, and a PE's name must not read as
a modified PE's (`dape-x`, `x+causal`).
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.metadata
import importlib.util
import json
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
# The words of a PE name's modifiers (`che.models.positional` reads them): a registered PE must not be
# named like a modified one (`+causal` is outside NAME_FORM already).
RANDOM_PREFIX, DAPE_PREFIX, DAPE2_PREFIX, FOX_PREFIX, SSMAX_PREFIX = "rand-", "dape-", "dape2-", "fox-", "ssmax-"
MODIFIER_PREFIXES = (RANDOM_PREFIX, DAPE_PREFIX, DAPE2_PREFIX, FOX_PREFIX, SSMAX_PREFIX)
FOX = "fox"  # FoX alone: `fox-none`
CAUSAL_SUFFIX = "+causal"


class CheWarning(UserWarning):
    """A problem worth one line on stderr that does not stop the command."""


@dataclass(frozen=True)
class Entry:
    name: str
    obj: Any
    source: str  # "builtin", or the plugin it came from


class Registry:
    """Name -> object, filled by built-in modules, entry points and plugin files."""

    def __init__(self, kind: str, entry_point_group: str, builtin_module: str,
                 make: Callable[[Any], Any] = lambda cls: cls, listed_by: str | None = None,
                 reserved_prefixes: tuple[str, ...] = (), reserved_names: tuple[str, ...] = ()):
        self.kind = kind
        self.reserved_prefixes = reserved_prefixes  # words a name must not start with (the PE modifiers)
        self.reserved_names = reserved_names
        self.listed_by = listed_by  # the command that lists the names
        self.entry_point_group = entry_point_group
        self.builtin_module = builtin_module
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
        elif name in self.reserved_names or name.startswith(self.reserved_prefixes):
            modifiers = ", ".join([*self.reserved_prefixes, *self.reserved_names])
            problem = f"it would read as a modified {self.kind} (the modifiers: {modifiers})"
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
        return list(self._entries.values())

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
        with _source(BUILTIN):
            importlib.import_module(self.builtin_module)
        for ep in _entry_points(self.entry_point_group):
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
    for registry in (TASKS, PES):
        if not registry._loaded:
            with _source(BUILTIN):
                importlib.import_module(registry.builtin_module)


# -- the two registries ---------------------------------------------------------------------------
TASKS = Registry("task", "che.tasks", "che.tasks", make=lambda cls: cls(), listed_by="che tasks")
PES = Registry("positional encoding", "che.positional_encodings", "che.models.positional", listed_by="che pes",
               reserved_prefixes=MODIFIER_PREFIXES, reserved_names=(FOX,))


# How the PE zoo reads a PE name into the versions of the classes it builds ("dape-kerple" ->
# {"KerpleLog": 2, "dape": 1}). The zoo installs it when it is imported (the registry's builtin
# module), so that the core, which names runs, never imports the models.
pe_versions: Callable[[str], dict[str, int]] | None = None


@functools.lru_cache(maxsize=None)
def _implementation_versions(task: str, pe: str) -> str:
    task_cls = type(TASKS.get(task))
    PES.ensure_loaded()
    return json.dumps({"task": {task_cls.name: getattr(task_cls, "version", 1)}, "pe": pe_versions(pe)})


def implementation_versions(task: str, pe: str) -> dict:
    """The versions of the code a run of `task` x `pe` uses, part of its identity:
    {"task": {name: version}, "pe": {class name: version, ...}}."""
    return json.loads(_implementation_versions(task, pe))


def register_task(cls: type) -> type:
    """Class decorator: register a `che.tasks.Task` subclass under its `name`."""
    return TASKS.register(cls)


def register_pe(cls: type) -> type:
    """Class decorator: register a positional encoding class under its `name`."""
    return PES.register(cls)

