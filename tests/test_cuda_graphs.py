"""On a GPU: captured training steps compute what eager steps compute, and packs what solo runs do.

Skipped where there is no CUDA device (CI); run on a GPU machine with `pytest tests/test_cuda_graphs.py`.
"""

from __future__ import annotations

import pytest
import torch
from che.runners.evaluate import evaluate
from che.runners.train import Trainer

from che.config import make_config
from che.registry import TASKS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

PES = ["none", "alibi", "relative", "sin-cos", "dape-kerple-log", "dape2-alibi", "rand-alibi", "rand-relative",
       "rand-rope", "rand-learned", "kerple-log", "fire", "t5", "cope",
       "none+causal", "fox+causal", "stick-breaking", "ssmax-alibi", "p-rope", "bipe-alibi", "irope", "rnope+causal",
       "none~alibi"]
STEPS = 8


def pack(pe, **overrides):
    """Two runs; train lengths 1..2: every shape runs eagerly once, is captured the second time, then
    replayed. Float32 matmuls (not TF32): TF32's rounding depends on the matmul's shape, so a pack
    and a run alone would differ by ~1e-3 for that reason alone."""
    return [make_config("reverse_string", pe, "smoke", seed=seed, lr=lr, batch_size=8, train_length=2,
                        dropout=0.1, precision="fp32", **overrides) for seed, lr in [(0, 1e-3), (5, 3e-4)]]


def train(configs, steps=STEPS):
    trainer = Trainer(configs, TASKS.get("reverse_string"), torch.device("cuda"))
    losses = []
    for _ in range(steps):
        trainer.step(trainer.sample())
        losses.append(trainer.stats.read(reset=True)["loss"])
    return trainer, losses


@pytest.mark.parametrize("pe", PES)
def test_captured_steps_equal_eager_steps(pe):
    eager, eager_losses = train(pack(pe, cuda_graphs=False))
    graphed, graphed_losses = train(pack(pe))
    assert eager.graphs is None and graphed.graphs is not None
    assert graphed.graphs.captures == 2 and graphed.graphs.replays == STEPS - 2
    assert torch.allclose(torch.tensor(graphed_losses), torch.tensor(eager_losses), rtol=1e-4, atol=1e-6)
    for k in range(2):
        mine, theirs = graphed.run_state_dict(k), eager.run_state_dict(k)
        for name in mine:
            assert torch.allclose(mine[name], theirs[name], rtol=1e-4, atol=1e-5), (pe, name)
    # the runs' generators advanced alike: the next draws agree too
    for a, b in zip(graphed.noise, eager.noise):
        assert torch.equal(a.get_state(), b.get_state())


@pytest.mark.parametrize("pe", ["alibi", "rand-relative", "dape-kerple-log"])
def test_a_captured_pack_equals_captured_solo_runs(pe):
    configs = pack(pe)
    packed, packed_losses = train(configs)
    for k, config in enumerate(configs):
        alone, alone_losses = train([config])
        assert [s[k] for s in packed_losses] == pytest.approx([s[0] for s in alone_losses], rel=1e-4, abs=1e-6)


def test_dropout_and_random_positions_stay_random_under_capture():
    """Replays draw new masks and positions: two steps on the same batch give different losses."""
    trainer = Trainer(pack("rand-alibi"), TASKS.get("reverse_string"), torch.device("cuda"))
    batch = trainer.sample()
    for _ in range(2):
        trainer.step(batch)   # eager, then captured
    trainer.stats.read(reset=True)
    losses = []
    for _ in range(3):
        trainer.step(batch)
        losses.append(trainer.stats.read(reset=True)["loss"][0])
    assert trainer.graphs.replays == 4 and len(set(losses)) == 3


def test_evaluating_a_pack_equals_evaluating_each_run_alone():
    from che.models import Transformer

    configs = pack("rand-alibi", max_test_length=6, eval_samples=8, eval_batch_size=4)
    task = TASKS.get("reverse_string")
    trainer, _ = train(configs, steps=3)
    packed = evaluate(trainer.model, task, configs[0], torch.device("cuda"))
    for k in range(2):
        alone = Transformer(configs[0].model_for(task))
        alone.load_state_dict(trainer.run_state_dict(k))
        single = evaluate(alone.cuda(), task, configs[0], torch.device("cuda"))[0]
        assert packed[k] == pytest.approx(single, abs=1e-6)


def test_a_garbage_collection_during_capture_cannot_break_it():
    """A worker trains pack after pack: the graphs of a finished pack live in a reference cycle until
    the garbage collector frees them, which CUDA forbids during a capture. With the collector made
    to run at almost every allocation, a new pack still captures and trains."""
    import gc

    finished, _ = train(pack("dape-kerple-log"), steps=3)
    assert finished.graphs.captures >= 1
    del finished  # now garbage, in a cycle: trainer -> graphs -> bound step -> trainer
    thresholds = gc.get_threshold()
    gc.set_threshold(1, 1, 1)
    try:
        trainer, losses = train(pack("dape-kerple-log"))
    finally:
        gc.set_threshold(*thresholds)
    assert trainer.graphs.captures == 2 and all(torch.isfinite(torch.tensor(loss)).all() for loss in losses)
