"""The shared transformer and DAPE against its literal formula."""

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F
from che.models import Transformer
from che.models.packed import PackedLinear
from che.models.positional import parse_pe

from che.config import DAPE_VARIANTS as VARIANTS
from che.config import ModelConfig


def model(pe="none", **kw):
    torch.manual_seed(0)
    return Transformer(ModelConfig(input_size=2, output_size=2, pe=pe, **kw))


@pytest.mark.parametrize("pe", ["none", "sin-cos", "alibi", "rope"])
def test_parameter_count_matches_the_reference(pe):
    assert model(pe).num_parameters() == 248_962  # the CHE reference model's count


def test_linear_init_is_haiku_truncated_normal():
    m = model("none")
    linears = [(name, module) for name, module in m.named_modules() if isinstance(module, PackedLinear)]
    assert len(linears) == 5 * 4 + 1   # qkv, out and the FFN's two per layer, the head
    for name, module in linears:
        w = module.weight.detach()[0]   # [in, out], as Haiku
        std = 1 / math.sqrt(w.shape[0])
        assert w.abs().max() <= 2 * std + 1e-6, name
        if w.numel() >= 4096:  # truncation at 2 sigma shrinks the std to ~0.88 sigma
            assert 0.8 * std < w.std() < 0.95 * std, name
        if module.bias is not None:
            assert torch.all(module.bias == 0)
    assert m.embedding.abs().max() <= 0.04 + 1e-6
    for block in m.blocks:
        assert block.attention.qkv.bias is None and block.attention.out.bias is None


def test_blocks_are_post_layer_norm():
    m = model("alibi").eval()
    outputs = []
    m.blocks[2].register_forward_hook(lambda mod, inp, out: outputs.append(out))
    m(torch.randint(0, 2, (3, 9)), 4)
    h = outputs[0]  # LN with unit scale and zero offset at init: each token normalised
    assert torch.allclose(h.mean(-1), torch.zeros_like(h.mean(-1)), atol=1e-5)
    assert torch.allclose(h.var(-1, unbiased=False), torch.ones_like(h.mean(-1)), atol=1e-3)


def test_logits_are_read_at_the_appended_empty_tokens():
    m = model("alibi").eval()
    inputs = torch.randint(0, 2, (2, 5))
    logits = m(inputs, 3)
    assert logits.shape == (2, 3, 2)
    captured = []
    m.head.register_forward_hook(lambda mod, inp, out: captured.append(inp[0]))
    m(inputs, 3)
    assert captured[0].shape[2] == 3  # the head sees only the last T_out positions ([K, B, T_out, d])


def test_without_positions_the_encoder_is_permutation_invariant():
    """No causal mask and no PE: permuting the input tokens cannot change a classification."""
    inputs = torch.randint(0, 2, (4, 11))
    permuted = inputs[:, torch.randperm(11)]
    nope = model("none").eval()
    assert torch.allclose(nope(inputs, 1), nope(permuted, 1), atol=1e-5)
    alibi = model("alibi").eval()
    assert not torch.allclose(alibi(inputs, 1), alibi(permuted, 1), atol=1e-5)


def test_dropout_is_off_in_eval_and_on_in_train():
    m = model("sin-cos")
    inputs = torch.randint(0, 2, (2, 6))
    m.eval()
    assert torch.equal(m(inputs, 6), m(inputs, 6))
    m.train()
    assert not torch.equal(m(inputs, 6), m(inputs, 6))


class ExplicitScores(torch.nn.Module):
    """Forces the attention onto the materialised-scores path: logits = scores + bias."""

    def __init__(self, pe):
        super().__init__()
        self.pe = pe

    transforms_scores = True

    def rotate(self, q, k):
        return self.pe.rotate(q, k)

    def logits(self, scores, q, k):
        bias = self.pe.bias(q, k)
        return scores if bias is None else scores + bias


@pytest.mark.parametrize("attention", ["fused", "explicit"])
@pytest.mark.parametrize("pe", ["none", "rope", "alibi", "kerple-log", "t5", "fire", "relative", "sandwich"])
def test_each_attention_path_equals_the_scores_as_written_values_and_gradients(pe, attention):
    """SDPA (fused) and the explicit path (q scaled first, the bias added in place) against the
    scores as a PE's `logits` writes them, S + B, in float64."""
    fused = model(pe, dropout=0.0, attention=attention).double()
    explicit = model(pe, dropout=0.0).double()
    explicit.load_state_dict(fused.state_dict())
    for block in explicit.blocks:
        block.attention.pes[0] = ExplicitScores(block.attention.pes[0])
    inputs = torch.randint(0, 2, (3, 7))
    a, b = fused(inputs, 7), explicit(inputs, 7)
    assert torch.allclose(a, b, atol=1e-10)
    a.square().sum().backward()
    b.square().sum().backward()
    for (name, p), q in zip(fused.named_parameters(), explicit.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-9, rtol=1e-9), name


