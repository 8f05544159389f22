"""What `che tasks` and `che pes` list for the built-in tasks and PEs, kept in files generated from
the code, so that those commands answer without importing torch (which takes seconds).

`python -m che.listings` rewrites the files; tests/test_listings.py fails when they are stale. With
plugins (`--plugin`, CHE_PLUGINS, installed entry points), the commands import everything and
describe it live instead.
"""

from __future__ import annotations

import importlib.resources
import json

FOLDER = importlib.resources.files("che") / "data"  # package data: found in a wheel too
# The model whose parameters `che pes` counts: the CHE papers' (RunConfig's defaults).
LISTED_MODEL = {"n_layers": 5, "d_model": 64, "n_heads": 8}
TASKS_FILE, PES_FILE = FOLDER / "tasks.json", FOLDER / "pes.json"


def builtin_tasks() -> list[dict]:
    return json.loads(TASKS_FILE.read_text())


def builtin_pes() -> list[dict]:
    return json.loads(PES_FILE.read_text())


def describe_tasks(builtin_only: bool = False) -> list[dict]:
    """Every registered task as `che tasks` lists it (imports the tasks, and torch)."""
    from che.registry import BUILTIN, TASKS
    from che.tasks import LEVELS

    entries = [e for e in TASKS.entries() if not builtin_only or e.source == BUILTIN]
    entries.sort(key=lambda e: (LEVELS.index(e.obj.level) if e.obj.level in LEVELS else len(LEVELS), e.name))
    return [e.obj.describe() | {"source": e.source} for e in entries]


def describe_task(name: str, rows: list[dict]) -> list[str]:
    """`che tasks NAME`: the task's row of `rows` (what `che tasks` lists) in full, with its
    docstring; an unknown name is the registry's error."""
    from che.registry import TASKS

    row = next((r for r in rows if r["name"] == name), None)
    if row is None:
        raise TASKS.unknown(name, [r["name"] for r in rows])
    output = (f"{row['output_length']} positions" + (", accuracy counted up to the terminator" if row["masked"] else "")
              if row["kind"] == "sequence" else "one label")
    return [f"{row['name']} (level {row['level']}): {row['input_size']} input symbols, {row['output_size']} output "
            f"classes; output: {output}; chance accuracy {100 * row['chance_accuracy']:.0f}%",
            f"source: {row['source']}", "", row.get("about", ""), "",
            f"samples: che sample --task {row['name']} --length 8"]


def describe_all_pes(builtin_only: bool = False) -> list[dict]:
    """Every registered PE (and the modifiers) as `che pes` lists it (imports torch)."""
    from che.config import ModelConfig
    from che.models.positional import describe_pes
    from che.registry import BUILTIN

    rows = describe_pes(ModelConfig(input_size=2, output_size=2, **LISTED_MODEL))
    return [r for r in rows if not builtin_only or r["source"] == BUILTIN]


def describe_pe(name: str) -> tuple[dict, list[str]]:
    """`che pes NAME`: (its rows as JSON: the PE and its modifiers, the text lines) for a PE name
    with its modifiers (`dape-fire`)."""
    from che.config import ModelConfig
    from che.models.positional import _parameters_text, parse_pe

    rows = describe_all_pes()
    build = parse_pe(name, None)
    row = next(r for r in rows if r["name"] == build.cls.name)
    used = {"rand-<pe>": build.randomized, "fox-<pe>": build.fox, "ssmax-<pe>": build.ssmax,
            "<pe>+causal": build.causal}
    modifiers = [r for r in rows if r["family"] == "modifier" and (
        used.get(r["name"]) or (build.dape and r["name"].startswith(build.dape + "-")))]
    model = ModelConfig(input_size=2, output_size=2, pe=build.name, **LISTED_MODEL)
    trained = _parameters_text(parse_pe(build.name, model))
    family = row["family"] if not build.dape else f"{build.dape.upper()} over {build.cls.name} ({row['family']})"
    wrappers = [label for label, on in (("SSMax", build.ssmax), ("FoX", build.fox)) if on]
    if wrappers:
        family = f"{' over '.join(wrappers)} over {build.cls.name if not build.dape else family}"
    if build.causal:
        family += ", causal"
    lines = [f"{build.name}: {family}; a model trains {trained} parameters for it "
             f"(the CHE model: {LISTED_MODEL['n_layers']} layers, d_model {LISTED_MODEL['d_model']}, "
             f"{LISTED_MODEL['n_heads']} heads)",
             f"citation: {row['citation']}", f"both directions: {row['bidirectional']}", "", row["about"]]
    for modifier in modifiers:
        lines += ["", f"{modifier['name']}: {modifier['about']}", f"citation: {modifier['citation']}"]
    return {"name": build.name, "pe": row, "modifiers": modifiers}, lines


def describe_settings() -> list[dict]:
    """`che settings`: every setting a run takes (`--set key=value`, a sweep file's [overrides]),
    its type, its default (the value a run gets without --preset: the default preset's), its value
    under each preset, and what it does."""
    from che.config import CHOICES, DEFAULT_PRESET, PRESETS, SETTINGS, preset_value

    rows = []
    for name, spec in SETTINGS.items():
        if name in ("task", "pe", "preset"):  # options of their own
            continue
        rows.append({"name": name, "type": str(spec.type), "default": preset_value(DEFAULT_PRESET, name),
                     "presets": {preset: preset_value(preset, name) for preset in PRESETS},
                     "choices": list(CHOICES.get(name, ())), "about": spec.metadata.get("about", "")})
    return rows


def write() -> None:
    TASKS_FILE.write_text(json.dumps(describe_tasks(builtin_only=True), indent=1, ensure_ascii=False) + "\n")
    PES_FILE.write_text(json.dumps(describe_all_pes(builtin_only=True), indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    write()
