"""Every `+causal` is the published causal form: each PE's logits for the keys a causal query sees
(j <= i; the attention masks j > i) against its paper's equation, written out here entry by entry.

d = i - j >= 0 is the distance from the query back to the key; S = q_i . k_j / sqrt(d_head).

Also: no causal query reads a later key, on every attention path; stick-breaking and FoX against
plain re-statements of their authors' reference forms.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from che.config import ModelConfig
from che.models import Transformer
from che.models.positional import parse_pe
from che.models.positional.biases import alibi_slopes
from che.models.positional.stick_breaking import stick_breaking_weights

HEADS, D_HEAD, T = 4, 8, 9
CONFIG = ModelConfig(input_size=2, output_size=2, n_heads=HEADS, d_model=HEADS * D_HEAD, fire_threshold=3.0)


def causal_module(name: str):
    torch.manual_seed(0)
    module = parse_pe(name + "+causal", CONFIG).make().double()
    assert all(part.causal for part in module.modules() if hasattr(part, "causal"))
    return module


def model_logits(module, q, k, x=None):
    """What the attention layer hands the softmax, before the causal mask."""
    if getattr(module, "reads_input", False):
        module.see(x)
    q, k = module.rotate(q, k)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
    if module.transforms_scores:
        return module.logits(scores, q, k)
    bias = module.bias(q, k)
    return scores if bias is None else scores + bias


def inputs(batch=2):
    generator = torch.Generator().manual_seed(1)
    q = torch.randn(batch, HEADS, T, D_HEAD, generator=generator, dtype=torch.float64)
    k = torch.randn(batch, HEADS, T, D_HEAD, generator=generator, dtype=torch.float64)
    x = torch.randn(batch, T, HEADS * D_HEAD, generator=generator, dtype=torch.float64)
    return q, k, x


def lower(t: torch.Tensor) -> torch.Tensor:
    """The entries a causal query sees: j <= i."""
    return t[..., torch.ones(T, T, dtype=torch.bool).tril()]


def per_entry(fn) -> torch.Tensor:
    """[H, T, T] from fn(h, i, j) on j <= i (0 above the diagonal, which the mask hides)."""
    out = torch.zeros(HEADS, T, T, dtype=torch.float64)
    for h in range(HEADS):
        for i in range(T):
            for j in range(i + 1):
                out[h, i, j] = fn(h, i, j)
    return out


def assert_causal_logits(name, expected_bias=None, expected=None, tolerance=1e-10):
    module = causal_module(name)
    q, k, x = inputs()
    got = model_logits(module, q, k, x)
    scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
    want = expected(module, q, k, x) if expected is not None else scores + expected_bias(module)
    torch.testing.assert_close(lower(got), lower(want.expand_as(got)), atol=tolerance, rtol=tolerance)


# -- additive biases --------------------------------------------------------------------------------
def test_alibi_causal_is_press_et_al():
    """Press et al. 2022: B[h, i, j] = -m_h (i - j) for j <= i, and nothing else."""
    m = alibi_slopes(HEADS).double()
    assert_causal_logits("alibi", lambda module: per_entry(lambda h, i, j: -m[h] * (i - j)))


def test_sandwich_causal_has_no_left_offset():
    """Chi et al. 2023: B[h, i, j] = (sum_{k=1..d'/2} cos((i - j) 10000^(-2k/d')) - d'/2) / r_h,
    r_h = 8h/H (h = 1..H), d' = 128."""
    def bias(h, i, j):
        inner = sum(math.cos((i - j) * 10000.0 ** (-2.0 * k / 128)) for k in range(1, 65))
        return (inner - 64) / (8.0 * (h + 1) / HEADS)
    assert_causal_logits("sandwich", lambda module: per_entry(bias), tolerance=1e-5)  # float32, as che computes it


