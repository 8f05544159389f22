"""Positional encodings against their formulas.

Every PE is checked on small explicit cases, hand-computed where feasible and otherwise against a
deliberately naive per-entry implementation of the published formula written here. Then every name
in `pe_names()` (rand- and dape- variants included) is run forward and backward at training lengths
and forward at 1,500 tokens.
"""

from __future__ import annotations

import dataclasses
import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from che.models.positional import PositionalEncoding, base, parse_pe, pe_names
from che.models.positional.absolute import Learned, SinCos, sinusoid
from che.models.positional.base import random_positions, signed_offsets
from che.models.positional.bilevel import ALIBI_SLOPE_FACTOR, segment_positions
from che.models.positional.biases import (
    FIRE,
    T5,
    ALiBi,
    KerpleLog,
    KerpleLogSymmetric,
    KerplePower,
    KerplePowerSymmetric,
    Sandwich,
    SandwichSymmetric,
    alibi_slopes,
    t5_buckets,
)
from che.models.positional.cope import CoPE
from che.models.positional.relative import Relative
from che.models.positional.rotary import RoPE, rotate_pairs
from che.models.positional.stick_breaking import stick_breaking_weights
from che.models.transformer import Transformer

from che.config import ModelConfig

CONFIG = ModelConfig(input_size=2, output_size=2)


def config(**overrides) -> ModelConfig:
    return ModelConfig(input_size=2, output_size=2, **overrides)


def pe_modules(model) -> list[PositionalEncoding]:
    """The outermost PE modules of a model (a DAPE wrapper, not also its base)."""
    found = []
    for module in model.modules():
        if isinstance(module, PositionalEncoding) and not any(module in list(m.modules()) for m in found):
            found.append(module)
    return found


# -- ALiBi ----------------------------------------------------------------------------------------
def test_alibi_slopes_power_of_two():
    assert torch.allclose(alibi_slopes(8), torch.tensor([2.0 ** -k for k in range(1, 9)]))


@pytest.mark.parametrize("heads, exponents", [
    # the official rule: the slopes of the lower power of two, then every other slope of the next
    (6, [2, 4, 6, 8, 1, 3]),
    (12, [1, 2, 3, 4, 5, 6, 7, 8, 0.5, 1.5, 2.5, 3.5]),
])
def test_alibi_slopes_other_head_counts(heads, exponents):
    assert torch.allclose(alibi_slopes(heads), torch.tensor([2.0 ** -e for e in exponents]))


def test_alibi_m2_row():
    """As the CH reference's `compute_alibi_encodings_biases`: T = 5, head 0 (m = 0.5),
    row 2 = m * [-1.5, -0.5, 0, -1, -2]."""
    bias = ALiBi(CONFIG).bias_from_positions(torch.arange(5))
    assert torch.allclose(bias[0, 2], 0.5 * torch.tensor([-1.5, -0.5, 0.0, -1.0, -2.0]))


def test_fixed_biases_are_cached_outside_the_state_dict():
    q = torch.zeros(1, 8, 7, 8)
    for cls in (ALiBi, Sandwich):
        pe = cls(CONFIG).eval()
        first, second = pe.bias(q, q), pe.bias(q, q)
        assert first is second                                # served from the cache
        assert cls(CONFIG).bias(q, q) is first                # shared by every layer
        assert torch.equal(first, pe.bias_from_positions(torch.arange(7)))
        assert all("cache" not in key for key in pe.state_dict())
    randomized = ALiBi(CONFIG, randomized=True).train()
    assert not torch.equal(randomized.bias(q, q), randomized.bias(q, q))  # draws are never cached


# -- KERPLE ---------------------------------------------------------------------------------------
def _set(parameter, values):
    with torch.no_grad():
        parameter.copy_(torch.tensor(values, dtype=parameter.dtype))


