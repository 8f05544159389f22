"""A training step captured as a CUDA graph, one graph per input shape, replayed.

At d_model 64 a training step is a few milliseconds of GPU work behind hundreds of kernel
launches; replaying a captured graph launches them all at once. CHE trains on 40 lengths, so
there are at most 40 graphs (one per shape, captured the second time a shape comes), sharing one
memory pool: they never run at the same time.

Exactness: a graph replays the same kernels on the same memory as the eager step it captured, and
every random draw comes from the runs' own generators, registered with each graph, which advance
on every replay as they would eagerly. So a captured run computes what the eager run computes
(tests/test_cuda_graphs.py checks several steps of each, on a GPU).

The first time a shape comes, the step runs eagerly (a real step, not a rehearsal) on a side
stream, as CUDA graph capture wants, which also creates whatever the step allocates once.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Sequence

import torch


class GraphedStep:
    def __init__(self, step: Callable[..., None], generators: Sequence[torch.Generator]):
        self.step = step
        self.generators = list(generators)
        self.graphs: dict[tuple, tuple[torch.cuda.CUDAGraph, list[torch.Tensor]]] = {}
        self.seen: set[tuple] = set()
        self.pool = torch.cuda.graph_pool_handle()
        self.captures = self.replays = 0

    @staticmethod
    def supported() -> bool:
        """Per-run generators inside a graph need CUDAGraph.register_generator_state (torch >= 2.5)."""
        return hasattr(torch.cuda.CUDAGraph, "register_generator_state")

    def __call__(self, *inputs: torch.Tensor) -> None:
        key = tuple((tuple(t.shape), t.dtype) for t in inputs)
        entry = self.graphs.get(key)
        if entry is None and key not in self.seen:
            self.seen.add(key)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                self.step(*inputs)
            torch.cuda.current_stream().wait_stream(side)
            return
        if entry is None:
            entry = self.graphs[key] = self._capture(inputs)
        graph, static = entry
        for target, source in zip(static, inputs):
            target.copy_(source, non_blocking=True)
        graph.replay()
        self.replays += 1

    def _capture(self, inputs):
        static = [t.clone() for t in inputs]
        graph = torch.cuda.CUDAGraph()
        for generator in self.generators:
            graph.register_generator_state(generator)
        torch.cuda.synchronize()
        # No garbage collection while capturing: it can free a graph of an earlier pack in this
        # process (kept by a reference cycle until then), and destroying a graph during a capture is
        # forbidden; CUDA then invalidates this capture (seen in a sweep with many packs per worker).
        collecting = gc.isenabled()
        gc.disable()
        try:
            with torch.cuda.graph(graph, pool=self.pool):
                self.step(*static)
        finally:
            if collecting:
                gc.enable()
        self.captures += 1
        return graph, static
