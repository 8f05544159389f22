"""Which runs of a grid train together as one pack (`che.models.packed`): runs that differ only in
seed and learning rate, in packs whose size fits the device."""

from __future__ import annotations

from che.config import RunConfig
from che.errors import CheError, echo


def make_packs(configs: list[RunConfig], size: int) -> list[list[RunConfig]]:
    """Runs that differ only in seed and learning rate, in grid order, in packs of at most `size`."""
    groups: dict[str, list[RunConfig]] = {}
    for config in configs:
        groups.setdefault(config.pack_key(), []).append(config)
    packs = []
    for group in groups.values():  # as even as possible: 9 runs in packs of up to 8 are 5 + 4
        count = -(-len(group) // max(1, size))
        bounds = [round(i * len(group) / count) for i in range(count + 1)]
        packs += [group[a:b] for a, b in zip(bounds, bounds[1:])]
    return packs


CPU_PACK = 4  # at the cpu preset a pack of 3 runs makes 1.3-1.5x the run-steps/s of one run (2 cores)


def auto_pack_size(configs: list[RunConfig], device: str) -> int:
    """How many runs to train as one pack: on a CPU up to CPU_PACK (the batched operations of a
    pack use the cores better than one small run does); on a GPU as many as 40% of its memory
    holds, at most 16. A run's memory is measured: one
    training step of the most demanding configuration of the grid (by `bytes_per_example` at its
    longest training sequence), weights and Adam's state included; the 40% leaves room for the
    captured graphs' pool beside the eager allocations."""
    from che.runners.run import pick_device

    torch_device = pick_device(device)
    if not configs:
        return 1
    if torch_device.type != "cuda":
        return CPU_PACK
    import torch

    from che.registry import TASKS
    from che.runners.evaluate import bytes_per_example
    from che.runners.train import Trainer, train_tokens

    def demand(config):
        task = TASKS.get(config.task)
        return config.batch_size * bytes_per_example(config.model_for(task), train_tokens(config, task), "cuda")

    worst = max({c.pack_key(): c for c in configs}.values(), key=demand)
    task = TASKS.get(worst.task)
    probe = RunConfig.from_dict(worst.to_dict() | {"cuda_graphs": False})
    torch.cuda.synchronize(torch_device)
    before = torch.cuda.memory_allocated(torch_device)
    torch.cuda.reset_peak_memory_stats(torch_device)
    with torch.random.fork_rng(devices=[torch_device]):
        trainer = Trainer([probe], task, torch_device)
        batch = task.sample(probe.batch_size, probe.train_length, torch.Generator().manual_seed(0))
        trainer.step(tuple(getattr(batch, name)[None] for name in ("inputs", "targets", "mask")))
    torch.cuda.synchronize(torch_device)
    per_run = torch.cuda.max_memory_allocated(torch_device) - before
    del trainer
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(torch_device).total_memory
    return max(1, min(16, int(0.4 * total // max(per_run, 1))))


def parse_pack(value: str, configs: list[RunConfig], device: str) -> int:
    """--pack: auto, off (1) or a size K."""
    if value == "auto":
        return auto_pack_size(configs, device)
    if value == "off":
        return 1
    try:
        size = int(value)
    except ValueError:
        raise CheError(f"--pack must be auto, off or a number of runs, got {echo(repr(value))}") from None
    if not 1 <= size <= 1024:
        raise CheError(f"--pack must be between 1 and 1024, got {size}")
    return size
