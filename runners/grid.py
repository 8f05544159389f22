"""What a sweep runs: a grid of tasks x PEs x learning rates x seeds, from command-line options or a
TOML file (a sweep file, or `che run --config`), every name and value checked.

A sweep file has the keys `description`, `preset`, `tasks`, `pes`, `seeds`, `lrs`, `results`,
`plugins`, an `[overrides]` table of settings (`che settings`) and a `[slurm]` table for the slurm
executor (`che.runners.executors.slurm.SlurmOptions`). Options given on the command line win.
Shipped sweep files live in `runners/sweeps/` and run by name (`che sweep cpu_leaderboard`).
"""

from __future__ import annotations

import importlib.resources
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from che.config import AXES, DEFAULT_PRESET, PRESETS, SETTINGS, RunConfig, make_config, typed_value
from che.errors import CheError, echo, unknown_name_error
from che.results import DEFAULT_RESULTS

SPEC_KEYS = ("description", "preset", "tasks", "pes", "seeds", "lrs", "results", "plugins", "overrides", "slurm")
MAX_SEEDS, MAX_RUNS = 10_000, 100_000  # bounds on what a grid may ask for (and a dry run list)


@dataclass
class Grid:
    """What a sweep runs: every task x PE x learning rate x seed, with the preset and overrides."""

    preset: str
    tasks: list[str]
    pes: list[str]
    seeds: list[int]
    lrs: list[float | None]          # None: the preset's learning rate
    results: Path
    overrides: dict = field(default_factory=dict)
    plugins: list[str] = field(default_factory=list)
    slurm: dict = field(default_factory=dict)   # the [slurm] table (checked by the slurm executor)

    def configs(self) -> list[RunConfig]:
        """One validated RunConfig per distinct run, in grid order (task, PE, lr, seed)."""
        from che.registry import TASKS

        configs, seen = [], set()
        for task in self.tasks:
            for pe in self.pes:
                for lr in self.lrs:
                    for seed in self.seeds:
                        config = make_config(task, pe, self.preset, seed=seed, lr=lr, **self.overrides)
                        config.validate_for(TASKS.get(task))
                        if config.run_id not in seen:  # the run id covers task and PE too
                            seen.add(config.run_id)
                            configs.append(config)
        return configs

    def describe(self) -> str:
        lrs = ", ".join("preset" if lr is None else f"{lr:g}" for lr in self.lrs)
        return (f"{len(self.tasks)} task(s) x {len(self.pes)} PE(s) x {len(self.lrs)} lr ({lrs}) x "
                f"{len(self.seeds)} seed(s), preset {self.preset}")


def shipped_sweeps() -> list[str]:
    """The names of the sweep files that ship with che (`che sweep NAME`)."""
    folder = importlib.resources.files("che.runners") / "sweeps"
    if not folder.is_dir():
        return []
    return sorted(p.name[:-len(".toml")] for p in folder.iterdir() if p.name.endswith(".toml"))


def read_spec(spec: str, what: str = "sweep file") -> tuple[str, dict]:
    """(label, values) of a sweep file given as a path or as the name of a shipped sweep (`what`
    names it in messages: a `che run --config` file is a "config file")."""
    path = Path(spec)
    if path.is_file():
        label, text = str(path), _read_text(path, what)
    elif what != "sweep file":
        raise CheError(f"{what} '{spec}' does not exist")
    elif spec.endswith(".toml") or os.sep in spec:
        raise CheError(f"sweep file '{spec}' does not exist (shipped sweeps: {', '.join(shipped_sweeps())})")
    elif spec in shipped_sweeps():
        label = spec
        text = (importlib.resources.files("che.runners") / "sweeps" / f"{spec}.toml").read_text()
    else:
        raise unknown_name_error("sweep", spec, shipped_sweeps())
    try:
        values = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CheError(f"{label}: not valid TOML: {exc}") from None
    unknown = [key for key in values if key not in SPEC_KEYS]
    if unknown:
        raise CheError(f"{label}: {unknown_name_error('sweep-file key', unknown[0], SPEC_KEYS)}")
    return label, values


def _read_text(path: Path, what: str = "sweep file") -> str:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise CheError(f"cannot read {what} '{path}': {exc}") from None


