"""Packed runs: K runs that differ in seed and learning rate train as one batched model, and each
computes what it computes alone (losses, weights, evaluation, result file); which runs make a pack."""

from __future__ import annotations

import json

import pytest
import torch
from che.runners import run as run_module
from che.runners.run import execute_pack
from che.runners.train import Trainer
from conftest import run_alone

from che.config import make_config
from che.registry import TASKS

PACK_PES = ["none", "alibi", "relative", "dape-kerple-log", "rand-alibi", "rand-rope", "sin-cos",
            "none+causal", "fox", "stick-breaking+causal", "ssmax-alibi", "p-rope", "bipe-alibi"]
SEEDS_AND_LRS = [(0, 1e-3), (3, 3e-4), (7, 5e-4)]


def configs(pe, **overrides):
    return [make_config("reverse_string", pe, "smoke", seed=seed, lr=lr, dropout=0.1, batch_size=4,
                        train_length=6, **overrides) for seed, lr in SEEDS_AND_LRS]


def losses_per_step(trainer, steps):
    history = []
    for _ in range(steps):
        trainer.step(trainer.sample())
        history.append(trainer.stats.read(reset=True)["loss"])
    return history


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pe", PACK_PES)
def test_a_pack_computes_what_each_run_computes_alone(pe, dtype):
    """Step by step the same losses and, after the steps, the same weights: float64 to 1e-9; in
    float32 the losses to 1e-5 (Adam's first steps can turn a rounding difference in a near-zero
    gradient into a weight difference of up to lr, so float32 weights are not compared)."""
    pack_configs = configs(pe)
    task = TASKS.get("reverse_string")
    packed = Trainer(pack_configs, task, torch.device("cpu"), dtype)
    pack_losses = losses_per_step(packed, 4)
    for k, config in enumerate(pack_configs):
        alone = Trainer([config], task, torch.device("cpu"), dtype)
        alone_losses = losses_per_step(alone, 4)
        tolerance = 1e-5 if dtype == torch.float32 else 1e-10
        assert [step[k] for step in pack_losses] == pytest.approx([step[0] for step in alone_losses], rel=tolerance)
        mine, theirs = packed.run_state_dict(k), alone.run_state_dict(0)
        assert mine.keys() == theirs.keys()
        if dtype == torch.float64:
            for name in mine:
                assert torch.allclose(mine[name], theirs[name], rtol=0, atol=1e-9), name


def test_pack_and_solo_results_are_the_same_files(tmp_path):
    """execute_pack writes one complete result per run; each equals the run done alone, apart from
    timings and the pack it ran in."""
    pack_configs = configs("alibi")
    packed = execute_pack(pack_configs, tmp_path / "pack", device="cpu")
    assert [o.status for o in packed] == ["finished"] * 3
    for config, outcome in zip(pack_configs, packed):
        alone = run_alone(config, tmp_path / "solo", device="cpu")
        a, b = outcome.record, alone.record
        assert json.loads(outcome.path.read_text())["run_id"] == config.run_id
        assert a["pack"]["size"] == 3 and b["pack"]["size"] == 1
        for key in ("config", "model_config", "parameters", "seed", "pe", "task", "status"):
            assert a[key] == b[key], key
        assert a["accuracy_by_length"] == pytest.approx(b["accuracy_by_length"], abs=1e-6)
        assert [p[1] for p in a["train_curve"]] == pytest.approx([p[1] for p in b["train_curve"]], rel=1e-4)
        assert a["ood_accuracy"] == pytest.approx(b["ood_accuracy"], abs=1e-6)


class PoisonedTrainer(Trainer):
    """Run 1 starts with a non-finite weight: its loss is nan from the first step."""

    def __init__(self, configs, task, device):
        super().__init__(configs, task, device)
        if len(configs) > 1:
            with torch.no_grad():
                self.optimizer.flat[1, 0] = float("nan")


