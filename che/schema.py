"""What a finished result file must hold, checked with pydantic before the leaderboard trusts it.

Only the fields the leaderboard and the comparisons read are checked, strictly: a number must be a
finite number (not NaN, Infinity or `true`), an accuracy in [0, 1], a seed a non-negative integer.
Other fields pass through.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Accuracy = Annotated[float, Field(ge=0.0, le=1.0, strict=True, allow_inf_nan=False)]


# Result files che reads: 1 (before the implementations' versions were recorded), 2 (now). A newer
# schema was written by a newer che, whose fields this one may misread.
READABLE_SCHEMAS = (1, 2)


class FinishedResult(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)

    schema_: Literal[READABLE_SCHEMAS] = Field(alias="schema")
    status: Literal["finished"]
    run_id: Annotated[str, Field(min_length=1)]
    task: Annotated[str, Field(min_length=1)]
    pe: Annotated[str, Field(min_length=1)]
    seed: Annotated[int, Field(ge=0)]
    config: dict
    accuracy_by_length: Annotated[list[Accuracy], Field(min_length=1)]
    ood_accuracy: Accuracy
    in_distribution_accuracy: Accuracy
    chance_accuracy: Accuracy


def invalid_reason(record: dict) -> str | None:
    """None for a valid finished result, else the first problem in a few words (its configuration's
    values are checked as a run's: types, then ranges)."""
    from che.config import RunConfig
    from che.errors import CheError

    try:
        FinishedResult.model_validate(record)
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"]) or "the record"
        if where == "schema" and "schema" in record:
            return f"schema {record['schema']!r} is not one this che reads ({', '.join(map(str, READABLE_SCHEMAS))})"
        return f"{where}: {error['msg']}"
    try:
        RunConfig.from_dict(record["config"]).validate()
    except CheError as exc:
        return f"config: {exc}"
    except TypeError as exc:
        return f"config: {exc}"
    return None
