"""Coordinate-wise order statistics in blocks: the sorting the median and the trimmed mean share.

Both robust aggregators need, for every coordinate, the n update values in
ascending order. Sorting the stacked ``[n, ...]`` tensor along dim 0 (what
they did first) is a strided sort and took minutes at n = 100 full-size
updates. Here the coordinates are cut into blocks of about
``BLOCK_VALUES`` values; each block is laid out ``[coordinates, n]`` and every
row is sorted contiguously with numpy's vectorised sort (x86-simd-sort where
the CPU has AVX2/AVX-512). Memory stays at one block, not one
stacked copy of every update.

The rows come out as the same numbers in the same order as ``torch.sort``,
whatever sort algorithm runs: a sort of finite values is unique up to equal
values, and equal floats differ only as −0.0 and +0.0. Callers whose result
can be a zero taken from the input (the median) recompute those coordinates
with ``torch.sort`` so even the sign of zero is what it always was; sums that
start from +0.0 (the trimmed mean) cannot see the difference.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

__all__ = ["BLOCK_VALUES", "sorted_blocks"]

BLOCK_VALUES = 1 << 18
"""Values (coordinates × n) per block: 1 MiB of float32, so a block and its sorted copy stay in cache."""


def sorted_blocks(rows: Sequence[torch.Tensor]) -> Iterator[tuple[slice, torch.Tensor]]:
    """Yield ``(coordinates, block)`` over the flattened ``rows``; ``block[:, i]`` is the i-th smallest value of each.

    ``rows`` are n tensors with the same number of elements (one per update,
    in canonical order); ``block`` is ``[len(coordinates), n]``, contiguous,
    float32 when every row is float32 or narrower and float64 otherwise. Both
    hold the inputs exactly, and the sort runs in that type because float32
    sorts twice as fast. The block size changes only speed and memory, never
    a value.
    """
    flat = [r.reshape(-1) for r in rows]
    n = len(flat)
    size = flat[0].numel()
    wide = any(f.dtype == torch.float64 for f in flat)
    dtype = torch.float64 if wide else torch.float32
    step = max(1, BLOCK_VALUES // max(n, 1))
    for start in range(0, size, step):
        cut = slice(start, min(start + step, size))
        by_coordinate = torch.stack([f[cut].to(dtype) for f in flat]).T.contiguous()
        ordered = np.sort(by_coordinate.numpy(), axis=1)
        yield cut, torch.from_numpy(ordered)
