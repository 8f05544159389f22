"""Range evaluation as the CHE reference does it (neural_networks_chomsky_hierarchy's range
evaluation).

Every length 1..max_test_length gets `eval_samples` examples in sub-batches of `eval_batch_size`
(64 in the reference); a sub-batch's accuracy is the masked per-token accuracy pooled over it, and
a length's accuracy is the mean over its sub-batches. The data of a length come from a generator
seeded by (eval_seed, length), so every run of a task sees the same test set, whatever range it
evaluates.

Packs: every run of a model's pack is evaluated on the same data in one forward pass, and every
run draws the same random positions (its generator is seeded from the evaluation seed, the length
and the sub-batch, not from the run), so a run scores the same alone or in a pack.

Memory: a sub-batch is fed to the model in chunks small enough for `eval_memory_gb`. Chunking
does not change the result: the model's output for one example does not depend on the others,
and the generators (randomized positions, dropout if enabled) are re-seeded identically for every
chunk of a sub-batch, so all chunks see the same random positions. (With `eval_dropout`, dropout
masks do depend on the chunking; the statistics do not.) A sub-batch with nothing to count
(counted = 0) scores nan.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from che.models.packed import PackedDropout
from che.runners.precision import numerics
from che.runners.train import masked_accuracy_counts


def length_seed(eval_seed: int, length: int) -> int:
    return eval_seed * 1_000_003 + length


def bytes_per_example(model_config, tokens: int, device_type: str = "cpu") -> int:
    """A conservative estimate of the working set of one example of one run in a forward pass: a
    few [H, T, T] float32 tensors alive at once in an attention layer (scores, bias, logits,
    probabilities), and what the PE holds beyond them per (query, key) pair (each part of it
    declares that: `memory_per_pair`)."""
    from che.models.positional import parse_pe

    per_pair = 6 * model_config.n_heads + parse_pe(model_config.pe, model_config).memory_per_pair(device_type)
    return 4 * tokens * tokens * per_pair + 64 * tokens * model_config.d_model


def chunk_size(model_config, tokens: int, batch: int, memory_gb: float, device_type: str = "cpu",
               pack: int = 1) -> int:
    """Examples per forward pass so that `pack` runs' working sets fit in `memory_gb`."""
    per_example = bytes_per_example(model_config, tokens, device_type) * pack
    return max(1, min(batch, int(memory_gb * 2**30 // per_example)))


def set_eval_mode(model: nn.Module, dropout: bool) -> None:
    """eval() everywhere, but keep dropout active if asked (as the reference does)."""
    model.eval()
    if dropout:
        for module in model.modules():
            if isinstance(module, (nn.Dropout, PackedDropout)):
                module.train()


def eval_generators(pack: int, seed: int, device: torch.device) -> list[torch.Generator]:
    """The same generator for every run: all runs see the same random positions (and dropout masks)
    at evaluation, whatever pack they are in."""
    return [torch.Generator(device=device).manual_seed(seed) for _ in range(pack)]


def evaluate(model: nn.Module, task, config, device: torch.device,
             on_length: Callable[[int, float], None] | None = None,
             runs: list[int] | None = None) -> list[list[float]]:
    """Accuracy of each run of the model's pack for every length 1..max_test_length: a list per
    run (index 0 is length 1). `runs` restricts the progress report to those runs (the live ones)."""
    with numerics(device, config.precision):
        return _evaluate(model, task, config, device, on_length, runs)


@torch.no_grad()
def _evaluate(model: nn.Module, task, config, device: torch.device,
             on_length: Callable[[int, float], None] | None = None,
             runs: list[int] | None = None) -> list[list[float]]:
    set_eval_mode(model, config.eval_dropout)
    pack = model.pack
    runs = list(range(pack)) if runs is None else runs
    accuracies: list[list[float]] = [[] for _ in range(pack)]
    for length in range(1, config.max_test_length + 1):
        generator = torch.Generator().manual_seed(length_seed(config.eval_seed, length))
        output_length = task.output_length(length)
        tokens = task.input_length(length) + output_length
        sub_batch_accuracies = []
        for sub_batch, start in enumerate(range(0, config.eval_samples, config.eval_batch_size)):
            n = min(config.eval_batch_size, config.eval_samples - start)
            batch = task.sample(n, length, generator)
            step = chunk_size(model.config, tokens, n, config.eval_memory_gb, device.type, pack)
            correct = counted = torch.zeros(pack, dtype=torch.long, device=device)
            for i in range(0, n, step):
                # every chunk of a sub-batch draws the same random positions
                generators = eval_generators(pack, length_seed(config.eval_seed, length) * 1009 + sub_batch, device)
                inputs = batch.inputs[i:i + step].to(device).expand(pack, -1, -1)
                logits = model(inputs, output_length, generators)
                c, k = masked_accuracy_counts(logits, batch.targets[i:i + step].to(device).expand(pack, -1, -1),
                                              batch.mask[i:i + step].to(device).expand(pack, -1, -1))
                correct, counted = correct + c, counted + k
            sub_batch_accuracies.append((correct.double() / counted.double()).tolist())
        for k in range(pack):
            values = [a[k] for a in sub_batch_accuracies]
            accuracies[k].append(float(sum(values) / len(values)))
        if on_length is not None:
            on_length(length, sum(accuracies[k][-1] for k in runs) / len(runs))
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
