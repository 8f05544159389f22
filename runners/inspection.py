"""What `che eval` and `che show` do with a stored run: evaluate it again under other settings, and
record what its PE computes for one input (`che.plots.attention_pictures` draws it)."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import torch

from che.config import RunConfig, evaluation_settings
from che.errors import CheError
from che.result import SCHEMA, make_record
from che.results import describe_device, disk_problem, git_revision, result_path, versions
from che.runners.evaluate import evaluate, length_seed, summarize
from che.runners.run import write_result
from che.runners.stored import load_model, stored_config

# What `che eval` may change: how the run is evaluated, not how it was trained (each such setting
# says so where it is declared).
EVALUATION_SETTINGS = evaluation_settings()


def reevaluate(record: dict, path: Path, device: torch.device, results: Path, on_length=None, **changes) -> Path:
    """Evaluate a stored run again with `changes` to its evaluation settings; write the result (a
    finished result like a run's, with the new settings in its config and `evaluation_of` linking
    the run) under `results`, and return its path."""
    unknown = set(changes) - set(EVALUATION_SETTINGS)
    if unknown:
        raise CheError(f"che eval changes only the evaluation ({', '.join(EVALUATION_SETTINGS)}), not "
                       f"{', '.join(sorted(unknown))}")
    model, new, task = load_model(record, path, device, changes)
    started = time.perf_counter()
    accuracies = evaluate(model, task, new, device, on_length=on_length)[0]
    out = result_path(results, new)
    out = out.with_name(out.name.removesuffix(".json") + "-eval.json")
    evaluation = make_record(**{
        **{k: v for k, v in record.items() if not k.startswith("_")},
        "schema": SCHEMA,
        "run_id": f"{new.run_id}-eval",
        "config": new.to_dict(),
        **summarize(accuracies, new.train_length),
        "accuracy_by_length": accuracies,
        "eval_dropout": new.eval_dropout,
        "evaluation_of": {"run_id": record["run_id"], "result": str(path), "model": record.get("model")},
        "device": describe_device(device),
        "versions": versions(),
        "git": git_revision(),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "eval_time_s": round(time.perf_counter() - started, 3),
    })
    elsewhere = write_result(out, evaluation)
    if elsewhere is not None:
        raise CheError(f"could not write the evaluation to {out} ({disk_problem(out, elsewhere[1])}); it is saved in "
                       f"{elsewhere[0]}: move it there when the folder is writable")
    return out


def check_reevaluation(record: dict, path: Path, results: Path, **changes) -> RunConfig:
    """Everything `reevaluate` could refuse, refused before it evaluates anything: the changes (only
    evaluation settings, valid values), the run's stored configuration, its weights, the output
    folder. Returns the configuration it will evaluate with."""
    from che.runners.run import check_writable
    from che.runners.stored import read_weights

    unknown = {k for k, v in changes.items() if v is not None} - set(EVALUATION_SETTINGS)
    if unknown:
        raise CheError(f"che eval changes only the evaluation ({', '.join(EVALUATION_SETTINGS)}), not "
                       f"{', '.join(sorted(unknown))}")
    config = stored_config(record, changes)
    read_weights(record, path)
    check_writable(results)
    return config


def evaluation_seconds(record: dict, device: torch.device, **changes) -> float:
    """About how long `reevaluate` takes (the cost model, with this device's calibration)."""
    from che.registry import TASKS
    from che.runners import cost

    config = stored_config(record, changes)
    return cost.run_seconds(config, TASKS.get(config.task), cost.for_device(device))["eval_s"]


def attention_maps(record: dict, path: Path, device: torch.device, layer: int, length: int | None,
                   sample: int) -> tuple[dict, dict]:
    """(what the layer recorded for one input, a description): the PE's bias B [H, T, T], DAPE's
    f(S, B), FoX's decays D and the attention [H, T, T] (those the PE has), for sample `sample` of
    the run's test data at `length`; the description names the bias as its PE does (`bias_label`)."""
    from che.models.positional import parse_pe
    from che.models.transformer import record_attention

    model, config, task = load_model(record, path, device)
    if not 0 <= layer < config.model.n_layers:
        raise CheError(f"--layer must be between 0 and {config.model.n_layers - 1}, got {layer}")
    length = config.train_length if length is None else length
    if not 1 <= length <= 2_000:
        raise CheError(f"--length must be between 1 and 2000, got {length}")
    generator = torch.Generator().manual_seed(length_seed(config.eval_seed, length))
    batch = task.sample(sample + 1, length, generator)
    model.eval()
    with torch.no_grad(), record_attention(model) as records:
        model(batch.inputs[sample:sample + 1].to(device), task.output_length(length),
              [torch.Generator(device=device).manual_seed(length_seed(config.eval_seed, length))])
    recorded = {k: v.squeeze(0).cpu() if v.dim() == 4 else v.cpu() for k, v in records[layer].items()
                if v is not None}
    build = parse_pe(config.pe, None)
    here = build.layer(layer)  # a layer schedule's PE in this layer; the PE itself otherwise
    about = {"task": config.task, "pe": config.pe, "layer": layer, "length": length, "sample": sample,
             "tokens": int(recorded["probs"].shape[-1]), "input": task.render(batch.inputs[sample].tolist(),
                                                                                 task.input_symbols),
             "bias_label": here.cls.bias_label, "layer_pe": here.name if here is not build else None}
    return recorded, about


# -- a PE at initialisation (`che pes --show`) ------------------------------------------------------
MAX_SHOWN_ENTRIES = 2_000_000  # heads x T x T numbers `che pes --show` prints or draws


def initial_bias(name: str, length: int, heads: int):
    """(bias [H, T, T] or None, note) that PE `name` adds to the scaled scores at initialisation
    (`che pes --show`)."""
    from che.config import ModelConfig
    from che.errors import check_range
    from che.models.positional import AttentionPE, BiasPE, parse_pe

    check_range("--length", length, 1, 4096)
    check_range("--n-heads", heads, 1, 64)
    if heads * length * length > MAX_SHOWN_ENTRIES:
        raise CheError(f"--n-heads x --length^2 = {heads * length * length:,} numbers is more than --show prints "
                       f"({MAX_SHOWN_ENTRIES:,}); lower --length or --n-heads")

    config = ModelConfig(input_size=2, output_size=2, n_heads=heads, d_model=8 * heads, pe=name)
    build = parse_pe(name, config)
    if build.pe.layers:  # a layer schedule: the first of its layers that adds a bias
        layers = [build.layer(index).name for index in range(config.n_layers)]
        listed = f"a layer schedule; the CHE model's {config.n_layers} layers: {', '.join(layers)}"
        for index, layer in enumerate(layers):
            bias, note = initial_bias(layer, length, heads)
            if bias is not None:
                return bias, f"{listed}; shown: layer {index} ({layer}){'; ' + note if note else ''}"
        return None, f"none of its layers adds an attention bias at initialisation ({listed})"
    with torch.random.fork_rng():
        torch.manual_seed(0)
        module = build.make().eval()
    if build.acts_on_embeddings:
        return None, f"{build.name} is added to the token embeddings; it adds no attention bias"
    note = ""
    if module.transforms_scores and getattr(module, "base", None) is not None:  # DAPE: f(S, B) over a base
        note = "f(S, B) depends on the attention scores; shown: the bias B of the wrapped PE"
        module = module.base
        if not module.transforms_scores and type(module).bias is AttentionPE.bias:
            return None, note.replace("; shown: the bias B of the wrapped PE", "; there is no B")
    if build.randomized:
        note = (note + "; " if note else "") + "one draw of randomized positions"
    zeros = torch.zeros(1, heads, length, config.d_head)
    if build.uses_segments:
        from che.models.positional.bilevel import segment_positions

        segments = segment_positions(torch.zeros(1, length, dtype=torch.long), (), config.bipe_segment)
        for part in module.modules():
            if getattr(part, "uses_segments", False):
                part.segments = segments
        note = (note + "; " if note else "") + f"segments: chunks of {config.bipe_segment} tokens"
    if build.causal:
        note = (note + "; " if note else "") + "keys right of the query are masked"
    with torch.no_grad():
        if module.reads_input:
            module.see(torch.zeros(1, length, config.d_model))
            note = (note + "; " if note else "") + "for a layer input x = 0"
        bias = module.bias(zeros, zeros)
        if bias is None and module.transforms_scores:
            return None, f"{build.name} transforms the scores from q and k; it has no fixed bias"
    if bias is None:
        return None, f"{build.name} adds no attention bias"
    if not isinstance(module, BiasPE):
        content_only = not (build.cls.position_based or build.uses_segments)
        if content_only and not bias.any():  # a function of q, k and x alone: 0 for them all 0
            inputs = "q, k, the layer input" if module.reads_input else "q, k"
            return None, (f"{build.name}'s bias depends on content ({inputs}) "
                          f"and is 0 for q = k = 0: nothing to show before training; `che show RUN` draws it for a "
                          f"trained run")
        with torch.no_grad(), torch.random.fork_rng():
            torch.manual_seed(0)
            some_q, some_k = torch.randn_like(zeros), torch.randn_like(zeros)
            content_dependent = not torch.equal(module.bias(some_q, some_k), bias)  # rope-chunked's mask is not
        if content_dependent:
            note = (note + "; " if note else "") + "content-dependent; shown for q = k = 0"
    return bias.expand(1, heads, length, length)[0] if bias.dim() == 4 else bias, note