def build_grid(values: dict | None = None, label: str = "command line", *, tasks=None, pes=None,
               seeds=None, lrs=None, preset=None, results=None, plugins=None, require_tasks: str = "--tasks all",
               require_pes: str = "--pes", options: dict[str, str] | None = None, **overrides) -> Grid:
    """A Grid from a sweep file's values, with the options given on the command line winning.

    Command-line values are strings as typed (`"a,b"`, `"3"`); file values are TOML lists, numbers
    or strings. Keyword `overrides` with a value other than None override RunConfig fields.
    Plugins are loaded here, so that plugin tasks and PEs are known when names are checked.
    `options` names the command's options in messages where they are not `--<key>` (che run's
    `--task` and `--pe`).
    """
    from che.registry import load_plugins

    values = dict(values or {})
    where = f"{label}: " if label != "command line" else ""

    def pick(name, given):
        option = (options or {}).get(name, "--" + name)
        return (given, option) if given is not None else (values.get(name), f"{where}{name}")

    plugin_specs = list(_string_list(values.get("plugins", []), f"{where}plugins")) + list(plugins or [])
    load_plugins(plugin_specs)

    preset_value, what = pick("preset", preset)
    preset_value = DEFAULT_PRESET if preset_value is None else preset_value
    if not isinstance(preset_value, str) or preset_value not in PRESETS:
        raise CheError(f"{what}: {unknown_name_error('preset', str(preset_value), PRESETS)}")

    task_value, what = pick("tasks", tasks)
    if task_value is None:
        raise CheError(f"no task: pass {require_tasks} (or give `tasks` in a sweep or config file)")
    pe_value, what_pe = pick("pes", pes)
    if pe_value is None:
        raise CheError(f"no positional encoding: pass {require_pes} (or give `pes` in a sweep or config file)")
    given_by_set = {}  # --set seed=7: the one seed of a run, named as typed in messages
    for axis, key in (("seeds", "seed"), ("lrs", "lr")):
        if overrides.get(key) is not None:
            if (seeds if axis == "seeds" else lrs) is not None:
                raise CheError(f"give --{axis} or --set {key}=..., not both")
            given_by_set[axis] = f"--set {key}"
            if axis == "seeds":
                seeds = [overrides.pop(key)]
            else:
                lrs = [overrides.pop(key)]
    seed_value, what_seed = pick("seeds", seeds)
    lr_value, what_lr = pick("lrs", lrs)
    what_seed, what_lr = given_by_set.get("seeds", what_seed), given_by_set.get("lrs", what_lr)
    results_value, what_results = pick("results", results)
    if results_value is not None and not isinstance(results_value, (str, Path)):
        raise CheError(f"{what_results} must be a folder path, got {echo(repr(results_value))}")

    file_overrides = values.get("overrides", {})
    if not isinstance(file_overrides, dict):
        raise CheError(f"{where}overrides must be a table of settings, got {file_overrides!r}")
    slurm = values.get("slurm", {})
    if not isinstance(slurm, dict):
        raise CheError(f"{where}slurm must be a table (partition, time, gpus_per_job, ...), got {slurm!r}")
    merged = dict(file_overrides)
    for key, value in overrides.items():
        if value is None:
            continue
        if key.startswith("slurm."):  # --set slurm.partition=gpu
            slurm = {**slurm, key.removeprefix("slurm."): value}
        else:
            merged[key] = value
    grid = Grid(
        preset=preset_value,
        tasks=parse_tasks(task_value, what),
        pes=parse_pes(pe_value, what_pe),
        seeds=parse_seeds(1 if seed_value is None else seed_value, what_seed),
        lrs=parse_lrs(lr_value, what_lr),
        results=Path(results_value) if results_value is not None else DEFAULT_RESULTS,
        overrides=check_overrides(merged, f"{where}overrides"),
        plugins=plugin_specs,
        slurm=dict(slurm),
    )
    check_evaluation_only(grid.overrides)
    size = len(grid.tasks) * len(grid.pes) * len(grid.seeds) * len(grid.lrs)
    if size > MAX_RUNS:
        raise CheError(f"the grid has {size:,} runs, more than a sweep takes ({MAX_RUNS:,}); split it")
    return grid


def check_evaluation_only(overrides: dict) -> None:
    """A setting under which a kept model evaluates as another PE (rope_scaling=yarn: rope as
    rope-yarn) is `che eval`'s; a run that trains names that PE instead, so that its results sit in
    that PE's column (one way to each result)."""
    from che.pe_names import evaluation_variants

    for key, value in overrides.items():
        named = evaluation_variants(key, value)
        if named:
            pe = named[0]
            raise CheError(f"{key}={echo(str(value))} evaluates a kept {pe.evaluation_of[0]} model as {pe.name} "
                           f"(`che eval RUN --set {key}={echo(str(value))}`); to train one, name the PE: --pe {pe.name}")


