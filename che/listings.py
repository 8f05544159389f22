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
    """Every registered PE, then the modifiers, as `che pes` lists them (imports torch): each row from
    its class's spec, with the parameters a model of the CHE papers' size trains for it."""
    from che.registry import BUILTIN, PE_MODIFIERS, PES

    rows = [pe_row(entry.obj, entry.source) for entry in PES.entries()]
    rows += [modifier_row(entry.obj, entry.source) for entry in PE_MODIFIERS.entries()]
    return [r for r in rows if not builtin_only or r["source"] == BUILTIN]


def listed_model(pe: str = "none"):
    from che.config import ModelConfig

    return ModelConfig(input_size=2, output_size=2, pe=pe, **LISTED_MODEL)


def short_citation(citation: str) -> str:
    """'Press et al. 2022, Train Short, Test Long (ALiBi)' -> 'Press et al. 2022': the first source's
    authors and year, for tables that must fit 80 columns (`che pes NAME` gives the whole one)."""
    return citation.split(";")[0].split(",")[0].strip()


def pe_row(cls: type, source: str) -> dict:
    from che.models.positional.build import parameters_text, parse_pe

    return {"name": cls.name, "family": cls.family, "parameters": parameters_text(parse_pe(cls.name, listed_model())),
            "bidirectional": cls.refuses.get("bidirectional") and f"none: {cls.refuses['bidirectional']}"
            or cls.bidirectional_form,
            "causal": cls.refuses.get("causal") and f"none: {cls.refuses['causal']}" or cls.causal_form,
            "settings": list(cls.settings), "citation": cls.citation, "cite": short_citation(cls.citation),
            "source": source, "aliases": {alias: cls.name for alias in cls.aliases},
            "about": " ".join((cls.__doc__ or "").split())}


def modifier_row(modifier: type, source: str) -> dict:
    """A modifier as `che pes` lists it: `dape-<bias pe>`, `<pe>+causal`, ... with the parameters it
    adds (over a base it accepts that has none of its own)."""
    from che.models.positional.build import parameter_counts, parse_pe

    over = "<bias pe>" if modifier.refuses(_base("none"), [], None) is None and modifier.refuses(
        _base("rope"), [], None) else "<pe>"
    example = "alibi" if modifier.refuses(_base("alibi"), [], None) is None else "none"
    build = parse_pe(f"{modifier.prefix}{example}{modifier.suffix}", listed_model())
    own = parameter_counts(build).get(modifier.name, 0)
    layers = LISTED_MODEL["n_layers"]
    parameters = f"{over} + {layers * own:,} = {layers} layers x {own:,}" if own else f"as {over}"
    return {"name": f"{modifier.prefix}{over}{modifier.suffix}", "family": "modifier", "parameters": parameters,
            "bidirectional": modifier.form, "causal": modifier.causal_refusal or "as <pe>",
            "settings": list(modifier.settings), "citation": modifier.citation,
            "cite": short_citation(modifier.citation), "source": source, "aliases": {}, "about": modifier.form}


def _base(name: str) -> type:
    from che.pe_names import base_classes

    return base_classes()[name]


def describe_pe(name: str) -> tuple[dict, list[str]]:
    """`che pes NAME`: (its rows as JSON: the PE and its modifiers, the text lines) for a PE name
    with its modifiers (`dape-fire`): the modifiers first, outermost first, then the base PE, each
    with its citation and forms, and the settings each reads."""
    from che.config import SETTINGS
    from che.models.positional.build import parameters_text, parse_pe
    from che.registry import PE_MODIFIERS, PES

    build = parse_pe(name, None)
    pe = build.pe
    if pe.layers:
        return describe_schedule(build)
    base = next(e for e in PES.entries() if e.obj is pe.base)
    row = pe_row(pe.base, base.source)
    sources = {entry.obj: entry.source for entry in PE_MODIFIERS.entries()}
    modifiers = [modifier_row(m, sources[m]) for m in pe.modifiers]
    trained = parameters_text(parse_pe(pe.name, listed_model(pe.name)))
    wrappers = [m.label for m in pe.prefixes if m.name != "rand"]
    family = f"{' over '.join(wrappers)} over {pe.base.name} ({row['family']})" if wrappers else row["family"]
    family += "".join(f", {m.label}" for m in pe.modifiers if m.name == "rand" or m.suffix)

    def settings_lines(names):
        return [f"  {key} = {SETTINGS[key].default!r}: {SETTINGS[key].metadata.get('about', '')}" for key in names
                if key in SETTINGS]

    lines = [f"{pe.name}: {family}; a model trains {trained} parameters for it "
             f"(the CHE model: {LISTED_MODEL['n_layers']} layers, d_model {LISTED_MODEL['d_model']}, "
             f"{LISTED_MODEL['n_heads']} heads)"]
    for modifier, described in zip(pe.modifiers, modifiers):
        lines += ["", f"{described['name']}: {modifier.form}", f"citation: {modifier.citation}"]
        lines += ["settings:", *settings_lines(modifier.settings)] if modifier.settings else []
    lines += ["", f"{pe.base.name}: {row['family']}", f"citation: {row['citation']}",
              f"bidirectional: {row['bidirectional']}", f"causal: {row['causal']}"]
    lines += ["settings:", *settings_lines(pe.base.settings)] if pe.base.settings else []
    lines += ["", row["about"]]
    return {"name": pe.name, "pe": row, "modifiers": modifiers}, lines


def describe_schedule(build) -> tuple[dict, list[str]]:
    """`che pes NAME` of a layer schedule: which PE each layer of the CHE model has, then each PE."""
    from che.models.positional.build import parameters_text, parse_pe

    pe, layers = build.pe, LISTED_MODEL["n_layers"]
    model = listed_model(pe.name)
    trained = parameters_text(parse_pe(pe.name, model))
    per_layer = [pe.layer(index).name for index in range(layers)]
    lines = [f"{pe.name}: a layer schedule; a model trains {trained} parameters for it (the CHE model: {layers} "
             f"layers, d_model {LISTED_MODEL['d_model']}, {LISTED_MODEL['n_heads']} heads)",
             "layers: " + ", ".join(f"{index}: {name}" for index, name in enumerate(per_layer))]
    if pe.base.citation:
        lines += [f"citation: {pe.base.citation}", "", " ".join((pe.base.__doc__ or "").split())]
    for layer in dict.fromkeys(pe.layers):
        described = describe_pe(layer.name)[1]
        lines += ["", *described[:1], *[line for line in described[1:] if line.startswith(("citation:", "bidirectional:",
                                                                                          "causal:"))]]
    return {"name": pe.name, "layers": per_layer}, lines


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
