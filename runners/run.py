"""One run, from a config to a result file: the single function `che run` and `che sweep` share.

`execute` is idempotent: a finished result with the same configuration is returned as it is
(unless `force`), an interrupted run continues from its checkpoint (with `resume`), and the result
is written atomically, after which the checkpoint is removed.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from che.config import RunConfig
from che.errors import CheError
from che.registry import TASKS, loaded_plugins
from che.results import (SCHEMA_VERSION, checkpoint_path, describe_device, git_revision,
                         is_finished, result_path, versions, write_json_atomic)
from che.runners.evaluate import evaluate, summarize
from che.runners.train import Trainer, model_config

DEVICES = ("auto", "cpu", "cuda")


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


class Reporter:
    """Progress callbacks; the default reports nothing."""

    def start(self, config: RunConfig, resumed_from: int) -> None: ...
    def step(self, state, loss: float, accuracy: float) -> None: ...
    def evaluation_started(self, lengths: int) -> None: ...
    def length_done(self, length: int, accuracy: float) -> None: ...


def execute(config: RunConfig, results: Path, *, device: str = "auto", force: bool = False,
            resume: bool = False, reporter: Reporter | None = None) -> Outcome:
    reporter = reporter or Reporter()
    config.validate()
    task = TASKS.get(config.task)
    path = result_path(results, config)
    if path.exists() and is_finished(path) and not force:
        return Outcome("skipped", path, json.loads(path.read_text()))
    checkpoint = checkpoint_path(results, config)
    torch_device = pick_device(device)

    started_at = dt.datetime.now(dt.timezone.utc)
    wall_start = time.perf_counter()
    seed_everything(config.seed)
    trainer = Trainer(config, task, torch_device)
    if checkpoint.exists():
        if force:
            checkpoint.unlink()
        elif resume:
            try:
                trainer.load(checkpoint)
            except Exception as exc:
                raise CheError(f"cannot resume from {checkpoint}: {exc} (use --force to start over)") from exc
        else:
            raise CheError(f"an unfinished run of this configuration has a checkpoint at {checkpoint}; "
                           f"pass --resume to continue it or --force to start over")
    resumed_from_step = trainer.state.step
    reporter.start(config, resumed_from_step)
    state = trainer.train(checkpoint, on_step=reporter.step)

    eval_start = time.perf_counter()
    reporter.evaluation_started(config.max_test_length)
    accuracies = evaluate(trainer.model, task, config, torch_device, on_length=reporter.length_done)
    eval_time = time.perf_counter() - eval_start

    record = {
        "schema": SCHEMA_VERSION,
        "status": "finished",
        "run_id": config.run_id,
        "task": config.task,
        "level": task.level,
        "pe": config.pe,
        "seed": config.seed,
        "config": config.to_dict(),
        "model_config": model_config(config, trainer.task).to_dict(),
        "parameters": trainer.model.num_parameters(),
        "chance_accuracy": task.chance_accuracy,
        **summarize(accuracies, config.train_length),
        "accuracy_by_length": accuracies,
        "final_loss": state.curve[-1][1] if state.curve else None,
        "final_train_accuracy": state.curve[-1][2] if state.curve else None,
        "train_curve": state.curve,
        "eval_dropout": config.eval_dropout,
        "device": describe_device(torch_device),
        "versions": versions(),
        "git": git_revision(),
        "plugins": loaded_plugins(),
        "started_at": started_at.isoformat(timespec="seconds"),
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_time_s": round(time.perf_counter() - wall_start, 3),
        "train_time_s": round(state.train_time_s, 3),
        "eval_time_s": round(eval_time, 3),
        "steps_per_s": round(state.step / state.train_time_s, 3) if state.train_time_s else None,
        "resumed_from_step": resumed_from_step,
    }
    write_json_atomic(path, record)
    checkpoint.unlink(missing_ok=True)
    return Outcome("finished", path, record)