def test_kerple_log_formula_two_sided():
    pe = KerpleLog(config(n_heads=2, d_model=8))
    _set(pe.r1, [[1.5, 0.2], [0.7, 0.4]])   # rows: keys left of the query, keys right of it
    _set(pe.r2, [[0.5, 2.0], [1.0, 3.0]])
    bias = pe.bias_from_positions(torch.arange(4))
    # head 0, a key 2 to the left: -1.5 log(1 + 0.5 * 2) = -1.5 log 2; 2 to the right: -0.7 log 3
    assert bias[0, 3, 1].item() == pytest.approx(-1.5 * math.log(2.0), rel=1e-6)
    assert bias[0, 0, 2].item() == pytest.approx(-0.7 * math.log(3.0), rel=1e-6)
    # head 1, |i - j| = 3: left -0.2 log(1 + 2 * 3), right -0.4 log(1 + 3 * 3)
    assert bias[1, 3, 0].item() == pytest.approx(-0.2 * math.log(7.0), rel=1e-6)
    assert bias[1, 0, 3].item() == pytest.approx(-0.4 * math.log(10.0), rel=1e-6)
    assert torch.all(bias.diagonal(dim1=-2, dim2=-1) == 0)


def test_kerple_symmetric_forms_share_one_row():
    for cls in (KerpleLogSymmetric, KerplePowerSymmetric):
        pe = cls(config(n_heads=2, d_model=8))
        assert pe.r1.shape == (1, 2) and pe.r2.shape == (1, 2)
        bias = pe.bias_from_positions(torch.arange(6))
        assert torch.allclose(bias, bias.transpose(-2, -1))
    log = KerpleLogSymmetric(config(n_heads=2, d_model=8))
    _set(log.r1, [[1.5, 0.2]])
    _set(log.r2, [[0.5, 2.0]])
    bias = log.bias_from_positions(torch.arange(4))
    assert bias[0, 0, 2].item() == bias[0, 2, 0].item() == pytest.approx(-1.5 * math.log(2.0), rel=1e-6)


def test_kerple_power_formula():
    pe = KerplePower(config(n_heads=2, d_model=8))
    _set(pe.r1, [[0.5, 2.0], [1.0, 3.0]])
    _set(pe.r2, [[1.5, 0.5], [1.0, 2.0]])
    bias = pe.bias_from_positions(torch.arange(5))
    assert bias[0, 4, 0].item() == pytest.approx(-0.5 * 4 ** 1.5, rel=1e-6)   # left: -0.5 * 8
    assert bias[0, 0, 4].item() == pytest.approx(-1.0 * 4.0, rel=1e-6)        # right: -1 * 4^1
    assert bias[1, 1, 0].item() == pytest.approx(-2.0, rel=1e-6)              # -2 * 1^0.5
    assert bias[1, 0, 4].item() == pytest.approx(-3.0 * 16.0, rel=1e-6)       # -3 * 4^2


def test_kerple_clamping():
    log, power = KerpleLog(config(n_heads=2, d_model=8)), KerplePower(config(n_heads=2, d_model=8))
    for pe in (log, power):
        _set(pe.r1, [[-1.0, 3.0], [3.0, -1.0]])
        _set(pe.r2, [[-0.5, 3.0], [3.0, -0.5]])
        pe.project_()
    assert log.r1.flatten().tolist() == pytest.approx([0.01, 3.0, 3.0, 0.01])
    assert log.r2.flatten().tolist() == pytest.approx([0.01, 3.0, 3.0, 0.01])   # no upper bound (log)
    assert power.r1.flatten().tolist() == pytest.approx([0.01, 3.0, 3.0, 0.01])
    assert power.r2.flatten().tolist() == pytest.approx([0.01, 2.0, 2.0, 0.01])  # 0 < r2 <= 2
    bias = power.bias_from_positions(torch.arange(3))
    assert bias[1, 2, 0].item() == pytest.approx(-3.0 * 2.0 ** 2.0, rel=1e-6)   # left row of head 1


def test_kerple_init_ranges():
    torch.manual_seed(0)
    log, power = KerpleLog(config(n_heads=64)), KerplePower(config(n_heads=64))
    assert 0 <= log.r1.min() and log.r1.max() <= 2 and 0 <= log.r2.min() and log.r2.max() <= 1
    assert 0 <= power.r1.min() and power.r1.max() <= 1 and 0 <= power.r2.min() and power.r2.max() <= 2
    assert not torch.equal(log.r1[0], log.r1[1])   # the sides are drawn independently


