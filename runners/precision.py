"""A run's numerics (the `precision` setting), as contexts around its forward passes and steps.

- fp32: float32 everywhere;
- tf32: float32, with TF32 matmuls on CUDA (JAX's default there; the same as fp32 on a CPU);
- bf16: autocast to bfloat16 on the device (on CUDA, tensor-core matmuls: bfloat16 operands and
  products, float32 accumulation; softmax, layer norm and the loss stay float32);
- bf16-emulated: those bf16 numerics computed in float32 on any device, at float32 speed: every
  matmul's operands and product are rounded to bfloat16 (and so are their gradients in the backward
  pass), the rest stays float32. For studies of what bf16 does to learning on a machine whose bf16
  is slow (this project's CPU runs bf16 autocast 5-6x slower than float32).
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode


@contextlib.contextmanager
def numerics(device: torch.device, precision: str):
    """Autocast (bf16), the bf16 emulation, and CUDA's TF32 switch (restored afterwards: torch's
    flag is process-wide) for the duration: around forward passes."""
    with matmul_precision(device, precision):
        if precision == "bf16":
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                yield
        elif precision == "bf16-emulated":
            with EmulatedBF16():
                yield
        else:
            yield


@contextlib.contextmanager
def matmul_precision(device: torch.device, precision: str):
    """CUDA's TF32 switch for the duration (on with tf32 and bf16, whose float32 matmuls are TF32's,
    as before the precision setting): around whole steps (backward and Adam too)."""
    tf32 = precision in ("tf32", "bf16")
    if device.type != "cuda":
        yield
        return
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = tf32
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous


class RoundBF16(torch.autograd.Function):
    """x rounded to bfloat16 and back (round to nearest even); its gradient rounded the same way."""

    @staticmethod
    def forward(ctx, x):
        return x.to(torch.bfloat16).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        return grad.to(torch.bfloat16).to(grad.dtype)


def round_bf16(x):
    return RoundBF16.apply(x) if isinstance(x, torch.Tensor) and x.is_floating_point() else x


# What CUDA autocast runs in bfloat16 and che calls: matmuls and the fused attention.
_MATMULS = {torch.matmul, torch.Tensor.__matmul__, torch.bmm, torch.Tensor.bmm, torch.baddbmm, torch.mm,
            torch.addmm, F.linear, torch.einsum, F.scaled_dot_product_attention}


class EmulatedBF16(TorchFunctionMode):
    """Within it, every matmul (and fused attention) computes on bfloat16-rounded operands and
    returns a bfloat16-rounded product, in float32."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func not in _MATMULS:
            return func(*args, **kwargs)
        if func is torch.einsum:
            args = (args[0], *[round_bf16(a) for a in args[1:]])
        elif func is F.scaled_dot_product_attention:  # q, k, v; a mask (bias) is added in float32
            args = tuple(round_bf16(a) for a in args[:3]) + tuple(args[3:])
        else:
            args = tuple(round_bf16(a) for a in args)
        return round_bf16(func(*args, **kwargs))
