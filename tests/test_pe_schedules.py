"""Layer schedules (`irope`, `rnope`, any `A~B`) and their PEs (`none-tempered`, `rope-chunked`)
against their definitions: Llama 4's reference implementation and the RNoPE paper."""

from __future__ import annotations

import json
import math

import pytest
import torch

from che.config import ModelConfig
from che.errors import CheError
from che.models.positional import parse_pe
from che.models.positional.rotary import rotate_pairs
from che.models.transformer import Transformer
from che.pe_names import read

CONFIG = ModelConfig(input_size=2, output_size=2, longest_train_tokens=4)


@pytest.mark.parametrize("name, layers", [
    ("irope", ["rope-chunked", "rope-chunked", "rope-chunked", "none-tempered", "rope-chunked"]),
    ("rnope", ["rope", "rope", "rope", "none", "rope"]),
    ("none~alibi", ["none", "alibi", "none", "alibi", "none"]),
    ("fox-rope~none+causal", ["fox-rope+causal", "none+causal"] * 2 + ["fox-rope+causal"]),
])
def test_the_five_layers_of_a_schedule(name, layers):
    """Layer l has the (l mod k)-th PE of the cycle; `~` binds loosest; +causal applies to every layer."""
    assert [read(name).layer(index).name for index in range(5)] == layers


def test_iropes_layers_are_llama4s():
    """Llama 4: no_rope_layer_interval 4, i.e. layers 3, 7, ... have no PE (0-based)."""
    model = Transformer(CONFIG.__class__(**{**CONFIG.__dict__, "pe": "irope"}))
    kinds = [type(block.attention.pes[0]).__name__ for block in model.blocks]
    assert kinds == ["ChunkedRoPE", "ChunkedRoPE", "ChunkedRoPE", "TemperedNoPE", "ChunkedRoPE"]


@pytest.mark.parametrize("single, schedule", [("none", "none~none"), ("alibi", "alibi~alibi~alibi"),
                                              ("kerple-log+causal", "kerple-log~kerple-log+causal"),
                                              ("fox", "fox~fox")])
def test_a_schedule_of_one_pe_is_that_pe(single, schedule):
    """Bit for bit: the same initialisation draws layer by layer, the same function."""
    torch.manual_seed(0)
    a = Transformer(ModelConfig(input_size=2, output_size=2, pe=single))
    torch.manual_seed(0)
    b = Transformer(ModelConfig(input_size=2, output_size=2, pe=schedule))
    tokens = torch.randint(0, 2, (3, 9))
    assert torch.equal(a.eval()(tokens, 4), b.eval()(tokens, 4))


def llama4_scale(position: int, floor_scale: int) -> float:
    """Llama4TextAttention's temperature tuning: log(floor((p + 1) / floor_scale) + 1) * 0.1 + 1."""
    return math.log(math.floor((position + 1.0) / floor_scale) + 1.0) * 0.1 + 1.0


@pytest.mark.parametrize("position, factor", [(0, 1.0), (2, 1.0), (3, 1 + 0.1 * math.log(2)),
                                              (7, 1 + 0.1 * math.log(3)), (11, 1 + 0.1 * math.log(4))])
def test_tempered_nope_scales_queries_as_llama4_causal(position, factor):
    """By hand, with the floor rescaled to the training length (4 tokens here, 8,192 in Llama 4)."""
    module = parse_pe("none-tempered+causal", CONFIG).make()
    q, k = torch.ones(1, 8, 12, 8), torch.ones(1, 8, 12, 8)
    scaled, same = module.rotate(q, k)
    assert torch.equal(same, k)
    assert scaled[0, 0, position, 0].item() == pytest.approx(factor)
    assert factor == pytest.approx(llama4_scale(position, 4))


def test_tempered_nope_encoder_scales_every_query_as_the_last():
    """che's encoder form: every query sees all T keys, so each gets the last position's factor."""
    module = parse_pe("none-tempered", CONFIG).make()
    scaled, _ = module.rotate(torch.ones(1, 8, 12, 8), torch.ones(1, 8, 12, 8))
    assert torch.allclose(scaled[0, 0, :, 0], torch.full((12,), llama4_scale(11, 4)))


