"""The fused Triton position-wise MLP of DAPE (models/positional/dape_triton.py), run on CPU tensors
under Triton's interpreter, against a dense einsum reference and `dape.PositionwiseMLP`.

How TRITON_INTERPRET=1 is set: by the autouse, module-scoped fixture `interpret`, which restores
it after this module; not at import time and not in a subprocess. Why this works under pytest
even though triton is imported earlier (by `importorskip` below at collection, or by any module
collected before this one) without the variable: in triton 3.x the variable is not read when
triton is imported; `triton.jit` reads it when it decorates a function, to return a compiled
JITFunction or an InterpretedFunction, and dape_triton decorates its kernels at their first
launch, once per mode (keyed by the variable's value at each call). The one thing that is fixed
at triton's import are the functions that triton.language.standard itself defines with
@triton.jit (tl.zeros, tl.sum, tl.max, ...): imported in compiled mode, the interpreter cannot
call them, so the kernels use builtins only (tl.full, not tl.zeros; partial sums instead of
tl.sum). A plain run of this file is exactly that case (triton imported before the fixture runs),
and `TRITON_INTERPRET=1 pytest tests/test_dape_triton.py` the other; both pass. Setting the
variable at the top of this module instead would leak it into every module collected after it
(interpreting, e.g., torch.compile's kernels in the GPU tests), and would not help when triton was
already imported; a subprocess would be robust to both but slower. `test_kernels_are_interpreted`
fails loudly if a triton release reads the variable earlier.
"""

import importlib.util
import sys

import pytest

pytest.importorskip("triton")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from che.models.positional import dape_triton  # noqa: E402
from conftest import assert_same_function  # noqa: E402
from che.models.positional.dape import NEGATIVE_SLOPE, PositionwiseMLP  # noqa: E402
from che.models.positional.dape_triton import (  # noqa: E402
    FusedPositionwiseMLP,
    fused_positionwise_mlp,
)

HEADS, WIDTH, BATCH = 4, 16, 2


@pytest.fixture(autouse=True, scope="module")
def interpret():
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TRITON_INTERPRET", "1")
        yield


def reference(content, const, w_content, w_out, b_out):
    """Dense: hidden [K, batch, D, T, T] by einsum over the channel axis."""
    hidden = torch.einsum("kdc,kbcij->kbdij", w_content, content) + const[:, None]
    return (torch.einsum("khd,kbdij->kbhij", w_out, F.leaky_relu(hidden, NEGATIVE_SLOPE))
            + b_out[:, None, :, None, None])


def make_inputs(packs, channels, length, dtype, seed=0, length2=None):
    gen = torch.Generator().manual_seed(seed)
    length2 = length if length2 is None else length2

    def randn(*shape, scale=1.0):
        return (scale * torch.randn(*shape, generator=gen, dtype=torch.float64)).to(dtype)

    return (randn(packs, BATCH, channels, length, length2),
            randn(packs, WIDTH, length, length2),
            randn(packs, WIDTH, channels, scale=channels ** -0.5),
            randn(packs, HEADS, WIDTH, scale=WIDTH ** -0.5),
            randn(packs, HEADS))


def value_and_grads(fn, inputs, grad_out, transform=None):
    leaves = [x.detach().clone().requires_grad_(True) for x in inputs]
    args = leaves if transform is None else transform(leaves)
    out = fn(*args)
    grads = torch.autograd.grad(out, leaves, grad_out)
    return out.detach(), grads


def assert_all_close(got, expected, **tol):
    (out, grads), (out_ref, grads_ref) = got, expected
    torch.testing.assert_close(out, out_ref, **tol)
    for name, g, g_ref in zip(("content", "const", "w_content", "w_out", "b_out"), grads, grads_ref):
        torch.testing.assert_close(g, g_ref, msg=lambda m, name=name: f"grad of {name}: {m}", **tol)


def fused(block_positions=16, batch_splits=None):
    return lambda *a: fused_positionwise_mlp(*a, block_positions=block_positions, batch_splits=batch_splits)


