"""The reference optimiser for every run of a pack at once: optax's
`chain(clip_by_global_norm(max_grad_norm), adam(lr))` (as neural_networks_chomsky_hierarchy's
training loop), one learning rate per run.

All parameters of a model live in one [K, P] buffer, row k holding every weight of run k (its
stacked transformer weights and its own PE modules), and their gradients in another: each
parameter (and its `.grad`) is a view into them. So a run's global gradient norm is one row norm,
and clipping and Adam are a few operations on [K, P] tensors, whatever the number of parameters:
cheap to launch, and free of host synchronisation, so the whole update can be captured in a CUDA
graph. The step count lives on the device for the same reason.

Adam as optax: m = b1 m + (1 - b1) g, v = b2 v + (1 - b2) g^2, update = lr * m_hat / (sqrt(v_hat) + eps)
with bias-corrected m_hat, v_hat; clipping as optax: g * max_norm / ||g|| when ||g|| >= max_norm.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


class PackedAdam:
    def __init__(self, model: torch.nn.Module, lrs: Sequence[float], max_grad_norm: float = 1.0,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8):
        pack = model.pack
        if len(lrs) != pack:
            raise ValueError(f"{len(lrs)} learning rates for a pack of {pack} runs")
        self.betas, self.eps, self.max_grad_norm = betas, eps, max_grad_norm
        layout = model.run_layout()
        first = layout[0].tensor
        # Columns of each parameter in a run's row: a stacked weight's row k, or run k's own PE weight.
        offsets: dict[str, tuple[int, int]] = {}
        columns = 0
        for entry in layout:
            size = entry.tensor[0].numel() if entry.run is None else entry.tensor.numel()
            if entry.name not in offsets:
                offsets[entry.name] = (columns, size)
                columns += size
        self.flat = torch.zeros(pack, columns, device=first.device, dtype=first.dtype)
        self.grad = torch.zeros_like(self.flat)
        for entry in layout:
            start, size = offsets[entry.name]
            rows = slice(None) if entry.run is None else entry.run  # all runs, or one run's PE
            p = entry.tensor
            view = self.flat[rows, start:start + size].view(p.shape)
            view.copy_(p.detach())
            p.data = view
            # backward accumulates into an existing .grad in place: the gradients land in self.grad
            p.grad = self.grad[rows, start:start + size].view(p.shape)
        self.lr = torch.tensor(list(lrs), device=first.device, dtype=first.dtype)[:, None]
        self.m = torch.zeros_like(self.flat)
        self.v = torch.zeros_like(self.flat)
        self.count = torch.zeros((), device=first.device, dtype=first.dtype)

    def zero_grad(self) -> None:
        self.grad.zero_()

    def grad_norms(self) -> torch.Tensor:
        """Each run's global gradient norm, [K]."""
        return torch.linalg.vector_norm(self.grad, dim=1)

    @torch.no_grad()
    def step(self) -> None:
        b1, b2 = self.betas
        norm = self.grad_norms()[:, None]
        grad = torch.where(norm < self.max_grad_norm, self.grad, self.grad * (self.max_grad_norm / norm))
        self.m.lerp_(grad, 1 - b1)
        self.v.mul_(b2).addcmul_(grad, grad, value=1 - b2)
        self.count += 1
        m_hat = self.m / (1 - b1 ** self.count)
        v_hat = self.v / (1 - b2 ** self.count)
        self.flat.sub_(self.lr * m_hat / (v_hat.sqrt() + self.eps))

    # -- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"parameters": self.flat, "m": self.m, "v": self.v, "count": self.count, "lr": self.lr}

    @torch.no_grad()
    def load_state_dict(self, state: dict) -> None:
        for name in ("parameters", "m", "v", "count", "lr"):
            target = self.flat if name == "parameters" else getattr(self, name)
            value = state[name]
            if value.shape != target.shape:
                raise ValueError(f"optimizer state '{name}' has shape {tuple(value.shape)}, "
                                 f"this pack needs {tuple(target.shape)}")
            target.copy_(value)