@pytest.mark.parametrize("cls", [KerpleLog, KerplePower, KerpleLogSymmetric])
def test_kerple_gradients_reach_parameters(cls):
    pe = cls(CONFIG)
    pe.bias_from_positions(torch.arange(6)).sum().backward()
    for p in (pe.r1, pe.r2):
        assert p.grad is not None and torch.isfinite(p.grad).all() and (p.grad != 0).all()


# -- T5 -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("relative, bucket", [
    # relative = j - i; keys at or left of the query use buckets 0..15
    (0, 0), (-1, 1), (-7, 7),                   # exact: |j - i| < 8
    (-8, 8), (-12, 9), (-20, 10), (-50, 13),    # 8 + floor(log(n/8) / log(16) * 8)
    (-100, 15), (-128, 15), (-1000, 15),        # capped at the last bucket of the side
    # keys right of the query: the same plus 16
    (1, 17), (7, 23), (8, 24), (12, 25), (20, 26), (50, 29), (1000, 31),
])
def test_t5_buckets(relative, bucket):
    assert t5_buckets(torch.tensor([relative])).item() == bucket


def test_t5_bias_reads_the_table():
    pe = T5(config(n_heads=2, d_model=8))
    with torch.no_grad():
        pe.table.copy_(torch.arange(64, dtype=torch.float32).view(32, 2))
    bias = pe.bias_from_positions(torch.arange(30))
    # (h, i, j) -> table[bucket(j - i), h]
    assert bias[0, 20, 0].item() == 2 * 10 + 0       # j - i = -20: bucket 10
    assert bias[1, 0, 20].item() == 2 * 26 + 1       # j - i = +20: bucket 26
    assert bias[1, 5, 5].item() == 1                 # bucket 0
    torch.manual_seed(0)
    table = T5(config(n_heads=8, d_model=64)).table   # init: N(0, d_model^-0.5), as the T5 code
    assert table.std().item() == pytest.approx(64 ** -0.5, rel=0.2) and table.abs().max() > 0


# -- FIRE -----------------------------------------------------------------------------------------
def fire_inputs(pe, positions):
    positions = torch.as_tensor(positions)
    return pe.normalized_offsets(signed_offsets(positions), positions)


def test_fire_normalisation_below_threshold():
    """p_i < L: psi(|i - j|) / psi(L), psi(x) = log(0.1 x + 1); sign(i - j)."""
    pe = FIRE(config(fire_threshold=512.0))
    x = fire_inputs(pe, torch.arange(4))
    psi = lambda v: math.log(0.1 * v + 1)  # noqa: E731
    assert x[3, 1].item() == pytest.approx(psi(2) / psi(512), rel=1e-5)
    assert x[1, 3].item() == pytest.approx(-psi(2) / psi(512), rel=1e-5)   # key right of the query
    assert x[0, 3].item() == pytest.approx(-psi(3) / psi(512), rel=1e-5)
    assert torch.all(x.diagonal() == 0)


def test_fire_normalisation_above_threshold():
    """Once the query position exceeds L, the normaliser is psi(p_i): the farthest key maps to 1."""
    pe = FIRE(config(fire_threshold=2.0))
    with torch.no_grad():
        pe.c.fill_(0.5)
    x = fire_inputs(pe, [0, 1, 5, 10])              # e.g. randomized positions
    psi = lambda v: math.log(0.5 * v + 1)  # noqa: E731
    assert x[3, 0].item() == pytest.approx(1.0, rel=1e-5)                  # psi(10) / psi(10)
    assert x[3, 2].item() == pytest.approx(psi(5) / psi(10), rel=1e-5)
    assert x[2, 0].item() == pytest.approx(psi(5) / psi(5), rel=1e-5)
    assert x[1, 0].item() == pytest.approx(psi(1) / psi(2), rel=1e-5)      # p_i = 1 < L = 2
    assert x[0, 3].item() == pytest.approx(-psi(10) / psi(2), rel=1e-5)    # p_i = 0 < L


