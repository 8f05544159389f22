"""DAPE's position-wise MLP as fused Triton kernels (forward and backward), with a pack axis K.

What it computes, for K independent models (K = 1 for one model) at every position n = (i, j):

    out[k, b, :, n] = W_out[k] @ leaky_relu(W_c[k] @ content[k, b, :, n] + const[k, :, n], 0.01) + b_out[k]

with content [K, batch, C, T1, T2], const [K, D, T1, T2], W_c [K, D, C], W_out [K, H, D],
b_out [K, H] -> out [K, batch, H, T1, T2]: the function of `PositionwiseMLP` in dape.py (the
"fast" DAPE path, where `const` is the position half of the first layer plus its bias) with a
leading K axis. `FusedPositionwiseMLP` is its autograd Function (gradients for all five inputs);
`fused_positionwise_mlp` also takes the K-less shapes of `PositionwiseMLP`.

Memory saved: the dense GPU path (`dense_positionwise_mlp`) writes the [batch, T, T, D] hidden
activations (and autograd keeps them, pre- and post-activation, for the backward pass). Here each
program owns a block of positions of one model, keeps its hidden tile [D, block] in registers and
writes only the H outputs per position; the forward saves only its inputs, and the backward
recomputes the hidden tile from them. Per position and batch element, the forward reads C values
and writes H; the backward reads C + H and writes C (against D written and read back, twice in
the backward, by the dense path). `const` and the weights are read once per program, not once
per batch element: a program (one block of positions of one model) loops over the batch, so the
gradient of `const` (a sum over the batch) and of b_out are accumulated in registers per
position, and the weight gradients per program. These partial sums go to small buffers
([K, programs, D, C] and [K, programs, H, D] for the weights, [K, slices, D or H, T1 * T2] for
const and b_out) that torch sums afterwards: no atomics, deterministic results. When the grid of
position blocks alone is too small to fill the GPU (short sequences), the batch is also split
into slices across programs (about 4 programs per SM).

Numerics: products accumulate in float32 (float64 for float64 inputs). float32 matrix products
follow `torch.get_float32_matmul_precision()` ("highest", PyTorch's default: IEEE float32;
otherwise TF32 on the tensor cores). bfloat16 / float16 inputs are multiplied in their dtype
with float32 accumulation, and the hidden activations are rounded to that dtype before the
second product, as a bfloat16 PyTorch Linear would.

Testing: tests/test_dape_triton.py runs the kernels under Triton's interpreter
(TRITON_INTERPRET=1, which executes the kernels with NumPy on CPU tensors) and compares the output
and the five gradients with a dense einsum reference and with `PositionwiseMLP`, in float32 and
float64 (and bfloat16, loosely), for K in {1, 3}, partial position blocks, batch splits,
non-contiguous and broadcast (stride-0) inputs and hidden values on both sides of the LeakyReLU
kink. The interpreter checks the arithmetic and the indexing, not the GPU code: another test
compiles both kernels for sm_90 with the ptxas bundled in triton (no GPU needed), and the launch
table below was chosen from ptxas's register counts; the kernels' speed is not measured.

Triton is imported lazily (the module imports without it), and the kernels are decorated with
triton.jit on first use, once per mode: triton.jit compiles or interprets according to
TRITON_INTERPRET when it decorates, so each call uses the kernels of the mode that the variable
selects at that call (cached per mode), whenever triton itself was imported.
"""

from __future__ import annotations

import functools
import os

import torch

NEGATIVE_SLOPE = 0.01  # as dape.NEGATIVE_SLOPE (nn.LeakyReLU's default)
DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
MIN_DOT = 16  # tl.dot needs every dimension >= 16: channel axes are padded (and masked) to this

triton = None  # set by _triton() on first use
tl = None
_KERNELS: dict = {}  # interpret mode (bool) -> (forward kernel, backward kernel)


def _triton():
    """Import triton (once); None when it is not installed."""
    global triton, tl
    if triton is None:
        try:
            import triton as _t
            import triton.language as _tl
        except ImportError:
            return None
        triton, tl = _t, _tl
    return triton


def interpreting() -> bool:
    return os.environ.get("TRITON_INTERPRET", "0").strip().lower() in ("1", "true", "yes", "on")