@pytest.mark.parametrize("pe", ["none", "alibi", "kerple-log", "t5", "fire"])
@pytest.mark.parametrize("runs", [1, 3])
def test_flex_attention_reads_the_bias_of_each_run(pe, runs):
    """FlexAttention with the bias read in its score modification computes the explicit path's
    values, alone and in a pack (on a CPU torch 2.13 has no FlexAttention backward: the gradients are
    checked on a GPU, scripts/gpu_check.sh)."""
    from che.config import ModelConfig
    from che.models.transformer import Transformer

    config = ModelConfig(input_size=2, output_size=2, pe=pe, dropout=0.0, attention="explicit")
    explicit = Transformer(config, seeds=list(range(runs))).double()
    flex = Transformer(dataclasses.replace(config, attention="flex"), seeds=list(range(runs))).double()
    flex.load_state_dict(explicit.state_dict())
    inputs = torch.randint(0, 2, (runs, 3, 7))
    with torch.no_grad():
        torch.testing.assert_close(flex(inputs, 7), explicit(inputs, 7), atol=1e-10, rtol=1e-10)


# -- DAPE against the literal per-position formula ------------------------------------------------
def naive_f(x, hidden, output):
    """f at every (b, i, j): Linear -> LeakyReLU -> Linear on the channel vector x[b, :, i, j]."""
    batch, _, length, _ = x.shape
    out = torch.zeros(batch, output.weight.shape[0], length, length, dtype=x.dtype)
    for b in range(batch):
        for i in range(length):
            for j in range(length):
                h = F.leaky_relu(hidden.weight @ x[b, :, i, j] + hidden.bias, 0.01)
                out[b, :, i, j] = output.weight @ h + output.bias
    return out


def naive_conv_f(x, hidden, output):
    """DAPE V2's f: 1 x k convolutions along the key axis, zero padding, written as explicit sums."""
    def conv(x, layer):
        k = layer.weight.shape[-1]
        batch, _, length, _ = x.shape
        out = torch.zeros(batch, layer.weight.shape[0], length, length, dtype=x.dtype)
        for b in range(batch):
            for i in range(length):
                for j in range(length):
                    total = layer.bias.clone()
                    for t in range(k):
                        jj = j + t - k // 2
                        if 0 <= jj < length:
                            total = total + layer.weight[:, :, 0, t] @ x[b, :, i, jj]
                    out[b, :, i, j] = total
        return out

    return conv(F.leaky_relu(conv(x, hidden), 0.01), output)


def dape_oracle(module, scores, bias, variant):
    f = naive_f if module.kernel == 1 else naive_conv_f
    if bias is None:
        return scores + f(scores, module.hidden, module.output)
    b = bias.unsqueeze(0).expand_as(scores)
    if variant == "S+B+f(S,B)":
        return scores + b + f(torch.cat([scores, b], 1), module.hidden, module.output)
    if variant == "S+B+f(S+B)":
        return scores + b + f(scores + b, module.hidden, module.output)
    if variant == "S+f(S,B)":
        return scores + f(torch.cat([scores, b], 1), module.hidden, module.output)
    if variant == "S+B+f(B)":
        return scores + b + f(b, module.hidden, module.output)
    raise AssertionError(variant)


DAPE_CASES = [(pe, variant) for pe in ["dape-kerple-log", "dape2-alibi"] for variant in VARIANTS]
DAPE_CASES += [("dape-none", VARIANTS[0]), ("dape2-none", VARIANTS[0]), ("dape-fire", VARIANTS[0]),
               ("dape-t5", VARIANTS[0]), ("dape2-kerple-power", VARIANTS[0]), ("dape-sandwich", VARIANTS[0])]


