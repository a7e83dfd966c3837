"""Reproducible torch execution: a fixed thread count and a private, seeded RNG.

CPU float reductions can change with the number of threads, and training
draws random numbers (LoRA init, dropout, shuffling). Running inside
:func:`seeded` fixes both and restores the caller's thread count and global
RNG state afterwards, so library calls never perturb the rest of a process.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

__all__ = ["seeded"]


@contextmanager
def seeded(seed: int, num_threads: int) -> Iterator[None]:
    """Run the block with ``torch.manual_seed(seed)`` and ``num_threads`` CPU threads, then restore."""
    previous = torch.get_num_threads()
    torch.set_num_threads(num_threads)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        torch.set_num_threads(previous)