def available(device) -> bool:
    """Whether the kernels can run on `device`: triton imports and the device is CUDA, or
    TRITON_INTERPRET=1 (Triton's interpreter, which runs them on CPU tensors)."""
    if _triton() is None:
        return False
    return interpreting() or torch.device(device).type == "cuda"


# -- kernels -----------------------------------------------------------------------------------
# Plain functions here, decorated with triton.jit by _kernels() on first use; `tl` is a global of
# this module, set by _triton() before they are compiled or interpreted. Offsets are int64 (a
# pack of models can hold more than 2**31 elements). Channel axes are padded to C_P, D_P, H_P
# (powers of two >= 16) with masked loads (padding reads 0) and masked stores.
#
# Only builtins of triton.language here (tl.full, tl.dot, tl.where, ...), none of the functions
# that triton.language.standard defines with @triton.jit (tl.zeros, tl.sum, tl.max, tl.cdiv,
# ...): those are decorated when triton is imported, so if triton was imported without
# TRITON_INTERPRET=1 (e.g. by another module, as under pytest), the interpreter cannot call them
# ("Cannot call @triton.jit'd outside of the scope of a kernel"). With builtins only, the kernels
# run interpreted whenever TRITON_INTERPRET=1 is set at their first launch.


def _forward_kernel(
    x_ptr, c_ptr, wc_ptr, wo_ptr, bo_ptr, out_ptr,
    N, T2, C, D, H, B, batch_per_program,
    sx_k, sx_b, sx_c, sx_i, sx_j,
    sc_k, sc_d, sc_i, sc_j,
    swc_k, swc_d, swc_c,
    swo_k, swo_h, swo_d,
    sbo_k, sbo_h,
    so_k, so_b, so_h, so_n,
    C_P: tl.constexpr, D_P: tl.constexpr, H_P: tl.constexpr, BLOCK_N: tl.constexpr,
    ACC: tl.constexpr, OP: tl.constexpr, PREC: tl.constexpr, SLOPE: tl.constexpr,
):
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    dtype = x_ptr.dtype.element_ty

    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = n < N
    n64 = n.to(tl.int64)
    i = n64 // T2
    j = n64 % T2
    c = tl.arange(0, C_P)
    d = tl.arange(0, D_P)
    h = tl.arange(0, H_P)
    mask_c, mask_d, mask_h = c < C, d < D, h < H

    # Per program, once: the weights and the position half of the hidden layer.
    wc = tl.load(wc_ptr + k * swc_k + d[:, None] * swc_d + c[None, :] * swc_c,
                 mask=mask_d[:, None] & mask_c[None, :], other=0.0).to(dtype).to(OP)  # [D_P, C_P]
    wo = tl.load(wo_ptr + k * swo_k + h[:, None] * swo_h + d[None, :] * swo_d,
                 mask=mask_h[:, None] & mask_d[None, :], other=0.0).to(dtype).to(OP)  # [H_P, D_P]
    bo = tl.load(bo_ptr + k * sbo_k + h * sbo_h, mask=mask_h, other=0.0).to(ACC)  # [H_P]
    cst = tl.load(c_ptr + k * sc_k + d[:, None] * sc_d + (i * sc_i + j * sc_j)[None, :],
                  mask=mask_d[:, None] & mask_n[None, :], other=0.0).to(ACC)  # [D_P, BLOCK_N]

    x_rows = x_ptr + k * sx_k + c[:, None] * sx_c + (i * sx_i + j * sx_j)[None, :]
    o_rows = out_ptr + k * so_k + h[:, None] * so_h + (n64 * so_n)[None, :]
    mask_x = mask_c[:, None] & mask_n[None, :]
    mask_o = mask_h[:, None] & mask_n[None, :]
    # This program's slice of the batch; the pointers advance by one item per iteration.
    b_start = pid_s * batch_per_program
    b_end = tl.minimum(b_start + batch_per_program, B)
    x_rows += b_start.to(tl.int64) * sx_b
    o_rows += b_start.to(tl.int64) * so_b
    for _ in range(b_start, b_end):
        x = tl.load(x_rows, mask=mask_x, other=0.0).to(OP)  # [C_P, BLOCK_N]
        hid = tl.dot(wc, x, input_precision=PREC, out_dtype=ACC) + cst  # [D_P, BLOCK_N]
        act = tl.where(hid > 0, hid, hid * SLOPE)
        out = tl.dot(wo, act.to(dtype).to(OP), input_precision=PREC, out_dtype=ACC) + bo[:, None]
        tl.store(o_rows, out.to(out_ptr.dtype.element_ty), mask=mask_o)
        x_rows += sx_b
        o_rows += so_b


