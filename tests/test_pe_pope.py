"""PoPE (Gopalakrishnan et al. 2025): the paper's score written out entry by entry, hand-computed
cases, packs against runs alone, CUDA graphs, the CLI and a smoke run in both modes."""

from __future__ import annotations

import cmath
import json
import math

import pytest
import torch
import torch.nn.functional as F

import test_cuda_graphs
import test_pack
from che.errors import CheError
from che.models import Transformer
from che.models.attention import attend
from che.models.positional import parse_pe
from che.models.positional.pope import PoPE, pope_frequencies
from che.models.positional.rotary import rotate_pairs

from che.config import ModelConfig

HEADS, D_HEAD, T = 2, 4, 6


def config(heads=HEADS, d_head=D_HEAD, **kw):
    return ModelConfig(input_size=3, output_size=2, n_heads=heads, d_model=heads * d_head, dropout=0.0, **kw)


def pope_module(name="pope", delta=None, **kw):
    module = parse_pe(name, config(**kw)).make().double()
    if delta is not None:
        with torch.no_grad():
            module.phase_bias.copy_(delta)
    return module


def paper_scores(q, k, delta):
    """The paper's score, one entry at a time: q~_tc = softplus(q_tc) e^(i t theta_c), k~_sc =
    softplus(k_sc) e^(i (s theta_c + delta_c)), theta_c = 10000^(-(c-1)/d) for c = 1..d, and
    a_ts = Re[q~_t^H k~_s] / sqrt(d). q, k: nested lists [H][T][d], delta [H][d] -> [H, T, T] (query
    t, key s)."""
    heads, length, d = len(q), len(q[0]), len(q[0][0])
    out = torch.zeros(heads, length, length, dtype=torch.float64)
    for h in range(heads):
        for t in range(length):
            for s in range(length):
                total = 0j
                for c in range(1, d + 1):
                    theta = 10000.0 ** (-(c - 1) / d)
                    q_c = math.log1p(math.exp(q[h][t][c - 1])) * cmath.exp(1j * t * theta)
                    k_c = math.log1p(math.exp(k[h][s][c - 1])) * cmath.exp(1j * (s * theta + delta[h][c - 1]))
                    total += q_c.conjugate() * k_c
                out[h, t, s] = total.real / math.sqrt(d)
    return out


def attention_logits(module, q, k, v, causal, path="explicit"):
    """What the attention layer hands the softmax for the PE's q', k' (the causal mask applied), and
    the layer's output."""
    q2, k2 = module.rotate(q, k)
    record = {}
    out = attend(q2, k2, v, pack=1, path=path, causal=causal, record=record if path == "explicit" else None)
    return record.get("logits"), out


# -- the paper's equations ------------------------------------------------------------------------
@pytest.mark.parametrize("causal", [False, True])
def test_the_logits_are_the_paper_s_score_entry_by_entry(causal):
    """Bidirectional: the score for every (t, s); causal: the same for s <= t, the rest masked. The
    fused path (SDPA on the 2d-wide real form) computes the same attention."""
    generator = torch.Generator().manual_seed(0)
    q, k, v = (torch.randn(1, HEADS, T, D_HEAD, generator=generator, dtype=torch.float64) * 2 for _ in range(3))
    delta = -2 * math.pi * torch.rand(HEADS, D_HEAD, generator=generator, dtype=torch.float64)
    module = pope_module("pope+causal" if causal else "pope", delta)
    expected = paper_scores(q[0].tolist(), k[0].tolist(), delta.tolist())
    logits, out = attention_logits(module, q, k, v, causal)
    if causal:
        future = torch.ones(T, T, dtype=torch.bool).triu(1)
        assert torch.isinf(logits[0][:, future]).all()
        expected = expected.masked_fill(future, float("-inf"))
    torch.testing.assert_close(logits[0], expected, atol=1e-12, rtol=1e-12)
    by_hand = torch.softmax(expected, dim=-1) @ v[0]
    torch.testing.assert_close(out[0], by_hand, atol=1e-12, rtol=1e-12)
    _, fused = attention_logits(module, q, k, v, causal, path="fused")
    torch.testing.assert_close(fused[0], by_hand, atol=1e-12, rtol=1e-12)


def test_d_frequencies_with_rope_s_base():
    """One frequency per channel, 10000^(-(c-1)/d); every other one is RoPE's frequency of a pair."""
    theta = pope_frequencies(8, dtype=torch.float64)
    torch.testing.assert_close(theta, torch.tensor([10000.0 ** (-c / 8) for c in range(8)], dtype=torch.float64))
    torch.testing.assert_close(theta[0::2], torch.tensor([10000.0 ** (-2 * p / 8) for p in range(4)],
                                                         dtype=torch.float64))