@pytest.mark.parametrize("impl", ["fast", "literal"])
@pytest.mark.parametrize("pe, variant", DAPE_CASES)
def test_dape_equals_the_literal_formula(pe, variant, impl):
    config = ModelConfig(input_size=2, output_size=2, pe=pe, n_heads=4, d_model=16, dape_width=6,
                         dape_variant=variant, dape_impl=impl)
    torch.manual_seed(1)
    module = parse_pe(pe, config).make().double()
    for p in module.parameters():  # non-trivial biases, so that every term shows
        torch.nn.init.normal_(p, std=0.5)
    module.project_()  # back into the PE's domain (KERPLE: r >= 0.01), as after an optimizer step
    batch, length = 2, 5
    q = torch.randn(batch, 4, length, 4, dtype=torch.double)
    k = torch.randn(batch, 4, length, 4, dtype=torch.double)
    scores = torch.randn(batch, 4, length, length, dtype=torch.double, requires_grad=True)
    got = module.logits(scores, q, k)
    bias = module.base.bias(q, k) if module.has_bias else None
    expected = dape_oracle(module, scores, bias, variant)
    assert torch.allclose(got, expected, atol=1e-10)

    weights = torch.randn_like(got)
    grads = torch.autograd.grad((got * weights).sum(), [scores, *module.parameters()])
    expected_grads = torch.autograd.grad((expected * weights).sum(), [scores, *module.parameters()],
                                         allow_unused=True)
    for g, e in zip(grads, expected_grads):
        assert torch.allclose(g, e, atol=1e-9)


def test_dape_implementations_share_parameters_and_agree_in_the_model():
    """In float64, so that the comparison is of the functions, not of float32 rounding (the summed
    logits' gradients reach hundreds)."""
    fast = model("dape-kerple", dropout=0.0, dape_impl="fast").double()
    literal = model("dape-kerple", dropout=0.0, dape_impl="literal").double()
    literal.load_state_dict(fast.state_dict())
    inputs = torch.randint(0, 2, (3, 9))
    a, b = fast(inputs, 9), literal(inputs, 9)
    assert torch.allclose(a, b, atol=1e-10)
    a.sum().backward()
    b.sum().backward()
    for (name, p), q in zip(fast.named_parameters(), literal.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-9, rtol=1e-9), name


def test_dape_parameter_count():
    base = model("kerple-log").num_parameters()
    heads, width = 8, 64
    per_layer = (2 * heads * width + width) + (width * heads + heads)
    assert model("dape-kerple-log").num_parameters() == base + 5 * per_layer


@pytest.mark.parametrize("saved_bytes", [2**40, 0])  # keep the activations / recompute them
def test_blockwise_and_dense_positionwise_mlp_agree(monkeypatch, saved_bytes):
    """The CPU kernel (blocks) and the GPU path (one dense pass): values and gradients."""
    from che.models.positional import dape
    from che.models.positional.dape import (
        PositionwiseMLP,
        dense_positionwise_mlp,
        position_blocks,
    )

    monkeypatch.setattr(dape, "SAVED_BYTES", saved_bytes)
    torch.manual_seed(0)
    for batch, length in [(3, 4), (2, 100)]:  # several items per block; several blocks per item
        assert len(list(position_blocks(batch, length * length))) > 1 or length == 4
        args = [torch.randn(batch, 8, length, length, dtype=torch.double, requires_grad=True),
                torch.randn(6, length, length, dtype=torch.double, requires_grad=True),
                torch.randn(6, 8, dtype=torch.double, requires_grad=True),
                torch.randn(8, 6, dtype=torch.double, requires_grad=True),
                torch.randn(8, dtype=torch.double, requires_grad=True)]
        blocked, dense = PositionwiseMLP.apply(*args), dense_positionwise_mlp(*args)
        assert torch.allclose(blocked, dense, atol=1e-10)
        w = torch.randn_like(dense)
        for a, b in zip(torch.autograd.grad((blocked * w).sum(), args), torch.autograd.grad((dense * w).sum(), args)):
            assert torch.allclose(a, b, atol=1e-9)


@pytest.mark.parametrize("pe", ["none", "alibi", "rand-kerple-log", "relative"])
def test_the_explicit_attention_option_computes_the_fused_function(pe):
    fused = model(pe, dropout=0.0).double()
    explicit = model(pe, dropout=0.0, attention="explicit").double()
    explicit.load_state_dict(fused.state_dict())
    inputs = torch.randint(0, 2, (3, 7))
    generators = lambda: [torch.Generator().manual_seed(4)]  # noqa: E731  (the same draws)
    a, b = fused(inputs, 7, generators()), explicit(inputs, 7, generators())
    assert torch.allclose(a, b, atol=1e-10)