def _string_list(value, what: str) -> list[str]:
    """'a,b' or ['a', 'b'] -> ['a', 'b']."""
    if isinstance(value, str):
        items = [s.strip() for s in value.split(",")]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = [s.strip() for s in value]
    else:
        raise CheError(f"{what} must be a list of names or a comma-separated string, got {echo(repr(value))}")
    return [s for s in items if s]


def parse_tasks(value, what: str = "--tasks") -> list[str]:
    """'all' (the built-in CHE tasks, in the papers' order) or names; each is checked."""
    from che.registry import BUILTIN, TASKS

    names = _string_list(value, what)
    if not names:
        raise CheError(f"{what} is empty (choices: all, {', '.join(TASKS.names())})")
    tasks = []
    for name in names:
        if name == "all":
            tasks += [e.name for e in TASKS.entries() if e.source == BUILTIN]
            continue
        try:
            TASKS.get(name)
        except CheError as exc:
            raise CheError(f"{what}: {exc}") from None
        tasks.append(name)
    return list(dict.fromkeys(tasks))


def parse_pes(value, what: str = "--pes") -> list[str]:
    """PE names, in canonical form (`dape-kerple` -> `dape-kerple-log`); each is checked."""
    from che.models.positional import canonical_pe_name

    names = _string_list(value, what)
    if not names:
        raise CheError(f"{what} is empty (`che pes` lists the positional encodings)")
    pes = []
    for name in names:
        try:
            pes.append(canonical_pe_name(name))
        except CheError as exc:
            raise CheError(f"{what}: {exc}") from None
    return list(dict.fromkeys(pes))


def parse_seeds(value, what: str = "--seeds") -> list[int]:
    """A count N (seeds 0..N-1), or a list: `3`, `"0,4,7"`, `[0, 4, 7]`."""
    bad = CheError(f"{what} must be a count N (seeds 0..N-1) or a list of seeds such as 0,4,7; "
                   f"got {echo(repr(value))}")
    if isinstance(value, str):
        text = value.strip()
        if "," not in text:
            try:
                value = int(text)
            except ValueError:
                raise bad from None
        else:
            try:
                value = [int(s) for s in text.split(",") if s.strip()]
            except ValueError:
                raise bad from None
    if isinstance(value, bool):
        raise bad
    if isinstance(value, int):
        if not 1 <= value <= MAX_SEEDS:
            raise CheError(f"{what} must be between 1 and {MAX_SEEDS}, got {value}")
        return list(range(value))
    if isinstance(value, list) and value and all(isinstance(s, int) and not isinstance(s, bool) for s in value):
        if min(value) < 0 or max(value) >= 2**32:
            raise CheError(f"{what}: seeds must be in [0, 2^32), got {min(value) if min(value) < 0 else max(value)}")
        if len(value) > MAX_SEEDS:
            raise CheError(f"{what}: at most {MAX_SEEDS} seeds, got {len(value)}")
        return list(dict.fromkeys(value))
    raise bad


def parse_lrs(value, what: str = "--lrs") -> list[float | None]:
    """Learning rates: `"1e-4,3e-4"`, `[1e-4, 3e-4]` or one number; None means the preset's."""
    if value is None:
        return [None]
    bad = CheError(f"{what} must be learning rates such as 1e-4,3e-4; got {echo(repr(value))}")
    if isinstance(value, str):
        try:
            value = [float(s) for s in value.split(",") if s.strip()]
        except ValueError:
            raise bad from None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = [value]
    if not isinstance(value, list) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise bad
    for lr in value:
        if not 0 < lr < 1:
            raise CheError(f"{what}: a learning rate must be in (0, 1), got {lr:g}")
    return list(dict.fromkeys(float(v) for v in value))


def check_overrides(overrides: dict, what: str) -> dict:
    """Settings (`che settings`) with values of the setting's type; grid axes are refused with a hint."""
    checked = {}
    for key, value in overrides.items():
        if key in AXES:
            raise CheError(f"{what}: '{key}' is a grid axis; set `{AXES[key]}` instead")
        if key not in SETTINGS:
            raise CheError(f"{what}: {unknown_name_error('setting', key, set(SETTINGS) - set(AXES), 'che settings')}")
        checked[key] = typed_value(key, value, what)
    return checked
