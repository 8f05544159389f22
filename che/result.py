"""What a result holds: one `Result` model, written by `che run` (one per run) and `che eval` (one per
evaluation of a kept model), read by `che.load_results`, the leaderboard and the comparisons.

Reading is strict where the numbers are read (`Accuracy`: a finite number in [0, 1], never NaN,
Infinity or `true`) and for the configuration (each setting's type and range, as a run checks it);
results of schema 1 (before the implementations' versions were recorded) lack some fields, which
read as None. A result of a newer schema was written by a newer che and is skipped.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

SCHEMA = 2
READABLE_SCHEMAS = (1, 2)

Accuracy = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]


class Result(BaseModel):
    """A finished run (or an evaluation of one, with `evaluation_of`)."""

    model_config = ConfigDict(extra="allow", populate_by_name=True, protected_namespaces=())

    schema_: Literal[READABLE_SCHEMAS] = Field(SCHEMA, alias="schema")
    status: Literal["finished"] = "finished"
    # what ran
    run_id: Annotated[str, Field(min_length=1)]
    task: Annotated[str, Field(min_length=1)]
    pe: Annotated[str, Field(min_length=1)]
    seed: Annotated[int, Field(ge=0, strict=True)]
    level: str | None = None
    config: dict                                  # RunConfig.to_dict(), checked by `invalid_reason`
    implementations: dict | None = None          # {"task": {name: version}, "pe": {class: version}}
    model_config_: dict | None = Field(None, alias="model_config")  # the ModelConfig the model was built from
    parameters: int | None = None                 # of one run
    # the scores
    chance_accuracy: Accuracy
    ood_accuracy: Accuracy                        # mean accuracy over the unseen lengths N+1..M
    ood_accuracy_reference_script: float | None = None  # over N+2..M, the reference script's off-by-one
    in_distribution_accuracy: Accuracy            # over 1..N
    accuracy_by_length: Annotated[list[Accuracy], Field(min_length=1)]
    eval_dropout: bool | None = None
    # training
    final_loss: float | None = None
    final_train_accuracy: float | None = None
    train_curve: list | None = None               # [step, mean loss, mean accuracy] per interval
    resumed_from_step: int | None = None
    pack: dict | None = None                      # {"size": K, "runs": [run ids]}
    # provenance
    command: str | None = None
    threads: int | None = None
    device: str | None = None
    versions: dict | None = None
    git: dict | None = None
    plugins: list | None = None
    started_at: str | None = None
    finished_at: str | None = None
    wall_time_s: float | None = None
    train_time_s: float | None = None
    eval_time_s: float | None = None
    steps_per_s: float | None = None
    model: str | None = None                      # the kept weights' file name beside the result
    evaluation_of: dict | None = None             # che eval: {"run_id", "result", "model"} of the run

    def record(self) -> dict:
        """The JSON object a result file holds."""
        return self.model_dump(by_alias=True, exclude_none=False)


def make_record(**fields) -> dict:
    """A result file's JSON object from its fields, without checking them: a run's result is always
    written (a value `invalid_reason` would refuse is found when it is read, not lost now)."""
    return Result.model_construct(**fields).record()


def invalid_reason(record: dict) -> str | None:
    """None for a valid finished result, else the first problem in a few words (its configuration's
    values are checked as a run's: types, then ranges)."""
    from che.config import RunConfig
    from che.errors import CheError

    try:
        Result.model_validate(record)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the record"
        if where == "schema" and "schema" in record:
            return f"schema {record['schema']!r} is not one this che reads ({', '.join(map(str, READABLE_SCHEMAS))})"
        return f"{where}: {error['msg']}"
    try:
        RunConfig.from_dict(record["config"]).validate()
    except (CheError, TypeError) as exc:
        return f"config: {exc}"
    return None
