"""Helpers for the binary-number tasks: uniform non-zero operands and exact big-int conversion.

Rows of 0/1 ids are read and written as little-endian integers through numpy's bit packing and
`int.from_bytes` / `int.to_bytes`, so numbers of thousands of bits stay exact and cheap.
"""

from __future__ import annotations

import numpy as np
import torch


def le_rows_to_ints(bits: torch.Tensor) -> list[int]:
    """Each row of a [B, W] 0/1 tensor as a little-endian (least significant bit first) integer."""
    packed = np.packbits(bits.numpy().astype(np.uint8), axis=1, bitorder="little")
    return [int.from_bytes(row.tobytes(), "little") for row in packed]


def ints_to_le_rows(values: list[int], width: int) -> torch.Tensor:
    """Non-negative integers below 2**width as [B, width] little-endian 0/1 rows (int64)."""
    if any(v.bit_length() > width for v in values):
        raise ValueError(f"a value does not fit in {width} bits")
    n_bytes = (width + 7) // 8
    raw = b"".join(v.to_bytes(n_bytes, "little") for v in values)
    packed = np.frombuffer(raw, dtype=np.uint8).reshape(len(values), n_bytes)
    bits = np.unpackbits(packed, axis=1, bitorder="little")[:, :width]
    return torch.from_numpy(bits.astype(np.int64))


def sample_nonzero_fields(fields: list[torch.Tensor], generator: torch.Generator) -> torch.Tensor:
    """Random bits in which each field (a [B, W] bool mask) holds a uniform non-zero number.

    Bits are i.i.d. uniform; a field that came out all-zero is redrawn (only that field, only in
    that row) until it is not. Rejecting 0 from a uniform draw over {0..2^w-1} leaves a uniform
    draw over {1..2^w-1}. Positions in no field stay random. Each field must be non-empty.
    """
    bits = torch.randint(0, 2, fields[0].shape, generator=generator)
    for field in fields:
        rows = ((bits * field).sum(dim=1) == 0).nonzero().squeeze(1)
        while rows.numel() > 0:   # about log2(B) rounds for 1-bit fields, on ever fewer rows
            row_field = field[rows]
            fresh = torch.randint(0, 2, row_field.shape, generator=generator)
            redrawn = torch.where(row_field, fresh, bits[rows])
            bits[rows] = redrawn
            rows = rows[(redrawn * row_field).sum(dim=1) == 0]
    return bits


def result_then_terminator(values: list[int], width: int, terminator: int) -> torch.Tensor:
    """[B, width]: each value LE without leading zeros (0 is written `0`), the terminator, then 0s."""
    bits = ints_to_le_rows(values, width)
    n_digits = torch.tensor([max(v.bit_length(), 1) for v in values]).unsqueeze(1)
    return torch.where(torch.arange(width) == n_digits, terminator, bits)
