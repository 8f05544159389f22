"""Runs, from configs to result files: what `che run` and `che sweep` share.

`execute_pack` trains a pack of runs that differ only in seed and learning rate together (one run
is the pack of one) and writes one result per run, as each would alone.
It is idempotent: finished results with the same configuration are returned as they are (unless
`force`), an interrupted pack continues from its checkpoint (with `resume`), results are written
atomically, and the checkpoint is removed at the end.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import tempfile
import random
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from che.config import DEVICES, RunConfig
from che.errors import CheError
from che.locks import claim, release
from che.registry import TASKS, CheWarning, loaded_plugins
from che.result import make_record
from che.results import (checkpoint_path, command_line, describe_device, disk_problem,
                         git_revision, is_finished, result_path, run_dir, versions, write_json_atomic)
from che.runners.evaluate import evaluate, summarize
from che.runners.reporting import Reporter
from che.runners.stored import model_path, save_model
from che.runners.train import CheckpointError, Trainer, check_pack



def pick_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise CheError(f"unknown device '{name}' (choices: {', '.join(DEVICES)})")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CheError("--device cuda: no CUDA device is available (choices: auto, cpu)")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Outcome:
    status: str          # "finished" or "skipped" (already finished)
    path: Path
    record: dict


def pack_checkpoint_path(results: Path, configs: list[RunConfig]) -> Path:
    """A run's checkpoint, or for a pack of several, one named after all of its runs."""
    if len(configs) == 1:
        return checkpoint_path(results, configs[0])
    digest = hashlib.sha256(" ".join(sorted(c.run_id for c in configs)).encode()).hexdigest()[:10]
    return run_dir(results, configs[0].task, configs[0].pe) / f"pack-{digest}.ckpt"


def pack_members_path(checkpoint: Path) -> Path:
    """Beside a pack's checkpoint, the list of its runs (so that a pack whose first results were
    written before it stopped resumes as the pack it was, not as a new pack from step 0)."""
    return checkpoint.with_name(checkpoint.name + ".json")


def find_checkpoint(results: Path, configs: list[RunConfig]) -> tuple[Path, list[RunConfig]]:
    """(checkpoint, the runs it holds) for these runs: their own, or that of a larger pack they were
    part of (whose other runs finished, or are not asked for now); their own path (not existing)
    if there is none."""
    own = pack_checkpoint_path(results, configs)
    if own.exists():
        return own, configs
    wanted = {c.run_id for c in configs}
    for members_file in sorted(run_dir(results, configs[0].task, configs[0].pe).glob("pack-*.ckpt.json")):
        checkpoint = members_file.with_name(members_file.name.removesuffix(".json"))
        try:
            members = json.loads(members_file.read_text())["runs"]
            pack = [RunConfig.from_dict(configs[0].to_dict() | {"seed": m["seed"], "lr": m["lr"]}) for m in members]
        except (OSError, ValueError, KeyError, TypeError, CheError):
            continue
        if checkpoint.exists() and wanted <= {c.run_id for c in pack} and [c.run_id for c in pack] == [
                m["run_id"] for m in members]:
            return checkpoint, pack
    return own, configs


def check_resumable(results: Path, configs: list[RunConfig], force: bool, resume: bool) -> None:
    """Refuse at once (before any estimate or training) to start over a run that has a checkpoint,
    unless `resume` continues it or `force` discards it."""
    checkpoint, _ = find_checkpoint(results, configs)
    if checkpoint.exists() and not force and not resume:
        raise CheError(f"an unfinished run of this configuration has a checkpoint at {checkpoint}; "
                       f"pass --resume to continue it or --force to start over")


