"""A dev-only check: che's causal stick-breaking and FoX attention against flash-linear-attention's
plain PyTorch references (`naive_stickbreaking_attn`, `naive_forgetting_attn`), on random inputs.

    pip install --no-deps --target /tmp/flacore fla-core==0.6.0 && pip install einops
    python scripts/check_fla_reference.py /tmp/flacore

fla is not a dependency of che (it pulls transformers and GPU kernels); the naive files are loaded
by path. tests/test_causal_forms.py checks the same forms, restated, in every test run.
"""

from __future__ import annotations

import importlib.util
import math
import sys
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


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/flacore")
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


if __name__ == "__main__":
    main()
