"""The GPU paths that a CPU cannot check (skipped without CUDA; scripts/gpu_check.sh runs them):
FlexAttention's gradients and the DAPE kernels compiled, against the explicit attention and the
fast DAPE form."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import assert_same_function

from che.config import ModelConfig
from che.models import Transformer

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def pair(pe: str, runs: int, **changes):
    config = ModelConfig(input_size=2, output_size=2, pe=pe, dropout=0.0, attention="explicit", dape_impl="fast")
    plain = Transformer(config, seeds=list(range(runs))).cuda().double()
    other = Transformer(dataclasses.replace(config, **changes), seeds=list(range(runs))).cuda().double()
    other.load_state_dict(plain.state_dict())
    return plain, other


def same_function(plain, other, runs: int):
    inputs = torch.randint(0, 2, (runs, 4, 9), device="cuda")
    assert_same_function(plain, other, inputs, 9, atol=1e-9, grad_atol=1e-8)


@pytest.mark.parametrize("pe", ["alibi", "kerple-log", "t5", "fire"])
@pytest.mark.parametrize("runs", [1, 3])
def test_flex_attention_values_and_gradients(pe, runs):
    same_function(*pair(pe, runs, attention="flex"), runs)


@pytest.mark.parametrize("runs", [1, 3])
def test_dape_kernels_on_the_gpu(runs):
    same_function(*pair("dape-kerple-log", runs, dape_impl="triton"), runs)