@pytest.mark.parametrize("causal", [False, True])
def test_chunked_rope_attends_within_chunks_as_rope(causal):
    """Within a chunk of C = longest_train_tokens tokens the logits are RoPE's; across chunks no attention."""
    module = parse_pe("rope-chunked" + ("+causal" if causal else ""), CONFIG).make().double()
    q, k = torch.randn(2, 8, 10, 8, dtype=torch.float64), torch.randn(2, 8, 10, 8, dtype=torch.float64)
    rq, rk = module.rotate(q, k)
    positions = torch.arange(10)
    torch.testing.assert_close(rq, rotate_pairs(q, positions))
    logits = rq @ rk.transpose(-1, -2) / math.sqrt(8) + module.bias(q, k)
    if causal:
        logits = logits.masked_fill(positions[None, :] > positions[:, None], float("-inf"))
    probs = torch.softmax(logits, -1)
    chunk = positions // 4
    other = chunk[:, None] != chunk[None, :]
    assert probs[..., other].abs().max() == 0
    same = (rq @ rk.transpose(-1, -2) / math.sqrt(8))[..., ~other]
    torch.testing.assert_close(logits[..., ~other & ~(causal & (positions[None, :] > positions[:, None]))],
                               (rq @ rk.transpose(-1, -2) / math.sqrt(8))[..., ~other & ~(
                                   causal & (positions[None, :] > positions[:, None]))])
    assert same.shape[-1] > 0


@pytest.mark.parametrize("name, reason", [
    ("rand-irope", "is a layer schedule"), ("fox-rnope", "is a layer schedule"),
    ("rope~sin-cos", "acts on the token embeddings"), ("rope~~none", "one is empty"),
    ("rope~irope", "is a schedule itself"), ("rope~nope", "unknown positional encoding"),
    ("none~alibi+causal~rope", r"\+causal applies to every layer"),  # it was read as none~alibi~rope
    ("none+causal~alibi", r"\+causal applies to every layer"),
])
def test_schedules_that_cannot_work_are_refused_in_one_line(name, reason):
    with pytest.raises(CheError, match=reason):
        read(name)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("pe", ["irope", "rnope+causal", "none~alibi"])
def test_a_pack_of_schedules_computes_what_each_run_computes_alone(pe, dtype):
    from che.registry import TASKS
    from che.runners.train import Trainer
    from test_pack import configs, losses_per_step

    pack_configs = configs(pe)
    task = TASKS.get("reverse_string")
    packed = Trainer(pack_configs, task, torch.device("cpu"), dtype)
    pack_losses = losses_per_step(packed, 3)
    for k, config in enumerate(pack_configs):
        alone_losses = losses_per_step(Trainer([config], task, torch.device("cpu"), dtype), 3)
        assert [step[k] for step in pack_losses] == pytest.approx([step[0] for step in alone_losses],
                                                                  rel=1e-5 if dtype == torch.float32 else 1e-10)


@pytest.mark.parametrize("pe", ["irope", "irope+causal", "rnope", "none~alibi+causal"])
def test_a_schedule_trains_and_lists(cli, tmp_path, pe):
    result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--results", tmp_path)
    assert result.exit_code == 0, result.stderr
    record = json.loads(next(tmp_path.rglob("seed*.json")).read_text())
    assert record["pe"] == pe and record["model_config"]["longest_train_tokens"] == 6  # parity_check, N = 5: 5 + 1
    described = cli("pes", pe)
    assert described.exit_code == 0 and "layers: 0: " in described.stdout


def test_che_pes_states_the_schedules_of_the_che_model(cli):
    text = " ".join(cli("pes", "irope").stdout.split())
    assert "layers: 0: rope-chunked, 1: rope-chunked, 2: rope-chunked, 3: none-tempered, 4: rope-chunked" in text
    text = " ".join(cli("pes", "rnope").stdout.split())
    assert "layers: 0: rope, 1: rope, 2: rope, 3: none, 4: rope" in text and "arXiv 2501.18795" in text