def test_fire_threshold_is_an_eighth_of_the_training_sequence():
    """The DAPE code's ratio (threshold 64 for 512-token training sequences): at CHE's training
    lengths the normaliser psi(max(L, p_i)) follows the query position."""
    from che.config import make_config
    from che.registry import TASKS

    task = TASKS.get("reverse_string")
    mc = make_config("reverse_string", "fire", "paper").model_for(task)
    assert mc.fire_threshold == 80 / 8          # N = 40: 40 inputs + 40 outputs
    pe = FIRE(mc)
    x = fire_inputs(pe, torch.arange(80))
    assert x[79, 0].item() == pytest.approx(1.0, rel=1e-5)   # the farthest key of the last query
    assert x[40, 0].item() == pytest.approx(1.0, rel=1e-5)


def test_fire_mlp_keeps_the_authors_initialisation():
    """PyTorch's default Linear init (kaiming-uniform, bias U(-1/sqrt(fan_in), ...)), not Haiku's
    trunc-normal: the first layer has fan_in 1, so its weights spread over (-1, 1)."""
    torch.manual_seed(0)
    model = Transformer(config(pe="fire"))
    first = model.blocks[0].attention.pes[0].mlp[0]
    assert first.weight.abs().max() > 0.9 and first.bias.abs().max() > 0.5 and (first.bias != 0).all()


def test_fire_bias_is_the_mlp_of_the_normalised_offsets():
    pe = FIRE(CONFIG)
    positions = torch.arange(6)
    x = fire_inputs(pe, positions)
    bias = pe.bias_from_positions(positions)
    assert bias.shape == (8, 6, 6)
    for i, j in [(0, 0), (4, 1), (1, 4)]:
        assert torch.allclose(bias[:, i, j], pe.mlp(x[i, j].view(1)), atol=1e-6)


# -- sin-cos --------------------------------------------------------------------------------------
def test_sincos_layout_and_direction():
    """As the RPE reference code: token t gets position t; [sin | cos] halves, base 10000."""
    pe = SinCos(CONFIG)
    x = torch.zeros(1, 5, 64)
    table = pe(x)[0]                                   # what the embeddings get, token by token
    assert torch.equal(table[0], torch.cat([torch.zeros(32), torch.ones(32)]))
    assert table[1, 0].item() == pytest.approx(math.sin(1.0))
    assert table[1, 32].item() == pytest.approx(math.cos(1.0))
    assert table[1, 1].item() == pytest.approx(math.sin(10000 ** (-2 / 64)))
    assert table[4, 33].item() == pytest.approx(math.cos(4 * 10000 ** (-2 / 64)), abs=1e-6)
    assert table[3, 31].item() == pytest.approx(math.sin(3 * 10000 ** (-62 / 64)), abs=1e-7)
    assert torch.allclose(table, sinusoid(torch.arange(5), 64))


# -- RoPE -----------------------------------------------------------------------------------------
def test_rope_rotates_interleaved_pairs():
    x = torch.tensor([[1.0, 0.0, 2.0, 3.0]])   # one token, d = 4: pairs (0, 1) and (2, 3)
    out = rotate_pairs(x, torch.tensor([1]))
    a0, a1 = 1.0, 10000 ** (-2 / 4)             # angles p * theta_k, p = 1
    expected = [math.cos(a0), math.sin(a0),
                2 * math.cos(a1) - 3 * math.sin(a1), 3 * math.cos(a1) + 2 * math.sin(a1)]
    assert out[0].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.equal(rotate_pairs(x, torch.tensor([0])), x)


def test_rope_scores_depend_only_on_offsets():
    torch.manual_seed(0)
    pe = RoPE(CONFIG)
    T = 12
    q = torch.randn(8).expand(1, 1, T, 8)       # the same content at every position
    k = torch.randn(8).expand(1, 1, T, 8)
    qr, kr = pe.rotate(q, k)
    scores = (qr @ kr.transpose(-2, -1))[0, 0]
    for offset in range(-T + 1, T):
        diagonal = scores.diagonal(offset)
        assert torch.allclose(diagonal, diagonal[0].expand_as(diagonal), atol=1e-5)
    assert not torch.allclose(scores.diagonal(1)[0], scores.diagonal(2)[0])


