"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran & Bartlett, ICML 2018).

For every coordinate, the ``k = ⌊β·n⌋`` smallest and ``k`` largest values over
the n updates are dropped and the rest averaged. With β at least the fraction
of attackers, no attacker's value can reach the mean unless it lies between
honest ones. β = 0 is the plain mean; β must stay below 0.5 so at least one
value remains.

Sample counts are ignored (as in the paper): weighting the survivors would
reward a node that inflates its count once its values land in the middle.

The values are sorted block by block (:mod:`flare_chain.aggregation.order_stats`)
and the survivors summed in ascending order, one position at a time, exactly
as after a full ``torch.sort`` of the stacked updates: the same bits, about
twenty times faster, in one block's memory.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate
from flare_chain.aggregation.order_stats import sorted_blocks
from flare_chain.errors import ConfigError

__all__ = ["TrimmedMean", "trim_count", "trimmed_mean", "trimmed_mean_of"]


def trimmed_mean(stacked: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean along dim 0 of ``stacked`` after dropping the ⌊β·n⌋ lowest and highest values; float64."""
    return trimmed_mean_of(list(stacked), beta).reshape(stacked.shape[1:])


def trimmed_mean_of(rows: Sequence[torch.Tensor], beta: float) -> torch.Tensor:
    """Coordinate-wise β-trimmed mean of n same-sized tensors, flattened, float64.

    The survivors are summed in ascending order, one position at a time,
    starting from +0.0, so the result depends only on the values (not on the
    rows' order, the sort used or the thread count).
    """
    n = len(rows)
    k = trim_count(n, beta)
    out = torch.empty(rows[0].numel(), dtype=torch.float64)
    for cut, block in sorted_blocks(rows):
        ordered = block.T
        acc = torch.zeros(ordered.shape[1], dtype=torch.float64)
        for i in range(k, n - k):
            acc += ordered[i]  # float32 values are widened exactly; the adds are float64
        out[cut] = acc / (n - 2 * k)
    return out


def trim_count(n: int, beta: float) -> int:
    """``⌊β·n⌋``, robust to float error in the product (0.29 × 100 trims 29, not 28)."""
    return math.floor(beta * n + 1e-9)


class TrimmedMean(Aggregator):
    """Coordinate-wise β-trimmed mean of the deltas, unweighted."""

    name = "trimmed_mean"

    def __init__(self, beta: float = 0.1) -> None:
        if isinstance(beta, bool) or not isinstance(beta, (int, float)) or not 0.0 <= beta < 0.5:
            raise ConfigError(
                f"trimmed mean beta must be a fraction in [0, 0.5), got {beta!r}; "
                "set it to (at least) the share of updates you expect to be malicious"
            )
        self.beta = float(beta)

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        return {
            key: trimmed_mean_of([u.delta[key] for u in updates], self.beta).reshape(updates[0].delta[key].shape)
            for key in sorted(updates[0].delta)
        }