# -- hand-computed cases (d = 2: theta = 1 and 10000^(-1/2) = 0.01) -------------------------------
SOFTPLUS_ONE = math.log(math.e - 1)  # softplus(x) = 1


def scores_of_constant_content(delta):
    """One head, d = 2, the same query and key content (magnitudes 1) at 5 positions."""
    x = torch.full((1, 1, 5, 2), SOFTPLUS_ONE, dtype=torch.float64)
    module = pope_module(delta=torch.tensor([delta], dtype=torch.float64), heads=1, d_head=2)
    logits, _ = attention_logits(module, x, x, x, causal=False)
    return logits[0, 0]


def test_equal_content_scores_a_function_of_the_offset():
    """delta = 0: a_ts = (cos(s - t) + cos(0.01 (s - t))) / sqrt(2): sqrt(2) on the diagonal, then
    1.08912285, 0.41270511, 0.00675820 at offsets 1, 2, 3 on both sides (a symmetric Toeplitz matrix)."""
    a = scores_of_constant_content([0.0, 0.0])
    by_offset = {0: math.sqrt(2), 1: 1.0891228505122048, 2: 0.41270511445247837, 3: 0.006758199329176477}
    for t in range(5):
        for s in range(5):
            if abs(s - t) in by_offset:
                assert a[t, s].item() == pytest.approx(by_offset[abs(s - t)], abs=1e-12)
    torch.testing.assert_close(a, a.T)


def test_the_phase_bias_shifts_the_offsets_and_breaks_the_symmetry():
    """delta = (-pi/2, 0): a(s - t) = (sin(s - t) + cos(0.01 (s - t))) / sqrt(2): the key one right of
    the query scores 1.30208127, the key one left 0.11206159, the query's own 1/sqrt(2)."""
    a = scores_of_constant_content([-math.pi / 2, 0.0])
    assert a[2, 2].item() == pytest.approx(1 / math.sqrt(2), abs=1e-12)
    assert a[2, 3].item() == pytest.approx(1.3020812656715008, abs=1e-12)
    assert a[2, 1].item() == pytest.approx(0.1120615866127291, abs=1e-12)
    assert a[2, 4].item() == pytest.approx(1.3499357411682105, abs=1e-12)
    assert a[2, 0].item() == pytest.approx(0.06399498792037453, abs=1e-12)


def test_zero_content_scores_sqrt_d_log2_squared():
    """q = k = 0, delta = 0, d = 4: every magnitude is log 2, every offset 0 on the diagonal:
    a_tt = 4 log(2)^2 / sqrt(4) = 2 log(2)^2."""
    zeros = torch.zeros(1, 1, 3, 4, dtype=torch.float64)
    logits, _ = attention_logits(pope_module(heads=1, d_head=4), zeros, zeros, zeros, causal=False)
    torch.testing.assert_close(torch.diagonal(logits[0, 0]), torch.full((3,), 2 * math.log(2) ** 2,
                                                                         dtype=torch.float64))


def test_a_key_scores_highest_at_the_query_s_own_position():
    """What and where decoupled (delta = 0): one key content placed at every position scores highest
    at the query's own, whatever the content (magnitudes >= 0, cos <= 1). RoPE's score of the same
    content peaks elsewhere for some queries: content sets its phase too."""
    generator = torch.Generator().manual_seed(3)
    q = torch.randn(1, 8, 7, D_HEAD, generator=generator, dtype=torch.float64) * 3
    key = torch.randn(1, 8, 1, D_HEAD, generator=generator, dtype=torch.float64).expand(1, 8, 7, D_HEAD) * 3
    logits, _ = attention_logits(pope_module(heads=8), q, key, key, causal=False)
    assert torch.equal(logits[0].argmax(-1), torch.arange(7).expand(8, 7))
    positions = torch.arange(7)
    rope = rotate_pairs(q, positions) @ rotate_pairs(key, positions).transpose(-2, -1)
    assert not torch.equal(rope[0].argmax(-1), torch.arange(7).expand(8, 7))


# -- the phase bias: zero at first, learned, kept in [-2 pi, 0] ------------------------------------
def test_the_phase_bias_starts_at_zero_learns_and_is_projected_into_its_interval():
    torch.manual_seed(0)
    net = Transformer(config(pe="pope")).double()
    biases = [block.attention.pes[0].phase_bias for block in net.blocks]
    assert all(torch.equal(b, torch.zeros(HEADS, D_HEAD, dtype=torch.float64)) for b in biases)
    net(torch.randint(0, 3, (2, 5)), 2).square().sum().backward()
    assert all(b.grad.abs().sum() > 0 for b in biases)
    with torch.no_grad():
        biases[0].copy_(torch.tensor([[-7.0, 1.0, -1.0, 0.0], [-6.0, -0.5, 3.0, -6.3]]))
    net.project_()
    torch.testing.assert_close(biases[0], torch.tensor([[-2 * math.pi, 0.0, -1.0, 0.0],
                                                        [-6.0, -0.5, 0.0, -2 * math.pi]], dtype=torch.float64))