# -- relative (Transformer-XL) --------------------------------------------------------------------
def naive_relative_logits(pe: Relative, q, k, offset):
    """((q_i + u) . k_j + (q_i + v) . W_R R_{offset(i, j)}) / sqrt(d_head), one entry at a time."""
    batch, heads, T, d = q.shape
    out = torch.empty(batch, heads, T, T)
    for i in range(T):
        for j in range(T):
            r = pe.w_r(sinusoid(offset(i, j), pe.d_model)).view(heads, d)
            for b in range(batch):
                for h in range(heads):
                    content = (q[b, h, i] + pe.u[h]) @ k[b, h, j]
                    position = (q[b, h, i] + pe.v[h]) @ r[h]
                    out[b, h, i, j] = (content + position) / math.sqrt(d)
    return out


@pytest.mark.parametrize("positions", [None, [0, 3, 4, 9, 30]])
def test_relative_matches_naive_transformer_xl(positions, monkeypatch):
    torch.manual_seed(0)
    cfg = config(n_heads=2, d_model=8, rand_mode="positions")
    pe = Relative(cfg, randomized=positions is not None).train()
    T = 5
    if positions is not None:   # pin the "random" draw
        monkeypatch.setattr(base, "random_positions", lambda count, length, device=None: torch.tensor(positions))
    q, k = torch.randn(2, 2, T, 4), torch.randn(2, 2, T, 4)
    logits = q @ k.transpose(-2, -1) / math.sqrt(4) + pe.bias(q, k)
    p = torch.tensor(positions or list(range(T)))
    expected = naive_relative_logits(pe, q, k, lambda i, j: p[i] - p[j])
    assert torch.allclose(logits, expected, atol=1e-5)


RANDOM_OFFSETS = [3, 7, 8, 100]   # r_1 < ... < r_4 for T = 5


@pytest.mark.parametrize("mode, encoded", [
    # RPE's intended NOISY_RELATIVE: i - j = d encoded as sign(d) r_|d|
    ("offsets", lambda i, j: math.copysign(([0] + RANDOM_OFFSETS)[abs(i - j)], i - j)),
    # RPE's released code: left keys sinusoid(L - r_d), the rest sinusoid(L - 1); in che's
    # sign convention (query minus key) the sinusoid's argument is negated
    ("reference", lambda i, j: ([0] + RANDOM_OFFSETS)[i - j] - 2048 if i > j else 1 - 2048),
])
def test_randomized_relative_offsets_modes_match_naive(mode, encoded, monkeypatch):
    torch.manual_seed(0)
    pe = Relative(config(n_heads=2, d_model=8, rand_mode=mode), randomized=True).train()
    monkeypatch.setattr(base, "random_offsets", lambda count, length, device=None: torch.tensor(RANDOM_OFFSETS))
    q, k = torch.randn(2, 2, 5, 4), torch.randn(2, 2, 5, 4)
    logits = q @ k.transpose(-2, -1) / math.sqrt(4) + pe.bias(q, k)
    expected = naive_relative_logits(pe, q, k, lambda i, j: torch.tensor(float(encoded(i, j))))
    assert torch.allclose(logits, expected, atol=1e-4)


def test_relative_toeplitz_and_general_paths_agree():
    torch.manual_seed(0)
    pe = Relative(CONFIG)
    qv = torch.randn(2, 8, 17, 8)
    steps = torch.arange(16, -17, -1)
    assert torch.allclose(pe._position_term_toeplitz(qv, steps), pe._position_term_any(qv, torch.arange(17)),
                          atol=1e-4)


def test_relative_parameter_count():
    """248,962 + 5 x (64 * 64 + 2 * 8 * 8) = 270,082 on a binary task."""
    assert Transformer(config(pe="relative")).num_parameters() == 270_082
    assert Transformer(config(pe="rand-relative")).num_parameters() == 270_082
    pe = Transformer(config(pe="relative")).blocks[0].attention.pes[0]
    assert pe.u.std().item() == pytest.approx(0.02, rel=0.5) and pe.w_r.bias is None