def execute_pack(configs: list[RunConfig], results: Path, *, device: str = "auto", force: bool = False,
                 resume: bool = False, reporter: Reporter | None = None, lock: bool = True,
                 command: str | None = None) -> list[Outcome]:
    """Train the runs of a pack (configs differing only in seed and lr) together, evaluate them, and
    write one result per run, exactly as each would alone. Finished runs are skipped (unless
    `force`); a run whose loss became non-finite gets a "failed" outcome and the others go on; if
    every run fails, `Diverged` is raised. Runs whose larger pack stopped after writing some of its
    results resume in that pack, from its checkpoint (with `resume`). Each run's lock
    (`che.locks`) is taken for the duration, unless `lock` is False: a sweep's dispatcher holds them
    for its workers."""
    reporter = reporter or Reporter()
    task = TASKS.get(configs[0].task)
    for config in configs:
        config.validate()
        config.validate_for(task)
    check_pack(configs)
    outcomes: dict[str, Outcome] = {}
    todo = []
    for config in configs:
        path = result_path(results, config)
        if not force and is_finished(path):
            outcomes[config.run_id] = Outcome("skipped", path, json.loads(path.read_text()))
        else:
            todo.append(config)
    if todo:
        check_writable(results)
        checkpoint, pack = (pack_checkpoint_path(results, todo), todo) if force else find_checkpoint(results, todo)
        locks = []
        try:
            asked = {c.run_id for c in todo}
            for config in pack if lock else ():
                if config.run_id not in asked and is_finished(result_path(results, config)):
                    continue  # a finished run of the larger pack: trained again, not written again
                run_lock, holder = claim(results, config)
                if run_lock is None:
                    raise CheError(f"{config.task} x {config.pe} seed {config.seed} lr {config.lr:g} is running "
                                   f"elsewhere ({holder}); wait for it to finish, or stop that process")
                locks.append(run_lock)
            with restored_thread_count():  # a resumed checkpoint trains with its own (`resume_threads`)
                trained = _train_and_evaluate(pack, task, results, device, force, resume, reporter, checkpoint, command)
            for config, outcome in zip(pack, trained):
                if config.run_id in asked:
                    outcomes[config.run_id] = outcome
        finally:
            for run_lock in locks:
                release(run_lock)
    return [outcomes[c.run_id] for c in configs]


def diverged_message(exc: BaseException, trained: list[RunConfig]) -> str:
    """One line for a pack whose every trained run diverged: at the first step (before any update,
    so not the learning rate: the model's output was nan or inf, e.g. a plugin's bias) or later."""
    step = getattr(exc, "step", None)
    what = (f"{trained[0].task} x {trained[0].pe}, " + (f"lr {trained[0].lr:g}" if len(trained) == 1 else
            f"{len(trained)} runs, lr {', '.join(f'{lr:g}' for lr in dict.fromkeys(c.lr for c in trained))}"))
    if step == 1:
        return (f"the training loss was not finite at the first step, before any update ({what}): the model "
                f"computes nan or inf from the start; check the PE and task plugins; no result was written")
    return f"{exc} ({what}); no result was written for {'it' if len(trained) == 1 else 'them'}: try a lower learning rate"


def check_writable(results: Path) -> None:
    """Refuse (one line) a results folder that cannot take files, before hours of training. The probe
    file has no name (or loses it at once), so a write that fails there (a full disk) leaves nothing."""
    results = Path(results)
    try:
        results.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=results) as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        raise CheError(f"cannot write to the results folder '{results}': {exc.strerror or exc}") from None


def rescue_folder() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "che" / "rescued"


def write_result(path: Path, record: dict) -> tuple[Path, OSError] | None:
    """Write a result; if that fails (a full disk, the folder gone), keep it in the user's cache
    folder (else the temporary folder), so that a finished run is never lost. Returns None when it is
    where it belongs, else (where it was rescued to, why)."""
    try:
        write_json_atomic(path, record)
        return None
    except OSError as exc:
        problem = exc
    rescue = rescue_folder() / f"{record['task']}--{record['pe']}--{path.name}"
    try:
        write_json_atomic(rescue, record)
    except OSError:
        rescue = Path(tempfile.gettempdir()) / f"che-rescued-{record['task']}--{record['pe']}--{path.name}"
        write_json_atomic(rescue, record)
    return rescue, problem


def keep_model(outcome: Outcome, state: dict) -> None:
    """The run's weights beside its result; a model that cannot be kept (a full disk: safetensors
    raises its own error type) costs the run its model, never its result."""
    try:
        save_model(model_path(outcome.path), state, outcome.record)
    except Exception as exc:  # noqa: BLE001 - OSError, SafetensorError, ImportError: the result matters more
        warnings.warn(f"could not keep the model of {outcome.record['run_id']}: {disk_problem(outcome.path, exc)}",
                      CheWarning, stacklevel=2)
        outcome.record["model"] = None


@contextlib.contextmanager
def restored_thread_count():
    """Torch's thread count as it was, afterwards."""
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def resume_threads(trainer: Trainer) -> None:
    """On a CPU, continue with the torch thread count the resumed checkpoint was trained with (sums
    split across threads round differently: another count would continue with other bits); one line
    says so when it is not the count asked for (--threads, OMP_NUM_THREADS, the usable cores)."""
    asked, saved = torch.get_num_threads(), trainer.checkpoint_threads
    if trainer.device.type == "cpu" and saved and saved != asked:
        warnings.warn(f"resuming with {saved} torch thread(s), the count this run started with, not {asked}: "
                      f"another count would change its numbers", CheWarning, stacklevel=2)
        torch.set_num_threads(saved)


