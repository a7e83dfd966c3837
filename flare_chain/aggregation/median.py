"""Coordinate-wise median (Yin, Chen, Ramchandran & Bartlett, ICML 2018; Flower's ``FedMedian``).

Every coordinate of the aggregate is the median of that coordinate over the
updates: a minority of arbitrarily bad updates (fewer than half) cannot drag
it outside the range of the honest values. With an even number of updates it
is the mean of the two middle values (as ``numpy.median``), not torch's lower
median.

Sample counts are ignored: a weighted median would let one node that claims
many samples decide every coordinate alone, which is what this aggregator
exists to prevent.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate

__all__ = ["CoordinateMedian", "coordinate_median"]


def coordinate_median(stacked: torch.Tensor) -> torch.Tensor:
    """Median along dim 0 of ``stacked`` (``[n, ...]``), in float64; the mean of the middle two when n is even."""
    ordered, _ = torch.sort(stacked.to(torch.float64), dim=0)
    n = ordered.shape[0]
    if n % 2:
        return ordered[n // 2].clone()
    return (ordered[n // 2 - 1] + ordered[n // 2]) / 2


class CoordinateMedian(Aggregator):
    """Coordinate-wise median of the deltas, unweighted."""

    name = "median"

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        return {
            key: coordinate_median(torch.stack([u.delta[key].to(torch.float64) for u in updates]))
            for key in sorted(updates[0].delta)
        }