# -- Sandwich -------------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, left", [(Sandwich, 0.5), (SandwichSymmetric, 0.0)])
def test_sandwich_matches_formula(cls, left):
    cfg = config(n_heads=4, d_model=16)
    pe = cls(cfg)
    T, dim = 9, Sandwich.dim
    bias = pe.bias_from_positions(torch.arange(T))
    for h in range(4):
        ratio = 8 * (h + 1) / 4
        for i in range(T):
            for j in range(T):
                inner = sum(math.cos((i - j) / 10000 ** (2 * k / dim)) for k in range(1, dim // 2 + 1))
                inner += left * (j < i)
                assert bias[h, i, j].item() == pytest.approx((inner - dim / 2) / ratio, abs=1e-4)
    assert torch.allclose(bias.diagonal(dim1=-2, dim2=-1), torch.zeros(4, T), atol=1e-4)
    assert torch.allclose(bias, bias.transpose(-2, -1), atol=1e-5) == (left == 0)
    assert list(pe.parameters()) == []


# -- CoPE -----------------------------------------------------------------------------------------
def naive_cope_logits(pe: CoPE, scores, q):
    batch, heads, T, d = q.shape
    out = scores.clone()
    for b in range(batch):
        for h in range(heads):
            for i in range(T):
                gates = torch.sigmoid(scores[b, h, i])
                for j in range(T):
                    if j <= i:
                        p, table = gates[j:i + 1].sum(), pe.left
                    else:
                        p, table = gates[i:j + 1].sum(), pe.right
                    p = min(p.item(), pe.npos - 1)
                    lo, hi = math.floor(p), math.ceil(p)
                    e = (1 - (p - lo)) * table[lo] + (p - lo) * table[hi]
                    out[b, h, i, j] += q[b, h, i] @ e / math.sqrt(d)
    return out


class SmallCoPE(CoPE):
    npos = 3


@pytest.mark.parametrize("cls, scale", [(CoPE, 1.0), (SmallCoPE, 6.0)])
def test_cope_matches_naive_loop(cls, scale):
    torch.manual_seed(0)
    pe = cls(config(n_heads=2, d_model=8))
    with torch.no_grad():
        pe.left.normal_()
        pe.right.normal_()
    q, k = torch.randn(2, 2, 6, 4), torch.randn(2, 2, 6, 4) * scale   # scale 6: gates near 1, clamps
    scores = q @ k.transpose(-2, -1) / 2
    assert torch.allclose(pe.logits(scores, q, k), naive_cope_logits(pe, scores, q), atol=1e-5)


def test_cope_gradients_reach_gates_and_tables():
    torch.manual_seed(0)
    pe = CoPE(config(n_heads=2, d_model=8))
    with torch.no_grad():
        pe.left.normal_()
        pe.right.normal_()
    q, k = torch.randn(1, 2, 5, 4, requires_grad=True), torch.randn(1, 2, 5, 4, requires_grad=True)
    scores = q @ k.transpose(-2, -1) / 2
    # The position part alone: k reaches it only through the gates (the interpolation weight).
    (pe.logits(scores, q, k) - scores).sum().backward()
    assert (pe.left.grad != 0).any() and (pe.right.grad != 0).any()
    assert k.grad is not None and (k.grad != 0).any()


def test_cope_cannot_be_randomized():
    with pytest.raises(Exception, match="cannot be randomized"):
        parse_pe("rand-cope", CONFIG)
    assert "rand-cope" not in pe_names()


# -- randomized positions -------------------------------------------------------------------------
def test_random_positions_sorted_distinct_in_range():
    for _ in range(20):
        p = random_positions(40, 64)
        assert p.dtype == torch.int64 and len(p) == 40
        assert torch.all(p[1:] > p[:-1]) and p.min() >= 0 and p.max() < 64
    assert not torch.equal(random_positions(40, 2048), random_positions(40, 2048))


def test_positions_redrawn_each_pass_and_at_eval_only_if_asked():
    pe = ALiBi(config(rand_at_eval=True), randomized=True)
    for mode in (pe.train, pe.eval):
        mode()
        assert not torch.equal(pe.positions(30, "cpu"), pe.positions(30, "cpu"))
    quiet = ALiBi(config(rand_at_eval=False), randomized=True)
    assert not torch.equal(quiet.train().positions(30, "cpu"), quiet.positions(30, "cpu"))
    assert torch.equal(quiet.eval().positions(30, "cpu"), torch.arange(30))


def _perturb_pe_parameters(model):
    """So that every PE parameter shows in the output."""
    with torch.no_grad():
        for pe in pe_modules(model):
            for p in pe.parameters():
                p.add_(0.3 * torch.randn_like(p))
    model.project_()


@pytest.mark.parametrize("name", [n for n in pe_names() if "rand-" in n])
def test_randomized_model_m3(name):
    """The same weights give different logits on two passes; one draw per pass is
    shared by the batch (identical inputs, eval mode, so no dropout: identical outputs); with
    rand_at_eval False, evaluation is deterministic. (L = 256 rather than 2048: t5's buckets end at
    distance 128, so with L = 2048 nearly every random distance falls in the last one.)"""
    torch.manual_seed(0)
    model = Transformer(config(pe=name, n_layers=2, rand_max_length=256)).eval()
    _perturb_pe_parameters(model)
    x = torch.randint(0, 2, (1, 12)).expand(3, 12)
    with torch.no_grad():
        first, second = model(x, 12), model(x, 12)
        assert not torch.allclose(first, second)
        assert torch.allclose(first[0], first[1], atol=1e-5) and torch.allclose(first[0], first[2], atol=1e-5)
        model.config.rand_at_eval = False
        assert torch.equal(model(x, 12), model(x, 12))


# -- learned --------------------------------------------------------------------------------------
def test_learned_clamps_past_its_table_and_warns_once():
    pe = Learned(config(learned_max_length=8))
    assert pe.table.shape == (8, 64)
    with pytest.warns(UserWarning, match="clamped"):
        out = pe.encode(torch.arange(12))
    assert torch.equal(out[:8], pe.table)
    assert torch.equal(out[8:], pe.table[7].expand(4, 64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        pe.encode(torch.arange(12))          # the second time, silently
        Learned(config(learned_max_length=8)).encode(torch.arange(8))   # within the table: silent


def test_learned_table_size_and_init():
    torch.manual_seed(0)
    assert Learned(config(learned_max_length=16, rand_max_length=64), randomized=True).table.shape == (64, 64)
    assert Learned(config(learned_max_length=128, rand_max_length=64), randomized=True).table.shape == (128, 64)
    table = Learned(config(learned_max_length=4096)).table
    assert table.abs().max() <= 2.0 and table.std().item() == pytest.approx(0.88, abs=0.03)  # trunc at 2 sigma


# -- every PE name --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", pe_names())
def test_every_pe_trains(name):
    """Forward and backward at a training length; every parameter of the PE gets a finite gradient,
    nonzero somewhere."""
    torch.manual_seed(0)
    model = Transformer(config(pe=name)).train()
    x = torch.randint(0, 2, (2, 9))
    logits = model(x, 9)
    F.cross_entropy(logits.reshape(-1, 2), torch.randint(0, 2, (18,))).backward()
    parameters = [(n, p) for pe in pe_modules(model) for n, p in pe.named_parameters()]
    for parameter_name, p in parameters:
        assert p.grad is not None, f"{name}: no gradient for {parameter_name}"
        assert torch.isfinite(p.grad).all(), f"{name}: non-finite gradient for {parameter_name}"
        if "rand-" in name and parameter_name.endswith("threshold_multiplier"):
            continue  # FIRE: random positions lie mostly past L, where L is not used
        if "rand-kerple-power" in name:
            continue  # -r1 d^r2 at random distances of hundreds: the softmax saturates on the diagonal
        assert (p.grad != 0).any(), f"{name}: zero gradient for {parameter_name}"
    if name.removeprefix("rand-") not in {"none", "sin-cos", "rope", "p-rope", "alibi", "sandwich", "sandwich-sym",
                                          "stick-breaking", "rope-yarn", "rope-ntk", "irope", "rnope", "none-tempered",
                                          "rope-chunked"}:
        assert parameters, f"{name}: expected learnable PE parameters"


@pytest.mark.parametrize("name", pe_names())
def test_every_pe_runs_at_1500_tokens(name):
    """duplicate_string at length 500: 500 inputs + 1000 outputs. One layer and a narrow DAPE MLP
    keep this fast on a CPU; the PE code path is the same as with the defaults."""
    torch.manual_seed(0)
    model = Transformer(config(pe=name, n_layers=1, dape_width=8)).eval()
    with torch.no_grad():
        logits = model(torch.randint(0, 2, (1, 500)), 1000)
    assert logits.shape == (1, 1000, 2) and torch.isfinite(logits).all()


# -- left and right -------------------------------------------------------------------------------
def default_bias_pes() -> list[str]:
    """Every built-in additive-bias PE in its default form (not the published symmetric -sym ones)."""
    from che.models.positional import BiasPE as Bias
    from che.models.positional import base_classes

    return sorted({cls.name for cls in base_classes().values()
                   if issubclass(cls, Bias) and not cls.name.endswith("-sym") and cls.__module__.startswith("che.")})


def test_the_default_bias_pes_are_the_ones_expected():
    assert default_bias_pes() == ["alibi", "fire", "kerple-log", "kerple-power", "sandwich", "t5"]


@pytest.mark.parametrize("name", default_bias_pes())
def test_every_default_bias_pe_tells_left_from_right_at_initialisation(name):
    """B != B^T at initialisation, and the encoder's output on a reversed sequence is not the mirror
    of its output on the sequence (with a symmetric bias and no other PE it would be)."""
    torch.manual_seed(0)
    model = Transformer(config(pe=name, dropout=0.0)).eval()
    pe = model.blocks[0].attention.pes[0]
    bias = pe.bias(torch.zeros(1, 8, 12, 8), torch.zeros(1, 8, 12, 8))
    assert not torch.allclose(bias, bias.transpose(-2, -1), atol=1e-4)
    tokens = torch.randint(0, 3, (1, 2, 12))
    with torch.no_grad():
        forward, backward = model.encode(tokens), model.encode(tokens.flip(-1))
    assert not torch.allclose(backward, forward.flip(2), atol=1e-4)


@pytest.mark.parametrize("name", ["kerple-log-sym", "kerple-power-sym", "sandwich-sym"])
def test_the_symmetric_forms_are_mirror_symmetric(name):
    """The control: with a symmetric bias the encoder commutes with reversing the sequence."""
    torch.manual_seed(0)
    model = Transformer(config(pe=name, dropout=0.0)).eval()
    tokens = torch.randint(0, 3, (1, 2, 12))
    with torch.no_grad():
        forward, backward = model.encode(tokens), model.encode(tokens.flip(-1))
    assert torch.allclose(backward, forward.flip(2), atol=1e-4)


# -- stick-breaking --------------------------------------------------------------------------------
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


# -- FoX -------------------------------------------------------------------------------------------
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


# -- SSMax -----------------------------------------------------------------------------------------
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


@pytest.mark.parametrize("causal", [False, True])
def test_ssmax_scales_a_bias_that_reads_the_query_once(causal):
    """Over Transformer-XL's relative PE, whose bias reads q: the attention hands `bias` the scaled
    query, and SSMax computes the base's bias from the query before its scale, so the logits are
    s log n (S + B(q)), not S s log n + B(s log n q) s log n (che before 0.3, which has another run id)."""
    from che.config import implementation_versions

    suffix = "+causal" if causal else ""
    config = ModelConfig(input_size=2, output_size=2, n_heads=4, d_model=32)
    torch.manual_seed(0)
    module = parse_pe("ssmax-relative" + suffix, config).make().double()
    plain = module.base
    q, k = torch.randn(2, 4, 6, 8, dtype=torch.float64), torch.randn(2, 4, 6, 8, dtype=torch.float64)
    rq, rk = module.rotate(q, k)
    logits = rq @ rk.transpose(-1, -2) / math.sqrt(8) + module.bias(rq, rk)  # as the attention calls them
    keys = torch.arange(1, 7, dtype=torch.float64) if causal else torch.full((6,), 6.0, dtype=torch.float64)
    factor = module.scale.detach()[:, None, None] * keys.log()[:, None]
    expected = factor * (q @ k.transpose(-1, -2) / math.sqrt(8) + plain.bias(q, k))
    torch.testing.assert_close(logits, expected)
    assert implementation_versions("reverse_string", "ssmax-relative" + suffix)["pe"] == {"relative": 2, "ssmax": 2}
    assert implementation_versions("reverse_string", "ssmax-alibi" + suffix)["pe"] == {"alibi": 3 if causal else 2,
                                                                                       "ssmax": 1}


# -- p-RoPE ----------------------------------------------------------------------------------------
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


# -- BiPE ------------------------------------------------------------------------------------------
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
