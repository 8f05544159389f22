"""che computes what the DeepMind JAX reference computes: logits, loss, gradients and one optimiser
step, on fixtures produced by the reference itself (tests/fixtures/reference_parity/README.md).

Each fixture holds the reference's initial parameters; they are loaded into a che Transformer with
`che.models.haiku.load_haiku_params`, the randomized PEs replay the reference's recorded draws
through che's own draw functions, and everything the reference computed is compared.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from che.models import Transformer
from che.models.haiku import haiku_arrays, load_haiku_params
from che.models.positional import base
from che.runners.optim import PackedAdam

from che.config import ModelConfig
from che.errors import CheError

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "reference_parity").glob("*.npz"))
ADAM_EPS = 1e-8


def read(path: Path):
    data = np.load(path)
    return json.loads(bytes(data["meta"])), data


def tree(data, prefix: str) -> dict[str, np.ndarray]:
    return {k[len(prefix):]: data[k] for k in data.files if k.startswith(prefix)}


def model_for(meta: dict) -> Transformer:
    config = ModelConfig(input_size=meta["input_size"], output_size=meta["output_size"], pe=meta["pe"],
                         n_layers=meta["n_layers"], d_model=meta["d_model"], n_heads=meta["n_heads"],
                         dropout=0.0, rand_max_length=meta["noise_max_length"] or 2048,
                         rand_mode="reference")
    return Transformer(config)


def recorded_draws(meta: dict, data) -> list[np.ndarray]:
    draws = [data[f"draw/{i}"] for i in range(meta["draws"])]
    if meta["reference_pe"] == "NOISY_ROTARY":
        # The reference draws q's and k's positions with the same key, i.e. the same draw twice per
        # layer; che draws once per layer and rotates both with it.
        assert all(np.array_equal(a, b) for a, b in zip(draws[0::2], draws[1::2]))
        draws = draws[0::2]
    return draws


@pytest.fixture
def replay(monkeypatch):
    """Replace che's draw functions by the fixture's draws; check count, sizes and ranges."""

    def install(meta, data):
        queue = list(recorded_draws(meta, data))
        used = []

        def fake(kind, low):
            def draw(count, max_length, device=None):
                assert queue, f"che draws more often than the reference ({len(used)} draws recorded)"
                value = torch.as_tensor(queue.pop(0), device=device)
                assert value.shape == (count,) and int(value.min()) >= low and int(value.max()) < max_length
                used.append(kind)
                return value
            return draw

        monkeypatch.setattr(base, "random_positions", fake("positions", 0))
        monkeypatch.setattr(base, "random_offsets", fake("offsets", 1))
        return queue, used

    return install


def forward_and_backward(path: Path, replay):
    meta, data = read(path)
    model = model_for(meta)
    load_haiku_params(model, tree(data, "p/"))
    optimizer = PackedAdam(model, [meta["lr"]], meta["max_grad_norm"])
    left, used = replay(meta, data)
    inputs = torch.as_tensor(data["inputs"])
    targets = torch.as_tensor(data["targets"])
    logits = model(inputs, meta["output_length"])
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))
    optimizer.zero_grad()
    loss.backward()
    assert not left, f"che drew {len(used)} times, the reference {len(used) + len(left)} times"
    return meta, data, model, optimizer, logits, loss


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_logits_loss_and_gradients_equal_the_reference(path, replay):
    meta, data, model, _, logits, loss = forward_and_backward(path, replay)
    np.testing.assert_allclose(logits.detach().numpy(), data["logits"], atol=1e-4, rtol=0)
    assert abs(loss.item() - float(data["loss"])) < 1e-4
    ours, theirs = haiku_arrays(model, grads=True), tree(data, "g/")
    assert ours.keys() == theirs.keys()
    for name, expected in theirs.items():
        scale = max(float(np.abs(expected).max()), 1e-12)
        worst = float(np.abs(ours[name] - expected).max())
        assert worst <= 1e-4 * scale, f"{name}: gradient differs by {worst:.2e} (largest {scale:.2e})"


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_one_clipped_adam_step_equals_the_reference(path, replay):
    meta, data, model, optimizer, _, _ = forward_and_backward(path, replay)
    optimizer.step()
    grads = tree(data, "g/")
    norm = np.sqrt(sum(float(np.square(g.astype(np.float64)).sum()) for g in grads.values()))
    clip = min(1.0, meta["max_grad_norm"] / norm)
    lr = meta["lr"]
    ours, expected = haiku_arrays(model), tree(data, "u/")
    for name, after in expected.items():
        # Where |g| is near Adam's eps, the first update g / (|g| + eps) is decided by rounding.
        clear = np.abs(grads[name] * clip) > 100 * ADAM_EPS
        difference = np.abs(ours[name] - after)
        assert difference[clear].max(initial=0) < 1e-6, name
        assert difference.max(initial=0) <= lr * 1.0001, name


def test_a_wrong_or_missing_name_is_a_clear_error():
    meta, data = read(FIXTURES[0])
    model = model_for(meta)
    params = tree(data, "p/")
    name = next(iter(params))
    broken = dict(params)
    broken[name + "_typo"] = broken.pop(name)
    with pytest.raises(CheError, match="missing .*" + name.split("/")[-1]) as error:
        load_haiku_params(model, broken)
    assert name + "_typo" in str(error.value) and "unexpected" in str(error.value)


def test_a_wrong_shape_is_a_clear_error():
    meta, data = read(next(p for p in FIXTURES if "none" in p.stem))
    model = model_for(meta | {"d_model": 32, "n_heads": 4})
    with pytest.raises(CheError, match="has shape"):
        load_haiku_params(model, tree(data, "p/"))


@pytest.mark.parametrize("path", [p for p in FIXTURES if "relative" in p.stem or "learned" in p.stem],
                         ids=lambda p: p.stem)
def test_loading_and_reading_back_is_the_identity(path):
    meta, data = read(path)
    model = model_for(meta)
    params = tree(data, "p/")
    load_haiku_params(model, params)
    back = haiku_arrays(model)
    for name, value in params.items():
        np.testing.assert_array_equal(back[name], value)
