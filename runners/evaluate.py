"""Range evaluation as the CHE reference does it (spec §2.4, §3).

Every length 1..max_test_length gets `eval_samples` examples in sub-batches of `eval_batch_size`
(64 in the reference); a sub-batch's accuracy is the masked per-token accuracy pooled over it, and
a length's accuracy is the mean over its sub-batches. The data of a length come from a generator
seeded by (eval_seed, length), so every run of a task sees the same test set, whatever range it
evaluates.

Memory: a sub-batch is fed to the model in chunks small enough for `eval_memory_gb`. Chunking
does not change the result: the model's output for one example does not depend on the others,
and the torch RNG (randomized positions, dropout if enabled) is re-seeded identically for every
chunk of a sub-batch, so all chunks see the same random positions. (With `eval_dropout`, dropout
masks do depend on the chunking; the statistics do not.)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from che.runners.train import autocast, masked_accuracy_counts


def length_seed(eval_seed: int, length: int) -> int:
    return eval_seed * 1_000_003 + length


def bytes_per_example(model_config, tokens: int, device_type: str = "cpu") -> int:
    """A conservative estimate of the working set of one example in a forward pass: a few
    [H, T, T] float32 tensors alive at once in an attention layer (scores, bias, logits,
    probabilities), more with DAPE (its output; the literal form also holds the concatenated
    input and the [T, T, D] hidden activations, which the fast form materialises only on a GPU)."""
    heads = model_config.n_heads
    per_position = 6 * heads
    if model_config.pe.startswith("dape"):
        per_position += 3 * heads
        if model_config.dape_impl == "literal" or device_type == "cuda":
            per_position += 2 * heads + 2 * model_config.dape_width
    return 4 * tokens * tokens * per_position + 64 * tokens * model_config.d_model


def chunk_size(model_config, tokens: int, batch: int, memory_gb: float, device_type: str = "cpu") -> int:
    per_example = bytes_per_example(model_config, tokens, device_type)
    return max(1, min(batch, int(memory_gb * 2**30 // per_example)))


def set_eval_mode(model: nn.Module, dropout: bool) -> None:
    """eval() everywhere, but keep dropout active if asked (as the reference does)."""
    model.eval()
    if dropout:
        for module in model.modules():
            if isinstance(module, nn.Dropout):
                module.train()


@torch.no_grad()
def evaluate(model: nn.Module, task, config, device: torch.device,
             on_length: Callable[[int, float], None] | None = None) -> list[float]:
    """Accuracy for every length 1..max_test_length (index 0 is length 1)."""
    set_eval_mode(model, config.eval_dropout)
    accuracies = []
    devices = [device] if device.type == "cuda" else []
    for length in range(1, config.max_test_length + 1):
        generator = torch.Generator().manual_seed(length_seed(config.eval_seed, length))
        output_length = task.output_length(length)
        tokens = task.input_length(length) + output_length
        sub_batch_accuracies = []
        for sub_batch, start in enumerate(range(0, config.eval_samples, config.eval_batch_size)):
            n = min(config.eval_batch_size, config.eval_samples - start)
            batch = task.sample(n, length, generator)
            step = chunk_size(model.config, tokens, n, config.eval_memory_gb, device.type)
            correct = counted = 0
            for i in range(0, n, step):
                with torch.random.fork_rng(devices=devices):
                    torch.manual_seed(length_seed(config.eval_seed, length) * 1009 + sub_batch)
                    with autocast(device, config.bf16):
                        logits = model(batch.inputs[i:i + step].to(device), output_length)
                c, k = masked_accuracy_counts(logits, batch.targets[i:i + step].to(device),
                                              batch.mask[i:i + step].to(device))
                correct, counted = correct + int(c), counted + int(k)
            sub_batch_accuracies.append(correct / counted if counted else math.nan)
        accuracy = float(sum(sub_batch_accuracies) / len(sub_batch_accuracies))
        accuracies.append(accuracy)
        if on_length is not None:
            on_length(length, accuracy)
    return accuracies


def summarize(accuracies: list[float], train_length: int) -> dict:
    """The scores of a run: OOD over N+1..M (ours), N+2..M (the reference script's off-by-one),
    and in-distribution over 1..N."""
    def mean(values):
        values = [v for v in values if not math.isnan(v)]
        return sum(values) / len(values) if values else math.nan

    return {
        "ood_accuracy": mean(accuracies[train_length:]),
        "ood_accuracy_reference_script": mean(accuracies[train_length + 1:]),
        "in_distribution_accuracy": mean(accuracies[:train_length]),
    }