def _backward_kernel(
    x_ptr, c_ptr, wc_ptr, wo_ptr, g_ptr,
    gx_ptr, gc_ptr, gwc_ptr, gwo_ptr, gbo_ptr,
    N, T2, C, D, H, B, batch_per_program, n_blocks,
    sx_k, sx_b, sx_c, sx_i, sx_j,
    sc_k, sc_d, sc_i, sc_j,
    swc_k, swc_d, swc_c,
    swo_k, swo_h, swo_d,
    sg_k, sg_b, sg_h, sg_i, sg_j,
    C_P: tl.constexpr, D_P: tl.constexpr, H_P: tl.constexpr, BLOCK_N: tl.constexpr,
    ACC: tl.constexpr, OP: tl.constexpr, PREC: tl.constexpr, SLOPE: tl.constexpr,
):
    """Outputs (all contiguous): gx [K, B, C, N]; gc [K, S, D, N] and gbo [K, S, H, N] (partial
    sums over the batch slice s: the gradient of const, and the incoming gradient, whose sum over
    the positions is the gradient of b_out); gwc [K, S * n_blocks, D, C] and gwo
    [K, S * n_blocks, H, D] (a partial sum per program); all accumulated in ACC."""
    pid_n = tl.program_id(0)
    pid_s = tl.program_id(1)
    k = tl.program_id(2).to(tl.int64)
    n_splits = tl.num_programs(1)
    dtype = x_ptr.dtype.element_ty

    n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mask_n = n < N
    n64 = n.to(tl.int64)
    i = n64 // T2
    j = n64 % T2
    c = tl.arange(0, C_P)
    d = tl.arange(0, D_P)
    h = tl.arange(0, H_P)
    mask_c, mask_d, mask_h = c < C, d < D, h < H

    wc = tl.load(wc_ptr + k * swc_k + d[:, None] * swc_d + c[None, :] * swc_c,
                 mask=mask_d[:, None] & mask_c[None, :], other=0.0).to(dtype).to(OP)  # [D_P, C_P]
    wc_t = tl.load(wc_ptr + k * swc_k + c[:, None] * swc_c + d[None, :] * swc_d,
                   mask=mask_c[:, None] & mask_d[None, :], other=0.0).to(dtype).to(OP)  # [C_P, D_P]
    wo_t = tl.load(wo_ptr + k * swo_k + d[:, None] * swo_d + h[None, :] * swo_h,
                   mask=mask_d[:, None] & mask_h[None, :], other=0.0).to(dtype).to(OP)  # [D_P, H_P]
    mask_dn = mask_d[:, None] & mask_n[None, :]
    cst = tl.load(c_ptr + k * sc_k + d[:, None] * sc_d + (i * sc_i + j * sc_j)[None, :],
                  mask=mask_dn, other=0.0).to(ACC)  # [D_P, BLOCK_N]

    x_rows = x_ptr + k * sx_k + c[:, None] * sx_c + (i * sx_i + j * sx_j)[None, :]
    g_rows = g_ptr + k * sg_k + h[:, None] * sg_h + (i * sg_i + j * sg_j)[None, :]
    gx_rows = gx_ptr + k * B * C * N + c[:, None] * N + n64[None, :]
    mask_x = mask_c[:, None] & mask_n[None, :]
    mask_g = mask_h[:, None] & mask_n[None, :]

    g_const = tl.full((D_P, BLOCK_N), 0.0, ACC)
    g_bo = tl.full((H_P, BLOCK_N), 0.0, ACC)
    g_wc = tl.full((D_P, C_P), 0.0, ACC)
    g_wo = tl.full((H_P, D_P), 0.0, ACC)
    b_start = pid_s * batch_per_program
    b_end = tl.minimum(b_start + batch_per_program, B)
    x_rows += b_start.to(tl.int64) * sx_b
    g_rows += b_start.to(tl.int64) * sg_b
    gx_rows += b_start.to(tl.int64) * C * N
    for _ in range(b_start, b_end):
        x = tl.load(x_rows, mask=mask_x, other=0.0).to(OP)  # [C_P, BLOCK_N]
        g = tl.load(g_rows, mask=mask_g, other=0.0).to(dtype).to(OP)  # [H_P, BLOCK_N]
        # recompute the hidden tile (never stored)
        hid = tl.dot(wc, x, input_precision=PREC, out_dtype=ACC) + cst  # [D_P, BLOCK_N]
        act = tl.where(hid > 0, hid, hid * SLOPE)
        g_wo = tl.dot(g, tl.trans(act.to(dtype).to(OP)), g_wo, input_precision=PREC, out_dtype=ACC)
        g_bo += g.to(ACC)
        g_act = tl.dot(wo_t, g, input_precision=PREC, out_dtype=ACC)  # [D_P, BLOCK_N]
        g_hid = tl.where(hid > 0, g_act, g_act * SLOPE)
        g_const += g_hid
        g_hid_in = g_hid.to(dtype).to(OP)
        g_wc = tl.dot(g_hid_in, tl.trans(x), g_wc, input_precision=PREC, out_dtype=ACC)
        g_x = tl.dot(wc_t, g_hid_in, input_precision=PREC, out_dtype=ACC)  # [C_P, BLOCK_N]
        tl.store(gx_rows, g_x.to(gx_ptr.dtype.element_ty), mask=mask_x)
        x_rows += sx_b
        g_rows += sg_b
        gx_rows += C * N

    # Partial sums: per batch slice for const and b_out (per position), per program for the weights.
    split = k * n_splits + pid_s
    tl.store(gc_ptr + split * D * N + d[:, None] * N + n64[None, :], g_const, mask=mask_dn)
    tl.store(gbo_ptr + split * H * N + h[:, None] * N + n64[None, :], g_bo, mask=mask_g)
    program = split * n_blocks + pid_n
    tl.store(gwc_ptr + program * D * C + d[:, None] * C + c[None, :], g_wc,
             mask=mask_d[:, None] & mask_c[None, :])
    tl.store(gwo_ptr + program * H * D + h[:, None] * D + d[None, :], g_wo,
             mask=mask_h[:, None] & mask_d[None, :])