def t5_decoder_bucket(distance: int, num_buckets: int = 32, max_distance: int = 128) -> int:
    """T5's unidirectional bucket of a key `distance` = i - j >= 0 places back (Raffel et al. 2020;
    the decoder's `_relative_position_bucket(bidirectional=False)`): all 32 buckets on one side,
    16 exact distances, then logarithmic up to max_distance."""
    max_exact = num_buckets // 2
    if distance < max_exact:
        return distance
    large = max_exact + int(math.log(distance / max_exact) / math.log(max_distance / max_exact)
                            * (num_buckets - max_exact))
    return min(large, num_buckets - 1)


@pytest.mark.parametrize("distance, bucket", [(0, 0), (1, 1), (15, 15), (16, 16), (31, 21), (32, 21), (45, 23),
                                              (127, 31), (128, 31), (1000, 31)])
def test_t5_decoder_buckets_by_hand(distance, bucket):
    assert t5_decoder_bucket(distance) == bucket


def test_t5_causal_uses_the_decoders_unidirectional_buckets():
    """T5's decoder: B[h, i, j] = table[bucket(i - j), h] with 32 one-sided buckets, 16 exact."""
    long = 150  # past max_distance: the last bucket
    module = causal_module("t5")
    bias = module.bias(torch.zeros(1, HEADS, long, D_HEAD, dtype=torch.float64),
                       torch.zeros(1, HEADS, long, D_HEAD, dtype=torch.float64))
    table = module.table
    for i in (0, 5, 20, 40, 149):
        for j in range(i + 1):
            torch.testing.assert_close(bias[:, i, j], table[t5_decoder_bucket(i - j)])


def test_kerple_log_causal_is_the_published_kernel():
    """Chi et al. 2022: B[h, i, j] = -r1_h log(1 + r2_h (i - j)), one r1, r2 per head (the row of
    keys left of the query)."""
    def expected(module):
        r1, r2 = module.r1[0].detach(), module.r2[0].detach()
        return per_entry(lambda h, i, j: -r1[h] * math.log(1 + r2[h] * (i - j)))
    assert_causal_logits("kerple-log", expected)


def test_kerple_power_causal_is_the_published_kernel():
    """Chi et al. 2022: B[h, i, j] = -r1_h (i - j)^r2_h."""
    def expected(module):
        r1, r2 = module.r1[0].detach(), module.r2[0].detach()
        return per_entry(lambda h, i, j: -r1[h] * (i - j) ** r2[h])
    assert_causal_logits("kerple-power", expected)


def test_fire_causal_is_the_published_form():
    """Li et al. 2023, Eq. 4: B[:, i, j] = f(psi(i - j) / psi(max(L, i))), psi(x) = log(c x + 1),
    L = |m| L0 (the reference code's eps 1e-6 in the denominator)."""
    def expected(module):
        c, L = module.c.detach().abs(), (module.threshold_multiplier.detach() * module.init_threshold).abs()
        psi = lambda value: math.log(c * value + 1)  # noqa: E731
        inputs = per_entry(lambda h, i, j: psi(i - j) / (psi(max(L, i)) + module.eps))[0]
        return module.mlp(inputs[..., None]).permute(2, 0, 1).detach()
    assert_causal_logits("fire", expected)


def test_bipe_alibi_causal_is_the_authors_form():
    """He et al. 2024 (the authors' code): ALiBi over segment indices, slopes x 96:
    B[h, i, j] = -96 m_h (s_i - s_j)."""
    module = causal_module("bipe-alibi")
    segments = torch.tensor([[0, 0, 0, 1, 1, 2, 2, 2, 3]] * 2)
    module.segments = (segments, torch.zeros_like(segments))
    q, k, _ = inputs()
    m = alibi_slopes(HEADS).double() * 96
    s = segments[0]
    want = per_entry(lambda h, i, j: -m[h] * (s[i] - s[j]).item())
    torch.testing.assert_close(lower(module.bias(q, k)), lower(want.expand(2, -1, -1, -1)))


