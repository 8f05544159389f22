"""The causal mode and the encodings after 2024: stick-breaking, FoX, SSMax, p-RoPE, BiPE, each
against its paper's equations on hand-computed cases and against a plain re-statement of its
authors' reference form."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from che.errors import CheError
from che.models import Transformer
from che.models.positional import parse_pe
from che.models.positional.bilevel import ALIBI_SLOPE_FACTOR, segment_positions
from che.models.positional.biases import alibi_slopes
from che.models.positional.rotary import rotate_pairs
from che.models.positional.stick_breaking import stick_breaking_weights

from che.config import ModelConfig

NEW = ["fox", "stick-breaking", "ssmax-alibi", "ssmax-none", "p-rope", "bipe-alibi", "bipe-rope", "fox-alibi"]


def model(pe, **kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(input_size=3, output_size=2, pe=pe, dropout=0.0, **kw)).double()


# -- the causal mode ------------------------------------------------------------------------------
@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("pe", ["none", "alibi", "rope", "t5", "relative", "kerple-log", "fire", "cope",
                                "dape-alibi", "sin-cos", "learned"] + NEW)
def test_a_causal_model_never_reads_a_later_token(pe, attention):
    """Changing the token at position 4 changes no hidden state before it; without `+causal` it does."""
    tokens = torch.randint(0, 3, (1, 2, 9))
    changed = tokens.clone()
    changed[..., 4] = (changed[..., 4] + 1) % 3
    for causal in (True, False):
        net = model(pe + ("+causal" if causal else ""), attention=attention).eval()
        with torch.no_grad():
            a, b = net.encode(tokens), net.encode(changed)
        same_before = torch.allclose(a[..., :4, :], b[..., :4, :], atol=1e-12)
        assert same_before == causal, (pe, causal)
        assert not torch.allclose(a[..., 4:, :], b[..., 4:, :])


@pytest.mark.parametrize("pe", ["none", "alibi", "fox-alibi", "ssmax-alibi"])
def test_every_attention_path_masks_alike(pe):
    """Fused (SDPA: is_causal, or the bias with -inf above the diagonal) and explicit: equal."""
    fused, explicit = model(pe + "+causal", attention="fused"), model(pe + "+causal", attention="explicit")
    explicit.load_state_dict(fused.state_dict())
    tokens = torch.randint(0, 3, (1, 3, 8))
    torch.testing.assert_close(fused.encode(tokens), explicit.encode(tokens), atol=1e-10, rtol=1e-10)


def test_flex_attention_masks_as_the_explicit_path():
    explicit = model("alibi+causal", attention="explicit")
    flex = model("alibi+causal", attention="flex")
    flex.load_state_dict(explicit.state_dict())
    tokens = torch.randint(0, 3, (1, 3, 8))
    with torch.no_grad():
        torch.testing.assert_close(flex.encode(tokens), explicit.encode(tokens), atol=1e-10, rtol=1e-10)


def test_causal_is_part_of_the_name_and_the_identity():
    from che.config import make_config

    assert parse_pe("dape-kerple+causal", None).name == "dape-kerple-log+causal"
    assert parse_pe("fox-none", None).name == "fox" and parse_pe("fox", None).pe.has("fox")
    bidirectional, causal = (make_config("reverse_string", pe, "cpu") for pe in ("none", "none+causal"))
    assert bidirectional.run_id != causal.run_id


@pytest.mark.parametrize("name, reason", [("dape2-alibi+causal", "convolutions run along the keys"),
                                          ("ssmax-dape-alibi", "ssmax- acts on the logits"),
                                          ("fox-cope", "fox- acts on the logits"),
                                          ("fox-sin-cos", "fox- acts on the logits"),
                                          ("rand-stick-breaking", "uses no positions")])
def test_combinations_that_cannot_work_are_refused_in_one_line(name, reason):
    with pytest.raises(CheError, match=reason):
        parse_pe(name, None)


# -- stick-breaking ---------------------------------------------------------------------------------
def stick_loop(z: torch.Tensor, causal: bool) -> torch.Tensor:
    """The definition, one query at a time: walk away from the query, each key taking sigmoid(z) of
    what is left."""
    length = z.shape[-1]
    out = torch.zeros_like(z)
    for i in range(length):
        sides = [range(i - 1, -1, -1)] + ([] if causal else [range(i + 1, length)])
        share = 1.0 if causal else 0.5
        for side in sides:
            left = 1.0
            for j in side:
                beta = torch.sigmoid(z[i, j])
                out[i, j] = share * left * beta
                left = left * (1 - beta)
            out[i, i] += share * left
        if not sides[0] and causal:
            out[i, i] = 1.0
    return out


def test_stick_breaking_by_hand():
    """z = 0: every key takes half of what is left. Causal rows: [1], [1/2, 1/2], [1/4, 1/2, 1/4]
    (the leftover on the diagonal); two-sided row 0 of 3: itself 1/2 (1 + 1/4), keys 1/4, 1/8."""
    z = torch.zeros(3, 3, dtype=torch.float64)
    causal = torch.tensor([[1, 0, 0], [0.5, 0.5, 0], [0.25, 0.5, 0.25]], dtype=torch.float64)
    torch.testing.assert_close(stick_breaking_weights(z, True), causal)
    two_sided = stick_breaking_weights(z, False)
    torch.testing.assert_close(two_sided[0], torch.tensor([0.625, 0.25, 0.125], dtype=torch.float64))
    torch.testing.assert_close(two_sided.sum(-1), torch.ones(3, dtype=torch.float64))


@pytest.mark.parametrize("causal", [True, False])
def test_stick_breaking_equals_the_definition(causal):
    z = torch.randn(7, 7, dtype=torch.float64) * 3
    torch.testing.assert_close(stick_breaking_weights(z, causal), stick_loop(z, causal), atol=1e-12, rtol=1e-12)


def test_stick_breaking_equals_the_authors_reference_form_causal():
    """The authors' plain PyTorch reference (stickbreaking-attention's sb_ref, restated): log A =
    logsigmoid(z) + logsigmoid(-z) @ tril(ones, -1) over the keys j < i, output A v plus the
    leftover 1 - sum_j A_ij times the query's own value (their kernel tests' reference)."""
    torch.manual_seed(1)
    q, k, v = (torch.randn(2, 3, 6, 4, dtype=torch.float64) for _ in range(3))
    z = q @ k.transpose(-1, -2) / 2.0
    masked = torch.ones(6, 6, dtype=torch.bool).triu(0)                     # keys j >= i
    log_beta = F.logsigmoid(z).masked_fill(masked, -1e5)
    log_keep = F.logsigmoid(-z).masked_fill(masked, 0.0)
    attention = torch.exp(log_beta + log_keep @ torch.ones(6, 6, dtype=torch.float64).tril(-1))
    expected = attention @ v + (1 - attention.sum(-1, keepdim=True)) * v
    mine = stick_breaking_weights(z.masked_fill(masked.triu(1), float("-inf")), True) @ v
    torch.testing.assert_close(mine, expected, atol=1e-10, rtol=1e-10)


def test_stick_breaking_trains_without_nans_and_is_what_the_model_attends_with():
    from che.models.transformer import record_attention

    net = model("stick-breaking+causal")
    with record_attention(net) as records:
        net(torch.randint(0, 3, (2, 6)), 2).sum().backward()
    torch.testing.assert_close(records[0]["probs"], stick_breaking_weights(records[0]["logits"], True))
    assert all(torch.isfinite(p.grad).all() for p in net.parameters() if p.grad is not None)


# -- FoX ---------------------------------------------------------------------------------------------
def test_forget_gate_decays_by_hand():
    """log f = [a, b, c] per position: causal D = [[0], [b, 0], [b + c, c, 0]] (the key's own gate
    is not counted, the query's is); two-sided keys right of the query add log g from the query up
    to before the key: D_01 = g0, D_02 = g0 + g1, D_12 = g1."""
    config = ModelConfig(input_size=2, output_size=2, pe="fox", n_heads=1, d_model=2)
    module = parse_pe("fox", config).make()
    x = torch.zeros(1, 3, 2)
    f, g = torch.tensor([0.3, 0.6, 0.9]), torch.tensor([0.2, 0.5, 0.7])
    with torch.no_grad():
        module.left.weight.zero_(), module.right.weight.zero_()
        module.left.weight[0, 0], module.right.weight[0, 0] = 1.0, 1.0
    x[0, :, 0] = torch.logit(f)  # so that sigmoid(w.x) = f; the right gate reads the same x
    with torch.no_grad():
        module.right.weight[0, 0] = 1.0
        decay = module.decays(x)[0, 0]
    lf, lg = f.log(), f.log()  # both gates read x_0 with weight 1: g = f here
    expected = torch.tensor([[0, lg[0], lg[0] + lg[1]],
                             [lf[1], 0, lg[1]],
                             [lf[1] + lf[2], lf[2], 0]])
    torch.testing.assert_close(decay, expected)
    assert g is not None  # (g kept for the docstring's names)


def test_fox_initialisation_as_the_authors_code():
    torch.manual_seed(0)
    config = ModelConfig(input_size=2, output_size=2, pe="fox", d_model=256, n_heads=8)
    module = parse_pe("fox+causal", config).make()
    assert module.right is None and module.left.bias.abs().max() == 0
    assert abs(module.left.weight.std().item() - 0.02) < 0.002


def test_fox_layer_equals_the_naive_forgetting_attention_causal():
    """A whole causal FoX attention layer against the plain form of flash-linear-attention's
    naive_forgetting_attn (restated): softmax(q k^T / sqrt(d) + gc_i - gc_j, causal) v, gc the
    cumulative sum of logsigmoid(gate(x)) in float32."""
    net = model("fox+causal", d_model=16, n_heads=2)
    layer = net.blocks[0].attention
    x = torch.randn(1, 2, 5, 16, dtype=torch.float64)
    with torch.no_grad():
        got = layer(x, [None])
        qkv = (x[0] @ layer.qkv.weight[0]).view(2, 5, 3, 2, 8)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)                                  # [B, H, T, d]
        gc = F.logsigmoid(layer.pes[0].left(x[0]).float()).cumsum(1).transpose(1, 2).double()
        logits = q @ k.transpose(-1, -2) / math.sqrt(8) + gc[..., :, None] - gc[..., None, :]
        logits = logits.masked_fill(torch.ones(5, 5, dtype=torch.bool).triu(1), float("-inf"))
        y = (torch.softmax(logits, -1) @ v).transpose(1, 2).reshape(2, 5, 16)
        expected = y @ layer.out.weight[0]
    torch.testing.assert_close(got[0], expected, atol=1e-6, rtol=1e-6)


# -- SSMax --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_ssmax_multiplies_the_logits_by_s_log_n(causal):
    config = ModelConfig(input_size=2, output_size=2, pe="ssmax-alibi", n_heads=4, d_model=32)
    module = parse_pe("ssmax-alibi" + ("+causal" if causal else ""), config).make().double()
    plain = parse_pe("alibi" + ("+causal" if causal else ""), config).make().double()
    with torch.no_grad():
        module.scale.copy_(torch.tensor([0.43, 1.0, 0.1, 2.0]))
    q, k = torch.randn(2, 4, 6, 8, dtype=torch.float64), torch.randn(2, 4, 6, 8, dtype=torch.float64)
    rq, rk = module.rotate(q, k)
    logits = rq @ rk.transpose(-1, -2) / math.sqrt(8) + module.bias(q, k)
    keys = torch.arange(1, 7, dtype=torch.float64) if causal else torch.full((6,), 6.0, dtype=torch.float64)
    factor = module.scale.detach()[:, None, None] * keys.log()[:, None]
    expected = factor * (q @ k.transpose(-1, -2) / math.sqrt(8) + plain.bias(q, k))
    torch.testing.assert_close(logits, expected)
    assert module.scale.requires_grad and parse_pe("ssmax-none", config).make().scale[0].item() == pytest.approx(0.43)


# -- p-RoPE -------------------------------------------------------------------------------------------
def test_p_rope_rotates_the_highest_frequencies_only():
    """d_head 8: 4 pairs with frequencies 10000^(-2k/8); p = 0.75 rotates pairs 0-2 exactly as RoPE
    and leaves pair 3 (the lowest frequency) unrotated."""
    config = ModelConfig(input_size=2, output_size=2, pe="p-rope")
    x = torch.randn(1, 1, 5, 8, dtype=torch.float64)
    rope = parse_pe("rope", config).make()
    prope = parse_pe("p-rope", config).make()
    (pq, _), (rq, _) = prope.rotate(x, x), rope.rotate(x, x)
    torch.testing.assert_close(pq[..., :6], rq[..., :6], rtol=0, atol=0)
    torch.testing.assert_close(pq[..., 6:], x[..., 6:], rtol=0, atol=0)
    angle = 3 * 10000 ** (-2 / 8)  # position 3, pair 1
    a, b = x[0, 0, 3, 2], x[0, 0, 3, 3]
    torch.testing.assert_close(pq[0, 0, 3, 2:4], torch.stack([a * math.cos(angle) - b * math.sin(angle),
                                                              b * math.cos(angle) + a * math.sin(angle)]))
    whole = parse_pe("p-rope", dataclasses.replace(config, rope_fraction=1.0)).make()
    assert torch.equal(whole.rotate(x, x)[0], rq)
    assert torch.equal(parse_pe("p-rope", dataclasses.replace(config, rope_fraction=0.0)).make().rotate(x, x)[0], x)


def test_the_new_settings_leave_earlier_run_ids_alone():
    from che.config import make_config

    config = make_config("reverse_string", "rope", "cpu")
    assert "rope_fraction" not in config.identity() and "bipe_segment" not in config.identity()
    changed = make_config("reverse_string", "p-rope", "cpu", rope_fraction=0.5)
    assert changed.identity()["rope_fraction"] == 0.5


# -- BiPE ---------------------------------------------------------------------------------------------
def test_segments_from_separators_by_hand():
    """A separator ends its segment (BiPE's rule): ids [5, 6, S, 7, 8, 9, S, S, 4, 5]."""
    tokens = torch.tensor([[5, 6, 99, 7, 8, 9, 99, 99, 4, 5]])
    index, inside = segment_positions(tokens, (99,), 8)
    assert index.tolist() == [[0, 0, 0, 1, 1, 1, 1, 2, 3, 3]]
    assert inside.tolist() == [[0, 1, 2, 0, 1, 2, 3, 0, 0, 1]]


def test_segments_as_fixed_chunks_by_hand():
    index, inside = segment_positions(torch.zeros(2, 7, dtype=torch.long), (), 3)
    assert index.tolist() == [[0, 0, 0, 1, 1, 1, 2]] * 2 and inside.tolist() == [[0, 1, 2, 0, 1, 2, 0]] * 2


def test_bipe_alibi_bias_and_rope_over_segment_indices():
    config = ModelConfig(input_size=2, output_size=2, pe="bipe-alibi", n_heads=2, d_model=16)
    segments = segment_positions(torch.zeros(1, 5, dtype=torch.long), (), 2)   # segments [0, 0, 1, 1, 2]
    alibi = parse_pe("bipe-alibi", config).make()
    alibi.segments = segments
    q = torch.zeros(1, 2, 5, 8)
    bias = alibi.bias(q, q)
    slopes = alibi_slopes(2) * ALIBI_SLOPE_FACTOR
    assert bias[0, 1, 0, 1] == 0 and bias[0, 1, 0, 4] == pytest.approx(-2 * slopes[1].item())
    assert bias[0, 0, 4, 0] == pytest.approx(slopes[0].item() * (-2 + 0.5))
    rope = parse_pe("bipe-rope", config).make()
    rope.segments = segments
    x = torch.randn(1, 2, 5, 8)
    rq, _ = rope.rotate(x, x)
    torch.testing.assert_close(rq[0, :, 2:4], rotate_pairs(x[0, :, 2:4], torch.tensor([1, 1])))
    assert torch.equal(rq[..., :2, :], x[..., :2, :])  # segment 0: angle 0


def test_bipe_embeds_the_position_inside_the_segment():
    """The model adds table[position inside the segment]: with the separators of binary_addition,
    the token after `+` gets row 0 again."""
    net = Transformer(ModelConfig(input_size=3, output_size=2, pe="bipe-alibi", dropout=0.0,
                                  segment_separators=(2,)))
    embedding = net.absolute_pes[0]
    x = torch.zeros(1, 1, 5, 64)
    net._set_segments(torch.tensor([[[1, 0, 2, 1, 1]]]))
    assert embedding.segments[1].tolist() == [[0, 1, 2, 0, 1]]
    torch.testing.assert_close(embedding(x[0])[0, 3], embedding.table[0])


def test_tasks_declare_their_separators():
    from che.config import make_config
    from che.registry import TASKS

    model_config = make_config("binary_addition", "bipe-alibi", "cpu").model_for(TASKS.get("binary_addition"))
    assert model_config.segment_separators == (2,)
    assert TASKS.get("reverse_string").segment_separators == ()


# -- listings -------------------------------------------------------------------------------------
@pytest.mark.parametrize("name, cited", [("fox", "Lin et al. 2025"), ("stick-breaking", "Tan et al. 2025"),
                                         ("ssmax-alibi", "Nakanishi 2025"), ("p-rope", "Barbero et al. 2025"),
                                         ("bipe-alibi", "He et al. 2024"), ("none+causal", "causal")])
def test_che_pes_describes_each(name, cited, cli):
    result = cli("pes", name)
    assert result.exit_code == 0, result.stderr
    assert cited in " ".join(result.stdout.split())


@pytest.mark.parametrize("name", ["fox", "fox+causal", "bipe-alibi", "ssmax-alibi", "stick-breaking", "p-rope",
                                  "none+causal"])
def test_che_pes_show_gives_each_bias_at_initialisation(name):
    """FoX at x = 0: every gate 1/2, so D_ij = -|i - j| log 2; BiPE over chunks of 2: ALiBi x 96 over
    segment indices."""
    from che.runners.inspection import initial_bias

    bias, note = initial_bias(name, 6, 2)
    if name.startswith("fox"):
        i = torch.arange(6)
        expected = -(i[:, None] - i[None, :]).abs() * math.log(2)
        if name.endswith("+causal"):
            expected = expected.masked_fill(i[None, :] > i[:, None], 0.0)
            assert "masked" in note
        torch.testing.assert_close(bias[0], expected.float())
    elif name in ("stick-breaking", "p-rope", "none+causal"):
        assert bias is None
    else:
        assert bias is not None and bias.shape[-2:] == (6, 6)