def grad_like(packs, length, dtype, seed=1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(packs, BATCH, HEADS, length, length, generator=gen, dtype=torch.float64).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("packs", [1, 3])
@pytest.mark.parametrize("channels", [4, 8])  # C = H, or C = 2H (content and bias channels)
@pytest.mark.parametrize("length", [5, 9])  # 25 or 81 positions: the last block is partial
@pytest.mark.parametrize("block,splits", [(16, 1), (32, 2)])  # 1 or 2 batch slices per model
def test_matches_dense_reference(dtype, packs, channels, length, block, splits):
    inputs = make_inputs(packs, channels, length, dtype)
    grad_out = grad_like(packs, length, dtype)
    got = value_and_grads(fused(block, splits), inputs, grad_out)
    assert_all_close(got, value_and_grads(reference, inputs, grad_out))
    assert got[0].dtype == dtype and all(g.dtype == dtype for g in got[1])


def test_rectangular_positions_and_default_launch():
    inputs = make_inputs(2, 4, 3, torch.float64, length2=7)
    grad_out = torch.randn(2, BATCH, HEADS, 3, 7, dtype=torch.float64)
    got = value_and_grads(fused_positionwise_mlp, inputs, grad_out)
    assert_all_close(got, value_and_grads(reference, inputs, grad_out))


@pytest.mark.parametrize("channels", [4, 8])
def test_matches_positionwise_mlp_without_pack_axis(channels):
    """K-less shapes, against dape.PositionwiseMLP; const as DAPE's fast path builds it: a
    [D, 1, 1] bias expanded (stride 0) to [D, T, T]."""
    length, dtype = 9, torch.float64
    content, const, w_content, w_out, b_out = (x[0] for x in make_inputs(1, channels, length, dtype))
    bias = const[:, :1, :1].contiguous()
    grad_out = grad_like(1, length, dtype)[0]

    def expand(leaves):
        x, b, *rest = leaves
        return [x, b.expand(-1, length, length), *rest]

    inputs = (content, bias, w_content, w_out, b_out)
    got = value_and_grads(fused(32, 2), inputs, grad_out, expand)
    expected = value_and_grads(PositionwiseMLP.apply, inputs, grad_out, expand)
    assert got[0].shape == (BATCH, HEADS, length, length)
    assert_all_close(got, expected)
    dense = value_and_grads(lambda *a: reference(*(t.unsqueeze(0) for t in a))[0], inputs, grad_out, expand)
    assert_all_close(got, dense)


def test_non_contiguous_inputs():
    """Permuted, transposed, strided and sliced views for every input and the incoming gradient."""
    packs, channels, length, dtype = 3, 4, 5, torch.float64
    content, const, w_content, w_out, b_out = make_inputs(packs, channels, length, dtype)
    stored = (content.permute(3, 1, 4, 0, 2).contiguous(),        # [T, B, T, K, C]
              const.transpose(-1, -2).contiguous(),                 # [K, D, T, T] with i, j swapped
              w_content.transpose(-1, -2).contiguous(),             # [K, C, D]
              torch.stack([w_out, torch.zeros_like(w_out)], -1),    # [K, H, D, 2]
              torch.stack([b_out, b_out + 1], -1))                  # [K, H, 2]

    def views(leaves):
        x, c, wc, wo, bo = leaves
        return [x.permute(3, 1, 4, 0, 2), c.transpose(-1, -2), wc.transpose(-1, -2), wo[..., 0], bo[..., 0]]

    def permuted(fn):  # the output is used through a permutation: its gradient arrives non-contiguous
        return lambda *a: fn(*a).permute(4, 0, 3, 1, 2)

    views_of = views(list(stored))
    assert not any(v.is_contiguous() for v in views_of)
    for v, x in zip(views_of, (content, const, w_content, w_out, b_out)):
        torch.testing.assert_close(v, x, rtol=0, atol=0)
    grad_out = torch.randn(length, packs, length, BATCH, HEADS, dtype=dtype)
    got = value_and_grads(permuted(fused(16, 2)), stored, grad_out, views)
    assert_all_close(got, value_and_grads(permuted(reference), stored, grad_out, views))


def test_leaky_relu_sign_boundary():
    """Hidden values on both sides of the kink, close to it, and exactly zero: with content = 0 the
    hidden value is const exactly in both implementations, so each takes the same branch
    (exactly 0 takes the slope branch, as torch's LeakyReLU and its gradient)."""
    packs, channels, length, dtype = 1, 4, 5, torch.float64
    _, _, w_content, w_out, b_out = make_inputs(packs, channels, length, dtype)
    content = torch.zeros(packs, BATCH, channels, length, length, dtype=dtype)
    signs = torch.tensor([1.0, -1.0, 0.0], dtype=dtype)
    magnitudes = torch.tensor([1e-12, 1e-6, 1.0, 3.0], dtype=dtype)
    values = (signs[:, None] * magnitudes[None, :]).flatten()
    index = torch.arange(WIDTH * length * length) % values.numel()
    const = values[index].view(packs, WIDTH, length, length)
    inputs = (content, const, w_content, w_out, b_out)
    grad_out = grad_like(packs, length, dtype)
    got = value_and_grads(fused(16), inputs, grad_out)
    assert_all_close(got, value_and_grads(reference, inputs, grad_out))
    # the gradient of const is the slope-scaled back-propagated gradient where const <= 0
    back = torch.einsum("khd,kbhij->kdij", w_out, grad_out)
    slope = torch.where(const > 0, 1.0, NEGATIVE_SLOPE).to(dtype)
    torch.testing.assert_close(got[1][1], slope * back)


def test_bfloat16_inputs_accumulate_in_float32():
    packs, channels, length = 2, 8, 5
    inputs = make_inputs(packs, channels, length, torch.bfloat16)
    grad_out = grad_like(packs, length, torch.bfloat16)
    out, grads = value_and_grads(fused(16, 2), inputs, grad_out)
    assert out.dtype == torch.bfloat16 and all(g.dtype == torch.bfloat16 for g in grads)
    out_ref, grads_ref = value_and_grads(reference, [x.double() for x in inputs], grad_out.double())
    torch.testing.assert_close(out.double(), out_ref, rtol=3e-2, atol=3e-2)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g.double(), g_ref, rtol=5e-2, atol=5e-2)


