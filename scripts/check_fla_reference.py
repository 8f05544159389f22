"""A dev-only check: che's causal stick-breaking, FoX and PaTH attention against flash-linear-attention's
plain PyTorch references (`naive_stickbreaking_attn`, `naive_forgetting_attn`, `naive_path_attn`), on
random inputs.

    pip install --no-deps fla-core==0.6.0 einops      # or --target /tmp/flacore
    python scripts/check_fla_reference.py [/tmp/flacore]

fla is not a dependency of che (it pulls transformers and GPU kernels); the naive files are loaded
by path (from the installed fla-core without importing it, or from the folder given).
tests/test_causal_forms.py and tests/test_pe_path.py check the same forms, restated, in every test
run. fla's naive PaTH computes in float32 (`.to(torch.float)`); it is also run in float64, the same
code with torch.float and the default dtype read as float64.
"""

from __future__ import annotations

import contextlib
import importlib.util
import math
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F

from che.config import ModelConfig
from che.models import Transformer
from che.models.positional.stick_breaking import stick_breaking_weights


def load(root: Path, relative: str, name: str):
    spec = importlib.util.spec_from_file_location(name, root / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def float64(module):
    """`module` computing in float64 where it asks for torch.float (float32): its `torch` a copy
    whose `float` is float64, and float64 the default dtype."""
    original, previous = module.torch, torch.get_default_dtype()
    module.torch = types.ModuleType("torch")
    module.torch.__dict__.update(vars(torch), float=torch.float64)
    torch.set_default_dtype(torch.float64)
    try:
        yield
    finally:
        module.torch = original
        torch.set_default_dtype(previous)


def installed_fla() -> Path:
    spec = importlib.util.find_spec("fla")  # finds the package without running its __init__
    if spec is None or not spec.submodule_search_locations:
        sys.exit("fla-core is not installed: pip install --no-deps fla-core==0.6.0 einops, or give its folder")
    return Path(list(spec.submodule_search_locations)[0]).parent


def path_layer_differences(naive_module, pe: str, trials: int = 3) -> tuple[float, float, float]:
    """Largest differences of a whole causal PaTH layer of che (float64) from fla's naive_path_attn on
    the layer's q, k, v and the w, beta che computes (fla's convolution and l2 norm are Triton
    kernels): outputs as fla's code is written (float32) and in float64, and in float64 the gradients
    of the outputs' squares for the input and every parameter. PaTH-FoX: fla adds the log gates g
    before the scale 1/sqrt(d), che's FoX after it, so che's gates log f are fla's g = sqrt(d) log f."""
    naive = naive_module.naive_path_attn
    torch.manual_seed(2)
    net = Transformer(ModelConfig(input_size=2, output_size=2, pe=pe, dropout=0.0)).double()
    layer = net.blocks[0].attention
    path = layer.pes[0].base if pe.startswith("fox") else layer.pes[0]
    parameters = list(layer.parameters())
    worst = [0.0, 0.0, 0.0]
    for trial in range(trials):
        with torch.no_grad():
            for p in path.parameters():  # transforms far from the identity: unit w, beta over (0, 2)
                p.mul_(25.0).add_(torch.randn_like(p))
        x = torch.randn(1, 3, 70, 64, dtype=torch.float64, requires_grad=True)       # 70 > fla's chunk of 64
        got = layer(x, [None])[0]
        q, k, v = (x[0] @ layer.qkv.weight[0]).view(3, 70, 3, 8, 8).unbind(2)        # [B, T, H, d]
        w, beta = (t.transpose(1, 2) for t in path.left(x[0]))                       # [B, T, H, d], [B, T, H]
        g = torch.zeros_like(beta)
        if pe.startswith("fox"):
            g = F.logsigmoid(layer.pes[0].left(x[0]).float()).double()
        for column, precision in enumerate([contextlib.nullcontext(), float64(naive_module)]):
            with precision:
                o = naive(q, k, v, w, beta, g, 1 / math.sqrt(8))
            expected = o.reshape(3, 70, 64).to(torch.float64) @ layer.out.weight[0]
            worst[column] = max(worst[column], (got - expected).abs().max().item())
        mine = torch.autograd.grad(got.square().sum(), [x] + parameters, retain_graph=True)
        theirs = torch.autograd.grad(expected.square().sum(), [x] + parameters)
        worst[2] = max([worst[2]] + [((a - b).abs().max() / b.abs().max()).item() for a, b in zip(mine, theirs)])
    return worst[0], worst[1], worst[2]


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else installed_fla()
    sb = load(root, "fla/ops/stickbreaking_attn/naive.py", "fla_sb").naive_stickbreaking_attn
    fox = load(root, "fla/ops/forgetting_attn/naive.py", "fla_fox").naive_forgetting_attn
    torch.manual_seed(0)
    worst = {}

    # stick-breaking: fla's (o, rem) with the leftover given to the query's own value == che's weights @ v
    for trial in range(5):
        q, k, v = (torch.randn(2, 11, 4, 8, dtype=torch.float64) * (1 + trial) for _ in range(3))
        o, rem = sb(q, k, v)
        expected = o + rem[..., None] * v
        z = torch.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(8)
        z = z.masked_fill(torch.ones(11, 11, dtype=torch.bool).triu(1), float("-inf"))
        mine = torch.einsum("bhqk,bkhd->bqhd", stick_breaking_weights(z, causal=True), v)
        worst["stick-breaking"] = max(worst.get("stick-breaking", 0.0), (mine - expected).abs().max().item())

    # FoX: a whole causal attention layer of che against fla's naive forgetting attention on its q, k, v, g
    torch.manual_seed(1)
    net = Transformer(ModelConfig(input_size=2, output_size=2, pe="fox+causal", dropout=0.0)).double()
    layer = net.blocks[0].attention
    for trial in range(5):
        x = torch.randn(1, 3, 13, 64, dtype=torch.float64)
        with torch.no_grad():
            got = layer(x, [None])[0]
            q, k, v = (x[0] @ layer.qkv.weight[0]).view(3, 13, 3, 8, 8).unbind(2)   # [B, T, H, d]
            g = F.logsigmoid(layer.pes[0].left(x[0]).float()).double()                # [B, T, H]
            o = fox(q, k, v, g)
            expected = o.reshape(3, 13, 64).to(torch.float64) @ layer.out.weight[0]
        worst["fox"] = max(worst.get("fox", 0.0), (got - expected).abs().max().item())
    for name, error in worst.items():
        print(f"{name:15s} causal, float64: largest difference from fla's naive reference {error:.2e}")
    assert all(error < 1e-6 for error in worst.values())

    # PaTH: a whole causal layer against fla's naive PaTH attention, without and with FoX's gates
    path_naive = load(root, "fla/ops/path_attn/naive.py", "fla_path")
    for pe in ("path+causal", "fox-path+causal"):
        as_written, in_float64, gradients = path_layer_differences(path_naive, pe)
        print(f"{pe:15s} largest difference from fla's naive_path_attn: outputs {as_written:.2e} as written "
              f"(float32), {in_float64:.2e} in float64; gradients {gradients:.2e} of each one's largest, float64")
        fox = pe.startswith("fox")  # FoX sums its log gates in float32
        assert as_written < 1e-4 and in_float64 < (1e-5 if fox else 1e-12) and gradients < (1e-5 if fox else 1e-12)


if __name__ == "__main__":
    main()