def _train_and_evaluate(configs, task, results, device, force, resume, reporter, checkpoint,
                        command=None) -> list[Outcome]:
    try:
        return _train_evaluate_and_write(configs, task, results, device, force, resume, reporter, checkpoint, command)
    finally:
        # A pack's list of runs describes its checkpoint and goes with it: when the checkpoint was
        # never saved (a full disk) or is removed at the end, nothing is left beside the results.
        if not checkpoint.exists():
            pack_members_path(checkpoint).unlink(missing_ok=True)


def _train_evaluate_and_write(configs, task, results, device, force, resume, reporter, checkpoint,
                              command=None) -> list[Outcome]:
    torch_device = pick_device(device)
    started_at = dt.datetime.now(dt.timezone.utc)
    wall_start = time.perf_counter()
    seed_everything(configs[0].seed)
    trainer = Trainer(configs, task, torch_device)
    if checkpoint.exists():
        if force:
            checkpoint.unlink()
        elif resume:
            try:
                trainer.load(checkpoint)
            except CheckpointError as exc:
                raise CheError(f"cannot resume from {checkpoint}: {exc}; --force starts the run over") from None
            resume_threads(trainer)
        else:
            check_resumable(results, configs, force, resume)
    if len(configs) > 1:
        write_json_atomic(pack_members_path(checkpoint), {"runs": [
            {"run_id": c.run_id, "seed": c.seed, "lr": c.lr} for c in configs]})
    resumed_from_step = trainer.state.step
    reporter.start(configs[0], resumed_from_step)
    state = trainer.state
    if state.step < configs[0].steps:
        state = trainer.train(checkpoint, on_step=reporter.step)
        trainer.save_or_warn(checkpoint)  # evaluation interrupted later does not cost the training
    live = trainer.live_runs()

    eval_start = time.perf_counter()
    reporter.evaluation_started(configs[0].max_test_length)
    accuracies = evaluate(trainer.model, task, configs[0], torch_device, on_length=reporter.length_done, runs=live)
    eval_time = time.perf_counter() - eval_start

    outcomes = []
    common = {
        "level": task.level,
        "model_config": configs[0].model_for(task).to_dict(),
        "parameters": trainer.model.num_parameters(),
        "chance_accuracy": task.chance_accuracy,
        "eval_dropout": configs[0].eval_dropout,
        "device": describe_device(torch_device),
        "versions": versions(),
        "git": git_revision(),
        "plugins": loaded_plugins(),
        "pack": {"size": len(configs), "runs": [c.run_id for c in configs]},
    }
    for k, config in enumerate(configs):
        path = result_path(results, config)
        curve = state.curves[k]
        if k not in live:
            step = state.failed[str(k)]
            outcomes.append(Outcome("failed", path, {
                "error_type": "Diverged", "step": step,
                "error": f"the training loss became non-finite (nan or inf) at step {step}"}))
            continue
        record = make_record(
            **{"run_id": config.run_id,
            "task": config.task,
            "pe": config.pe,
            "seed": config.seed,
            "config": config.to_dict(),
            "implementations": config.implementations(),
            "command": command or command_line(),
            "threads": torch.get_num_threads(),
            **common,
            **summarize(accuracies[k], config.train_length),
            "accuracy_by_length": accuracies[k],
            "final_loss": curve[-1][1] if curve else None,
            "final_train_accuracy": curve[-1][2] if curve else None,
            "train_curve": curve,
            "started_at": started_at.isoformat(timespec="seconds"),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "wall_time_s": round(time.perf_counter() - wall_start, 3),
            "train_time_s": round(state.train_time_s, 3),
            "eval_time_s": round(eval_time, 3),
            "steps_per_s": round(state.step / state.train_time_s, 3) if state.train_time_s else None,
            "resumed_from_step": resumed_from_step,
            "model": model_path(path).name if config.save_model else None})
        outcomes.append(Outcome("finished", path, record))
    rescued = []
    for k, outcome in enumerate(outcomes):  # the checkpoint stays until every result is written
        if outcome.status != "finished" or (not force and is_finished(outcome.path)):
            continue  # failed, or a run of a larger pack that had finished before it stopped
        if configs[k].save_model:
            keep_model(outcome, trainer.run_state_dict(k))
        elsewhere = write_result(outcome.path, outcome.record)
        if elsewhere is not None:
            rescued.append((outcome.path, *elsewhere))
    if rescued:  # every result kept somewhere; the checkpoint too, nothing is lost
        where = "; ".join(f"{rescue}" for _, rescue, _ in rescued)
        raise CheError(f"could not write {len(rescued)} result(s) to {rescued[0][0].parent} "
                       f"({disk_problem(rescued[0][0], rescued[0][2])}); they are saved in {where}: move them "
                       f"there when the folder is writable")
    checkpoint.unlink(missing_ok=True)
    return outcomes