# -- packs equal runs alone -------------------------------------------------------------------------
def set_phase_biases(net, run_of_module):
    """Random delta in [-2 pi, 0], drawn per (run, layer), so packed and alone get the same values."""
    with torch.no_grad():
        for layer, block in enumerate(net.blocks):
            for index, pe in enumerate(block.attention.pes):
                generator = torch.Generator().manual_seed(100 * run_of_module(index) + layer)
                pope = next(m for m in pe.modules() if isinstance(m, PoPE))  # inside ssmax- and fox- too
                pope.phase_bias.copy_(-2 * math.pi * torch.rand(pope.phase_bias.shape, generator=generator))


def grads_by_run(net, run):
    """Every parameter's gradient of run `run`, by its name in a model of one run."""
    return {entry.name: (entry.tensor.grad[run:run + 1] if entry.run is None else entry.tensor.grad)
            for entry in net.run_layout() if entry.run in (None, run)}


@pytest.mark.parametrize("pe", ["pope", "rand-pope+causal", "ssmax-fox-pope"])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_a_pack_of_two_computes_what_each_run_computes_alone(pe, dtype):
    """Transformer(config, seeds=[0, 1]) against two models seeded 0 and 1: float64 outputs and
    gradients to 1e-12; float32 outputs bit for bit (one memory layout whatever the pack size)."""
    model_config = config(pe=pe)
    packed = Transformer(model_config, seeds=[0, 1]).to(dtype)
    set_phase_biases(packed, lambda index: index)
    inputs = torch.randint(0, 3, (2, 3, 7))
    out = packed(inputs, 3, [torch.Generator().manual_seed(9 + run) for run in range(2)])
    out.square().sum().backward()
    for run in range(2):
        torch.manual_seed(run)
        alone = Transformer(model_config).to(dtype)
        set_phase_biases(alone, lambda index: run)
        mine = alone(inputs[run], 3, [torch.Generator().manual_seed(9 + run)])
        mine.square().sum().backward()
        if dtype == torch.float64:
            torch.testing.assert_close(out[run], mine, atol=1e-12, rtol=1e-12)
            theirs = grads_by_run(alone, 0)
            for name, grad in grads_by_run(packed, run).items():
                torch.testing.assert_close(grad, theirs[name], atol=1e-12, rtol=1e-12, msg=name)
        else:
            assert torch.equal(out[run], mine)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_a_training_pack_computes_what_each_run_computes_alone(dtype):
    test_pack.test_a_pack_computes_what_each_run_computes_alone("pope+causal", dtype)


def test_a_packed_run_writes_the_bits_of_the_run_alone(tmp_path):
    test_pack.test_a_packed_run_writes_the_bits_of_the_run_alone(tmp_path, "pope")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("pe", ["pope", "rand-pope+causal"])
def test_captured_steps_equal_eager_steps(pe):
    test_cuda_graphs.test_captured_steps_equal_eager_steps(pe)


# -- the command line, a smoke run, refusals --------------------------------------------------------
def test_che_pes_describes_pope(cli):
    described = cli("pes", "pope")
    assert described.exit_code == 0, described.output
    text = " ".join(described.stdout.split())
    assert "arXiv 2509.10534" in text and "cos((s - t) theta_c + delta_c)" in text
    assert "320 = 5 layers x 64" in text  # delta: 8 heads x 8 frequencies per layer
    shown = cli("pes", "--show", "pope+causal")
    assert shown.exit_code == 0, shown.output


@pytest.mark.parametrize("pe", ["pope", "pope+causal"])
def test_a_smoke_run_trains(cli, tmp_path, pe):
    result = cli("run", "--task", "parity_check", "--pe", pe, "--preset", "smoke", "--results", tmp_path)
    assert result.exit_code == 0, result.output
    record = json.loads(next((tmp_path / "parity_check" / pe).glob("*.json")).read_text())
    assert record["status"] == "finished" and record["pe"] == pe


def test_dape_cannot_wrap_pope():
    """PoPE's contribution is no bias of positions (it sets the magnitudes' phases): DAPE is refused."""
    with pytest.raises(CheError, match="DAPE needs an additive-bias PE or none, not 'pope'"):
        parse_pe("dape-pope", None)