def test_only_some_inputs_need_gradients():
    inputs = make_inputs(1, 4, 5, torch.float64)
    content, const, w_content, w_out, b_out = inputs
    w_out = w_out.clone().requires_grad_(True)
    content = content.clone().requires_grad_(True)
    out = fused()(content, const, w_content, w_out, b_out)
    g_content, g_w_out = torch.autograd.grad(out.sum(), (content, w_out))
    ref_content, ref_w_out = torch.autograd.grad(reference(content, const, w_content, w_out, b_out).sum(),
                                                 (content, w_out))
    torch.testing.assert_close(g_content, ref_content)
    torch.testing.assert_close(g_w_out, ref_w_out)
    with torch.no_grad():
        torch.testing.assert_close(fused()(*inputs), reference(*inputs))


def test_empty_batch():
    inputs = [x.requires_grad_(True) for x in make_inputs(2, 4, 5, torch.float32)]
    inputs[0] = inputs[0][:, :0]
    out = fused_positionwise_mlp(*inputs)
    assert out.shape == (2, 0, HEADS, 5, 5)
    grads = torch.autograd.grad(out.sum(), inputs[1:], allow_unused=True)
    assert all(g is not None and not g.any() for g in grads)


def test_kernels_are_interpreted():
    from triton.runtime.interpreter import InterpretedFunction

    assert dape_triton.interpreting() and dape_triton.available("cpu")
    assert all(isinstance(k, InterpretedFunction) for k in dape_triton._kernels())


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_kernels_compile_for_sm90(dtype, monkeypatch, tmp_path):
    """The interpreter does not compile: compile both kernels for sm_90 (H100 / H200) as the
    default launch would (D = 64, C = H = 8), with the ptxas bundled in triton's wheel; no GPU
    needed. Skipped where this triton has no CUDA backend or ptxas."""
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
    except ImportError as exc:
        pytest.skip(f"no triton compiler API here: {exc}")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setenv("TRITON_CACHE_DIR", str(tmp_path))
    monkeypatch.setenv("TRITON_DEFAULT_FP_FUSION", "1")
    forward, backward = dape_triton._kernels()
    kind = {torch.float32: "fp32", torch.bfloat16: "bf16"}[dtype]
    width_p = 64
    for kernel, is_backward, pointers in (
            (forward, False, ["x_ptr", "c_ptr", "wc_ptr", "wo_ptr", "bo_ptr", "out_ptr"]),
            (backward, True, ["x_ptr", "c_ptr", "wc_ptr", "wo_ptr", "g_ptr", "gx_ptr"])):
        block, warps = dape_triton._launch(10_000, width_p, dtype, is_backward, None)
        constants = dict(C_P=16, D_P=width_p, H_P=16, BLOCK_N=block, SLOPE=NEGATIVE_SLOPE,
                         **dape_triton._dtypes(dtype))
        signature = {name: "constexpr" if name in constants else f"*{kind}" if name in pointers
                     else "*fp32" if name.endswith("_ptr") else "i32" for name in kernel.arg_names}
        try:
            compiled = triton.compile(ASTSource(kernel, signature, constants),
                                      target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
        except (FileNotFoundError, RuntimeError) as exc:
            if "ptxas" in str(exc) or "backend" in str(exc).lower():
                pytest.skip(f"cannot compile for CUDA here: {exc}")
            raise
        assert compiled.asm["cubin"]


def test_available(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not dape_triton.available("cpu")
    assert dape_triton.available("cuda")  # a CUDA device, when triton imports
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert dape_triton.available("cpu")


def test_imports_without_triton(monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", None)  # `import triton` raises ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    spec = importlib.util.spec_from_file_location("dape_triton_without_triton", dape_triton.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert not module.available("cpu")
    with pytest.raises(RuntimeError, match="need triton"):
        module.fused_positionwise_mlp(*(x[0] for x in make_inputs(1, 4, 5, torch.float32)))


def test_shape_errors():
    content, const, w_content, w_out, b_out = make_inputs(2, 4, 5, torch.float32)
    with pytest.raises(ValueError, match="const"):
        fused_positionwise_mlp(content, const[:1], w_content, w_out, b_out)
    with pytest.raises(ValueError, match="w_content"):
        fused_positionwise_mlp(content, const, w_content[..., :3], w_out, b_out)
    with pytest.raises(ValueError, match="content must be"):
        fused_positionwise_mlp(content[0, 0], const[0], w_content[0], w_out[0], b_out[0])
    with pytest.raises(ValueError, match="block_positions"):
        FusedPositionwiseMLP.apply(content, const, w_content, w_out, b_out, 24)
    with pytest.raises(TypeError, match="w_out"):
        fused_positionwise_mlp(content, const, w_content, w_out.half().to(torch.int32), b_out)


def test_cpu_tensors_need_the_interpreter(monkeypatch):
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    with pytest.raises(RuntimeError, match="CUDA"):
        fused_positionwise_mlp(*make_inputs(1, 4, 5, torch.float32))


def test_dape_with_the_triton_kernels_is_dape_in_the_model():
    """A whole model with dape_impl=triton computes what the fast form computes, values and every
    parameter's gradient (the kernels under the interpreter, float64)."""
    from che.config import ModelConfig
    from che.models import Transformer

    def model(impl):
        torch.manual_seed(0)
        config = ModelConfig(input_size=2, output_size=2, pe="dape-kerple-log", n_layers=2, d_model=16, n_heads=4,
                             dape_width=16, dropout=0.0, dape_impl=impl)
        return Transformer(config).double()

    fast, fused = model("fast"), model("triton")
    fused.load_state_dict(fast.state_dict())
    assert_same_function(fast, fused, torch.randint(0, 2, (3, 6)), 6, atol=1e-10, grad_atol=1e-9)