def _kernels():
    """(forward, backward) kernels for the current mode, decorated on first use."""
    if _triton() is None:
        raise RuntimeError("the fused DAPE kernels need triton (pip install triton)")
    mode = interpreting()
    if mode not in _KERNELS:
        # triton.jit reads TRITON_INTERPRET when it decorates: compiled or interpreted kernels.
        _KERNELS[mode] = (triton.jit(_forward_kernel), triton.jit(_backward_kernel))
    return _KERNELS[mode]


# -- launch configuration ----------------------------------------------------------------------
def _pad(size: int) -> int:
    return max(MIN_DOT, 1 << max(0, size - 1).bit_length())


def _accumulator(dtype: torch.dtype):
    return tl.float64 if dtype == torch.float64 else tl.float32


def _operand(dtype: torch.dtype):
    """The dtype of tl.dot's operands: the input dtype, except bfloat16 under the interpreter,
    whose tl.dot multiplies the raw bits of bfloat16 (stored as uint16 in NumPy; triton 3.9):
    there the operands, already rounded to bfloat16, are widened exactly to float32, which
    gives the same products (exact in float32) and the same float32 accumulation."""
    if dtype == torch.bfloat16 and interpreting():
        return tl.float32
    return {torch.float32: tl.float32, torch.float64: tl.float64, torch.bfloat16: tl.bfloat16,
            torch.float16: tl.float16}[dtype]


def _dtypes(dtype: torch.dtype) -> dict:
    return dict(ACC=_accumulator(dtype), OP=_operand(dtype), PREC=_precision(dtype))


def _precision(dtype: torch.dtype) -> str:
    if dtype == torch.float32 and torch.get_float32_matmul_precision() != "highest":
        return "tf32"
    return "ieee"


