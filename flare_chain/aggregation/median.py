"""Coordinate-wise median (Yin, Chen, Ramchandran & Bartlett, ICML 2018; Flower's ``FedMedian``).

Every coordinate of the aggregate is the median of that coordinate over the
updates: a minority of arbitrarily bad updates (fewer than half) cannot drag
it outside the range of the honest values. With an even number of updates it
is the mean of the two middle values (as ``numpy.median``), not torch's lower
median.

Sample counts are ignored: a weighted median would let one node that claims
many samples decide every coordinate alone, which is what this aggregator
exists to prevent.

The values are sorted block by block (:mod:`flare_chain.aggregation.order_stats`),
not as one strided ``torch.sort`` of the stacked updates: the result is
bit-identical to that sort's, about twenty times faster, in one block's memory.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate
from flare_chain.aggregation.order_stats import sorted_blocks

__all__ = ["CoordinateMedian", "coordinate_median", "median_of"]


def coordinate_median(stacked: torch.Tensor) -> torch.Tensor:
    """Median along dim 0 of ``stacked`` (``[n, ...]``), in float64; the mean of the middle two when n is even."""
    return median_of(list(stacked)).reshape(stacked.shape[1:])


def median_of(rows: Sequence[torch.Tensor]) -> torch.Tensor:
    """Coordinate-wise median of n same-sized tensors (canonical order), flattened, float64.

    Bit-identical to the median of ``torch.sort`` along the stacked rows; the
    order of the rows can matter only to the sign of a zero median, as there.
    """
    out = torch.empty(rows[0].numel(), dtype=torch.float64)
    for cut, block in sorted_blocks(rows):
        out[cut] = _middle(block.T)
    zeros = torch.nonzero(out == 0).flatten()
    if zeros.numel():
        # −0.0 and +0.0 tie in any sort; take these few coordinates through torch.sort, as always.
        picked = torch.stack([r.reshape(-1)[zeros].to(torch.float64) for r in rows])
        out[zeros] = _middle(torch.sort(picked, dim=0).values)
    return out


def _middle(ordered: torch.Tensor) -> torch.Tensor:
    """The median from values sorted along dim 0: the middle one, or the mean of the middle two."""
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2].to(torch.float64, copy=True)
    return (ordered[n // 2 - 1].to(torch.float64) + ordered[n // 2].to(torch.float64)) / 2


class CoordinateMedian(Aggregator):
    """Coordinate-wise median of the deltas, unweighted."""

    name = "median"

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        return {
            key: median_of([u.delta[key] for u in updates]).reshape(updates[0].delta[key].shape)
            for key in sorted(updates[0].delta)
        }