# -- content-dependent forms ------------------------------------------------------------------------
def test_relative_causal_is_transformer_xl():
    """Dai et al. 2019, §3.3: logit = ((q_i + u) . k_j + (q_i + v) . W_R R_{i-j}) / sqrt(d_head),
    R the [sin | cos] sinusoid of i - j >= 0."""
    from che.models.positional.absolute import sinusoid

    def expected(module, q, k, x):
        w = module.w_r.weight.detach().double()
        u, v = module.u.detach().double(), module.v.detach().double()
        out = torch.empty(2, HEADS, T, T, dtype=torch.float64)
        for i in range(T):
            for j in range(T):
                r = (w @ sinusoid(torch.tensor(float(i - j)), HEADS * D_HEAD).double()).view(HEADS, D_HEAD)
                out[:, :, i, j] = (((q[:, :, i] + u) * k[:, :, j]).sum(-1) + ((q[:, :, i] + v) * r).sum(-1)) / math.sqrt(D_HEAD)
        return out
    assert_causal_logits("relative", expected=expected)


def test_rope_causal_is_the_rotation_of_q_and_k():
    """Su et al. 2021: logit = (R_i q_i) . (R_j k_j) / sqrt(d_head), pairs (2k, 2k+1) rotated by
    p 10000^(-2k/d_head)."""
    def rotate(x, p):
        out = x.clone()
        for pair in range(D_HEAD // 2):
            angle = p * 10000.0 ** (-2 * pair / D_HEAD)
            a, b = x[..., 2 * pair], x[..., 2 * pair + 1]
            out[..., 2 * pair], out[..., 2 * pair + 1] = a * math.cos(angle) - b * math.sin(angle), \
                b * math.cos(angle) + a * math.sin(angle)
        return out

    def expected(module, q, k, x):
        qr = torch.stack([rotate(q[:, :, i], i) for i in range(T)], dim=2)
        kr = torch.stack([rotate(k[:, :, j], j) for j in range(T)], dim=2)
        return qr @ kr.transpose(-2, -1) / math.sqrt(D_HEAD)
    assert_causal_logits("rope", expected=expected, tolerance=1e-6)  # che's angles are float32


def test_cope_causal_is_golovneva_et_al():
    """Golovneva et al. 2024: g_ij = sigmoid(S_ij), p_ij = sum_{k=j..i} g_ik, logit = S_ij +
    interpolation of q_i . e[floor p], q_i . e[ceil p] (/ sqrt(d_head), as the authors' code), with
    the table of keys left of the query."""
    def expected(module, q, k, x):
        torch.nn.init.normal_(module.left)  # the table starts at zero: give it values
        scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
        gates = torch.sigmoid(scores)
        out = scores.clone()
        e = module.left.detach()
        for i in range(T):
            for j in range(i + 1):
                p = gates[..., i, j:i + 1].sum(-1).clamp(max=module.npos - 1)
                lo, hi = p.floor().long(), p.ceil().long()
                z_lo = (q[..., i, :] * e[lo]).sum(-1)
                z_hi = (q[..., i, :] * e[hi]).sum(-1)
                w = p - p.floor()
                out[..., i, j] += ((1 - w) * z_lo + w * z_hi) / math.sqrt(D_HEAD)
        return out
    module = causal_module("cope")
    torch.manual_seed(3)
    q, k, x = inputs()
    want = expected(module, q, k, x)  # fills the table first
    torch.testing.assert_close(lower(model_logits(module, q, k, x)), lower(want), atol=1e-10, rtol=1e-10)


def test_fox_causal_is_lin_et_al():
    """Lin et al. 2025: logit = S_ij + sum_{l=j+1..i} log f_l, f_t = sigmoid(w_h . x_t + b_h)."""
    def expected(module, q, k, x):
        log_f = F.logsigmoid(module.left(x)).transpose(1, 2)   # [B, H, T]
        scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
        decay = torch.zeros_like(scores)
        for i in range(T):
            for j in range(i + 1):
                decay[..., i, j] = log_f[..., j + 1:i + 1].sum(-1)
        return scores + decay
    module = causal_module("fox")
    q, k, x = inputs()
    torch.testing.assert_close(lower(model_logits(module, q, k, x)), lower(expected(module, q, k, x)),
                               atol=1e-6, rtol=1e-6)  # FoX's cumulative sums are float32, as the authors'


def test_ssmax_causal_scales_by_the_log_of_the_keys_seen():
    """Nakanishi 2025: a causal query i sees n_i = i + 1 keys; logit = s_h log(n_i) (S + B)."""
    m = alibi_slopes(HEADS).double()

    def expected(module, q, k, x):
        s = module.scale.detach().double()
        scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
        bias = per_entry(lambda h, i, j: -m[h] * (i - j))
        factor = per_entry(lambda h, i, j: s[h] * math.log(i + 1))
        return (scores + bias) * factor
    assert_causal_logits("ssmax-alibi", expected=expected, tolerance=1e-5)  # s log n is computed in float32


def test_dape_causal_is_dape_over_the_causal_bias():
    """Zheng et al. 2024: A = S + B + f(S, B), with B the base's causal form (ALiBi: -m (i - j))."""
    m = alibi_slopes(HEADS).double()

    def expected(module, q, k, x):
        scores = q @ k.transpose(-2, -1) / math.sqrt(D_HEAD)
        bias = per_entry(lambda h, i, j: -m[h] * (i - j)).expand_as(scores)
        hidden = F.leaky_relu(module.hidden(torch.cat([scores, bias], 1).permute(0, 2, 3, 1)), 0.01)
        return scores + bias + module.output(hidden).permute(0, 3, 1, 2)
    assert_causal_logits("dape-alibi", expected=expected)


@pytest.mark.parametrize("name", ["sin-cos", "learned"])
def test_absolute_pes_are_unchanged_by_the_causal_mask(name):
    """Absolute PEs add the same encoding to the embeddings in both modes; only the mask differs."""
    torch.manual_seed(0)
    both = parse_pe(name, CONFIG).make_embedding()
    torch.manual_seed(0)
    causal = parse_pe(name + "+causal", CONFIG).make_embedding()
    x = torch.randn(2, T, HEADS * D_HEAD)
    torch.testing.assert_close(both(x), causal(x))


@pytest.mark.parametrize("name, versions", [
    ("alibi+causal", {"alibi": 3}), ("sandwich+causal", {"sandwich": 3}), ("t5+causal", {"t5": 3}),
    ("bipe-alibi+causal", {"bipe-alibi": 2}), ("dape-alibi+causal", {"alibi": 3, "dape": 1}),
    # unchanged: the bidirectional forms, and causal forms that were already the published ones
    ("alibi", {"alibi": 2}), ("sandwich", {"sandwich": 2}), ("t5", {"t5": 2}), ("bipe-alibi", {"bipe-alibi": 1}),
    ("sandwich-sym+causal", {"sandwich-sym": 2}), ("kerple-log+causal", {"kerple-log": 2}),
    ("fire+causal", {"fire": 2}), ("none+causal", {"none": 1}), ("fox+causal", {"none": 1, "fox": 1}),
])
def test_a_changed_causal_form_has_a_new_identity(name, versions):
    """Runs of a causal form that changed are never taken for runs of the old one (the version is in
    the run id), while every bidirectional run and every unchanged causal form keeps its id."""
    from che.config import implementation_versions

    assert implementation_versions("reverse_string", name)["pe"] == versions


# -- the causal mask: no query reads a later key, on every attention path --------------------------
AFTER_2024 = ["fox", "stick-breaking", "ssmax-alibi", "ssmax-none", "p-rope", "bipe-alibi", "bipe-rope", "fox-alibi"]


def model(pe, **kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(input_size=3, output_size=2, pe=pe, dropout=0.0, **kw)).double()


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("pe", ["none", "alibi", "rope", "t5", "relative", "kerple-log", "fire", "cope",
                                "dape-alibi", "sin-cos", "learned"] + AFTER_2024)
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


# -- stick-breaking and FoX against their authors' reference forms ---------------------------------
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
