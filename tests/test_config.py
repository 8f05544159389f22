"""che.config: a run's settings, its identity and run id."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from che.config import RunConfig, make_config
from che.errors import CheError

RESULTS = Path(__file__).resolve().parent.parent / "results"


def committed_results() -> list[tuple[Path, dict]]:
    """Every committed result that records the implementations' versions (results of che 0.1, in
    results/fidelity, predate them and had another identity)."""
    found = []
    for path in sorted(RESULTS.glob("**/*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and "run_id" in record and record.get("implementations"):
            found.append((path, record))
    return found


def test_every_committed_result_keeps_its_run_id(monkeypatch):
    """A run id is the seed, the lr and a hash of the run's identity: recomputed from the stored
    config (and the implementation versions it records), every committed result's id is unchanged.
    A setting added, moved or described anew must not change one."""
    results = committed_results()
    assert len(results) >= 400
    changed = []
    for path, record in results:
        config = RunConfig.from_dict(record["config"])
        monkeypatch.setattr(RunConfig, "implementations", lambda self, versions=record["implementations"]: versions)
        if config.run_id != record["run_id"]:
            changed.append(f"{path.relative_to(RESULTS)}: {config.run_id}")
    assert not changed, f"{len(changed)} run ids changed, e.g. {changed[:3]}"


@pytest.mark.parametrize("pe", ["none", "alibi", "dape-kerple-log", "fox+causal", "bipe-alibi", "p-rope"])
def test_run_ids_of_todays_code_match_the_committed_ones(pe):
    """For the PEs whose code has not changed since their committed runs, the current code names a
    committed run's configuration with its committed id (the implementations' versions included)."""
    records = [record for _, record in committed_results() if record["pe"] == pe]
    assert records
    for record in records[:6]:
        assert RunConfig.from_dict(record["config"]).run_id == record["run_id"]


@pytest.mark.parametrize("value", [-1.0, 0.0, float("nan"), float("inf")])
def test_max_grad_norm_must_be_a_positive_number(value):
    with pytest.raises(CheError, match="max_grad_norm"):
        make_config("parity_check", "none", "smoke", max_grad_norm=value)


def test_rope_fraction_and_bipe_segment_leave_earlier_run_ids_alone():
    from che.config import make_config

    config = make_config("reverse_string", "rope", "cpu")
    assert "rope_fraction" not in config.identity() and "bipe_segment" not in config.identity()
    changed = make_config("reverse_string", "p-rope", "cpu", rope_fraction=0.5)
    assert changed.identity()["rope_fraction"] == 0.5
