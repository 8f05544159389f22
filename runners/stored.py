"""Finished runs as stored: the result file and the trained weights beside it.

A run's weights are `<run-id>.model.safetensors` next to `<run-id>.json`: safetensors holds tensors
only (loading it runs no code), about 1 MB for the CHE model (250k float32 parameters), with the
run id, the configuration and a sha256 of the weights (`weights_digest`) in its metadata. `che eval`
and `che show` find a run by its result file or its run id, check the weights against their digest,
and rebuild the model from them and the stored configuration. Models kept before the digest existed
load as they are.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch

from che.config import RunConfig
from che.errors import CheError
from che.results import json_files, read_json_file

MODEL_SUFFIX = ".model.safetensors"


def model_path(result: Path) -> Path:
    result = Path(result)
    return result.with_name(result.name.removesuffix(".json") + MODEL_SUFFIX)


def save_model(path: Path, state: dict[str, torch.Tensor], record: dict) -> None:
    """The weights (a single run's state_dict), atomically, with the run id and config as metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)  # the run's folder, if no checkpoint made it
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tensors = {k: v.contiguous() for k, v in state.items()}
    metadata = {"run_id": record["run_id"], "config": json.dumps(record["config"]), "format": "che single-run state_dict",
                "sha256": weights_digest(tensors)}
    try:
        save_file(tensors, str(tmp), metadata=metadata)
        os.chmod(tmp, 0o666 & ~_umask())
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


def weights_digest(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state_dict: each tensor's name, dtype, shape and bytes, in name order (the same
    whatever order or layout safetensors gives the file)."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name} {tensor.dtype} {tuple(tensor.shape)}\n".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy())
    return digest.hexdigest()


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def find_run(spec: str, results: Path | None = None) -> tuple[dict, Path]:
    """(result record, its path) of a run given as a result file or a run id (searched under
    `results`)."""
    path = Path(spec)
    if not path.is_file():
        folder = Path(results) if results is not None else None
        matches = json_files(folder, f"{spec}.json") if folder is not None and folder.is_dir() else []
        if len(matches) != 1:
            where = f"under {folder}" if folder is not None else "(give a result file or --results)"
            raise CheError(f"no run '{spec}' {where}: give a result file (.json) or the run id of one"
                           if not matches else f"run id '{spec}' is ambiguous under {folder}: give the result file")
        path = matches[0]
    try:
        record = read_json_file(path)
    except (OSError, ValueError) as exc:
        raise CheError(f"cannot read the result file {path}: {exc}") from None
    if record.get("status") != "finished" or "config" not in record:
        raise CheError(f"{path} is not a finished run's result")
    _check_names_known(record)
    return record, path


def _check_names_known(record: dict) -> None:
    """Before any work: the run's task and PE are registered, else the unknown-name error, naming the
    plugins the run was made with (a plugin's PE is rebuilt only with that plugin loaded)."""
    from che.models.positional import canonical_pe_name
    from che.registry import TASKS

    try:
        TASKS.get(str(record.get("task")))
        canonical_pe_name(str(record.get("pe")))
    except CheError as exc:
        plugins = [str(p) for p in record.get("plugins") or []]
        if not plugins:
            raise
        raise CheError(f"{exc}; run {record.get('run_id')} was made with the plugin(s) {', '.join(plugins)}: "
                       f"load them with --plugin") from None


def read_weights(record: dict, path: Path) -> dict[str, torch.Tensor]:
    """The weights kept beside a result, checked: a readable safetensors file (not truncated, empty or
    garbage) whose metadata names this run (another run's weights are not evaluated as this one's)
    and whose weights match their digest (not damaged since they were written)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    weights = model_path(path)
    again = f"train the run again with --force (its command is in {path.name}) to keep a new one"
    if not weights.is_file():
        raise CheError(f"{path} has no stored model ({weights.name}): the run was made with --set save_model=false "
                       f"or before models were kept; run it again to keep one")
    try:
        with safe_open(str(weights), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(weights))
    except Exception as exc:  # noqa: BLE001 - SafetensorError, OSError, ...: a damaged file in one line
        raise CheError(f"the stored model {weights} cannot be read ({type(exc).__name__}: "
                       f"{str(exc).splitlines()[0] if str(exc) else 'damaged'}); {again}") from None
    if "run_id" not in metadata:
        raise CheError(f"the stored model {weights} has no che metadata (no run id): che did not write it; {again}")
    if metadata["run_id"] != record.get("run_id"):
        raise CheError(f"the stored model {weights} is run {metadata['run_id']!r}'s, not {record.get('run_id')!r}'s "
                       f"(the result it sits beside)")
    if "sha256" in metadata and weights_digest(state) != metadata["sha256"]:  # none in models kept before it existed
        raise CheError(f"the stored model {weights} does not match its checksum: its weights were damaged after they "
                       f"were written (the result is unaffected); {again}")
    return state


def load_model(record: dict, path: Path, device: torch.device, changes: dict | None = None):
    """(the run's model, its RunConfig, its task), the weights loaded from beside the result; with
    `changes` to its evaluation settings, the model is built under them (rand_at_eval, rope_scaling)."""
    from che.models import Transformer
    from che.registry import TASKS

    state = read_weights(record, path)
    config = stored_config(record, changes)
    task = TASKS.get(config.task)
    model = Transformer(config.model_for(task))
    try:
        model.load_state_dict(state)
    except (RuntimeError, ValueError) as exc:
        raise CheError(f"the stored model {model_path(path)} does not fit the run's configuration: "
                       f"{str(exc).splitlines()[0]}") from None
    return model.to(device), config, task


def stored_config(record: dict, changes: dict | None = None) -> RunConfig:
    """A stored run's configuration (with `changes` to it), validated: types and values as a run
    would have them (a result edited or written by someone else is refused in one line)."""
    values = record.get("config")
    if not isinstance(values, dict):
        raise CheError("the result has no configuration")
    config = RunConfig.from_dict(values | {k: v for k, v in (changes or {}).items() if v is not None})
    config.validate()
    return config