def _table_block(width_p: int, dtype: torch.dtype, backward: bool) -> int:
    """Positions per program, with 8 warps: the largest power of two that ptxas compiled for
    sm_90 (H100 / H200; triton 3.9) with at most 16 bytes of register spills, for D_P in 16..128
    and C_P, H_P of 16 or 32 (found offline by compiling the kernels, without a GPU; not timed;
    float64's backward spills at D_P >= 64 whatever the block, and sm_80 spills a little more).
    The backward keeps about five [D_P, block] tiles live, the forward two or three; IEEE float32
    products (FMA, no tensor cores) need more registers than TF32 or 16-bit ones, float64 more."""
    if dtype == torch.float64:
        return 16 if backward else max(16, 2048 // width_p)
    if backward:
        if dtype == torch.float32:
            return 64 if width_p <= 16 else 32 if width_p <= 64 else 16
        return 128 if width_p <= 16 else 64 if width_p <= 128 else 16
    if dtype == torch.float32 and _precision(dtype) == "ieee":
        return 128 if width_p <= 16 else 64 if width_p <= 64 else 16
    return 128 if width_p <= 128 else 32


def _launch(positions: int, width_p: int, dtype: torch.dtype, backward: bool,
            requested: int | None) -> tuple[int, int]:
    """(positions per program, warps per program)."""
    if requested is not None:
        if requested < MIN_DOT or requested & (requested - 1):
            raise ValueError(f"block_positions must be a power of two >= {MIN_DOT}, not {requested}")
        block = requested
    else:
        block = min(_table_block(width_p, dtype, backward), _pad(positions))
    # fewer warps for small tiles (few positions): no more elements per thread than the table's
    return block, 8 if width_p * block >= 1024 else 4


def _batch_split(batch: int, programs: int, device: torch.device, requested: int | None) -> tuple[int, int]:
    """(slices, items per slice): split the batch across programs when the grid of position
    blocks and models alone (`programs`) is too small to fill the GPU."""
    if requested is None:
        if device.type == "cuda" and not interpreting():
            requested = -(-4 * _multiprocessors(device.index) // max(1, programs))
        else:
            requested = 1
    slices = max(1, min(batch, requested))
    per = max(1, -(-batch // slices))
    return -(-batch // per), per  # no empty slice


@functools.lru_cache(maxsize=None)
def _multiprocessors(index) -> int:
    return torch.cuda.get_device_properties(torch.cuda.current_device() if index is None else index
                                            ).multi_processor_count


def _check(content, const, w_content, w_out, b_out):
    if content.dim() != 5:
        raise ValueError(f"content must be [K, batch, C, T1, T2], got {tuple(content.shape)}")
    packs, _, channels, t1, t2 = content.shape
    width, heads = w_content.shape[-2], w_out.shape[-2]
    expected = {"const": (const, (packs, width, t1, t2)), "w_content": (w_content, (packs, width, channels)),
                "w_out": (w_out, (packs, heads, width)), "b_out": (b_out, (packs, heads))}
    for name, (tensor, shape) in expected.items():
        if tuple(tensor.shape) != shape:
            raise ValueError(f"{name} must have shape {shape} (content {tuple(content.shape)}), "
                             f"got {tuple(tensor.shape)}")
        if tensor.device != content.device:
            raise ValueError(f"{name} is on {tensor.device}, content on {content.device}")
    for name, tensor in (("content", content), ("const", const), ("w_content", w_content),
                         ("w_out", w_out), ("b_out", b_out)):
        if tensor.dtype not in DTYPES:
            raise TypeError(f"{name} must be float16, bfloat16, float32 or float64, not {tensor.dtype}")
    if content.device.type != "cuda" and not interpreting():
        raise RuntimeError(f"the fused DAPE kernels run on CUDA tensors (content is on {content.device}), "
                           "or on any device with TRITON_INTERPRET=1")


class FusedPositionwiseMLP(torch.autograd.Function):
    """`dape.PositionwiseMLP` with a pack axis K, as two Triton kernels that never store the
    hidden activations: content [K, batch, C, T1, T2], const [K, D, T1, T2], w_content [K, D, C],
    w_out [K, H, D], b_out [K, H] -> [K, batch, H, T1, T2]. The backward returns the gradients
    of all five inputs (in their dtypes). Two optional trailing arguments, `block_positions` (a
    power of two >= 16) and `batch_splits`, override the launch configuration (tests)."""

    @staticmethod
    def forward(ctx, content, const, w_content, w_out, b_out, block_positions=None, batch_splits=None):
        _check(content, const, w_content, w_out, b_out)
        forward_kernel, _ = _kernels()
        packs, batch, channels, t1, t2 = content.shape
        width, heads, positions = w_content.shape[1], w_out.shape[1], t1 * t2
        c_p, d_p, h_p = _pad(channels), _pad(width), _pad(heads)
        out = torch.empty(packs, batch, heads, positions, dtype=content.dtype, device=content.device)
        if out.numel():
            block, warps = _launch(positions, d_p, content.dtype, False, block_positions)
            blocks = -(-positions // block)
            splits, per = _batch_split(batch, blocks * packs, content.device, batch_splits)
            forward_kernel[(blocks, splits, packs)](
                content, const, w_content, w_out, b_out, out,
                positions, t2, channels, width, heads, batch, per,
                *content.stride(), *const.stride(), *w_content.stride(), *w_out.stride(), *b_out.stride(),
                *out.stride(),
                C_P=c_p, D_P=d_p, H_P=h_p, BLOCK_N=block, **_dtypes(content.dtype), SLOPE=NEGATIVE_SLOPE,
                num_warps=warps)
        ctx.save_for_backward(content, const, w_content, w_out)
        ctx.b_out = (b_out.shape, b_out.dtype)
        ctx.launch = (block_positions, batch_splits)
        return out.view(packs, batch, heads, t1, t2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad):
        content, const, w_content, w_out = ctx.saved_tensors
        if not any(ctx.needs_input_grad[:5]):
            return (None,) * 7
        _, backward_kernel = _kernels()
        packs, batch, channels, t1, t2 = content.shape
        width, heads, positions = w_content.shape[1], w_out.shape[1], t1 * t2
        c_p, d_p, h_p = _pad(channels), _pad(width), _pad(heads)
        block_positions, batch_splits = ctx.launch
        block, warps = _launch(positions, d_p, content.dtype, True, block_positions)
        blocks = -(-positions // block)
        splits, per = _batch_split(batch, blocks * packs, content.device, batch_splits)
        acc = torch.float64 if content.dtype == torch.float64 else torch.float32
        device = content.device
        launch = content.numel() > 0 and grad.numel() > 0
        # the kernel writes every element of these buffers; without a launch they stay zero
        new = functools.partial(torch.empty if launch else torch.zeros, device=device)
        g_content = new(packs, batch, channels, positions, dtype=content.dtype)
        g_const = new(packs, splits, width, positions, dtype=acc)
        g_wc = new(packs, splits * blocks, width, channels, dtype=acc)
        g_wo = new(packs, splits * blocks, heads, width, dtype=acc)
        g_bo = new(packs, splits, heads, positions, dtype=acc)
        if launch:
            backward_kernel[(blocks, splits, packs)](
                content, const, w_content, w_out, grad,
                g_content, g_const, g_wc, g_wo, g_bo,
                positions, t2, channels, width, heads, batch, per, blocks,
                *content.stride(), *const.stride(), *w_content.stride(), *w_out.stride(), *grad.stride(),
                C_P=c_p, D_P=d_p, H_P=h_p, BLOCK_N=block, **_dtypes(content.dtype), SLOPE=NEGATIVE_SLOPE,
                num_warps=warps)
        b_shape, b_dtype = ctx.b_out
        needs = ctx.needs_input_grad
        grads = (
            g_content.view(packs, batch, channels, t1, t2),
            g_const.sum(1).view(packs, width, t1, t2).to(const.dtype),
            g_wc.sum(1).to(w_content.dtype),
            g_wo.sum(1).to(w_out.dtype),
            g_bo.sum((1, 3)).to(b_dtype).view(b_shape),
        )
        return tuple(g if need else None for g, need in zip(grads, needs[:5])) + (None, None)


def fused_positionwise_mlp(content, const, w_content, w_out, b_out, *,
                           block_positions=None, batch_splits=None):
    """out = W_out leaky_relu(W_c content + const, 0.01) + b_out at every position, fused.

    Either the shapes of `dape.PositionwiseMLP` (content [batch, C, T, T], const [D, T, T],
    w_content [D, C], w_out [H, D], b_out [H] -> [batch, H, T, T]) or the same with a leading pack
    axis K on every argument (-> [K, batch, H, T, T]). Differentiable in all five arguments."""
    if content.dim() == 4:
        args = (content, const, w_content, w_out, b_out)
        out = FusedPositionwiseMLP.apply(*(a.unsqueeze(0) for a in args), block_positions, batch_splits)
        return out.squeeze(0)
    if content.dim() == 5:
        args = (content, const, w_content, w_out, b_out)
        return FusedPositionwiseMLP.apply(*args, block_positions, batch_splits)
    raise ValueError(f"content must be [batch, C, T, T] or [K, batch, C, T, T], got {tuple(content.shape)}")