def test_a_failing_run_does_not_take_down_its_pack(tmp_path, monkeypatch):
    monkeypatch.setattr(run_module, "Trainer", PoisonedTrainer)
    pack_configs = configs("none")
    outcomes = execute_pack(pack_configs, tmp_path, device="cpu")
    assert [o.status for o in outcomes] == ["finished", "failed", "finished"]
    assert outcomes[1].record["step"] == 1 and "non-finite" in outcomes[1].record["error"]
    for k in (0, 2):
        record = json.loads(outcomes[k].path.read_text())
        assert record["status"] == "finished" and len(record["accuracy_by_length"]) == 8
    assert not outcomes[1].path.exists()
    assert not list(tmp_path.rglob("*.ckpt"))


def test_a_pack_refuses_runs_that_differ_in_more_than_seed_and_lr():
    mixed = [make_config("reverse_string", "alibi", "smoke", seed=0),
             make_config("reverse_string", "alibi", "smoke", seed=1, steps=11)]
    with pytest.raises(ValueError, match="differ only in seed and learning rate"):
        Trainer(mixed, TASKS.get("reverse_string"), torch.device("cpu"))


def test_every_seed_sees_the_same_lengths_by_default():
    a, b = configs("none")[:2]
    task = TASKS.get("reverse_string")
    trainer_a, trainer_b = Trainer([a], task, torch.device("cpu")), Trainer([b], task, torch.device("cpu"))
    first = [trainer_a.sample()[0].shape[-1] for _ in range(20)]
    second = [trainer_b.sample()[0].shape[-1] for _ in range(20)]
    assert first == second and len(set(first)) > 1
    other = make_config("reverse_string", "none", "smoke", seed=a.seed, lr=a.lr, dropout=0.1, batch_size=4,
                        train_length=6, length_seed=5)
    trainer_c = Trainer([other], task, torch.device("cpu"))
    assert [trainer_c.sample()[0].shape[-1] for _ in range(20)] != first


@pytest.mark.parametrize("pe", ["dape-kerple-log", "dape2-alibi", "cope", "alibi"])
def test_a_packed_run_writes_the_bits_of_the_run_alone(tmp_path, pe):
    """Over 60 float32 steps (enough for a rounding difference to grow into other accuracies), each
    run of a pack has exactly the losses and accuracies of the run made alone: the attention runs
    its matmuls on one memory layout whatever the pack size. PEs that transform the scores (DAPE,
    CoPE) take the explicit path, the others the fused one."""
    settings = dict(steps=60, train_length=8, max_test_length=12)
    pack_configs = [make_config("reverse_string", pe, "smoke", seed=seed, **settings) for seed in (0, 1, 2)]
    packed = execute_pack(pack_configs, tmp_path / "pack", device="cpu")
    for config, outcome in zip(pack_configs, packed):
        alone = run_alone(config, tmp_path / "solo", device="cpu").record
        assert outcome.record["train_curve"] == alone["train_curve"]
        assert outcome.record["accuracy_by_length"] == alone["accuracy_by_length"]


def test_make_packs_groups_runs_differing_in_seed_and_lr_only():
    from che.runners.packs import make_packs

    configs = [make_config(task, "alibi", "smoke", seed=seed, lr=lr)
               for task in ("parity_check", "reverse_string") for lr in (1e-3, 3e-4) for seed in range(3)]
    packs = make_packs(configs, 4)
    assert [len(p) for p in packs] == [3, 3, 3, 3]   # 6 runs per task in packs of up to 4: 3 + 3
    assert all(len({c.task for c in p}) == 1 for p in packs)
    assert [c.run_id for p in packs for c in p] == [c.run_id for c in configs]   # grid order kept
    assert [len(p) for p in make_packs(configs, 1)] == [1] * 12
    assert [len(p) for p in make_packs(configs[:6], 5)] == [3, 3]
    assert [len(p) for p in make_packs(configs, 6)] == [6, 6]
