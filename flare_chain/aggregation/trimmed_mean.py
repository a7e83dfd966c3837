"""Coordinate-wise trimmed mean (Yin, Chen, Ramchandran & Bartlett, ICML 2018).

For every coordinate, the ``k = ⌊β·n⌋`` smallest and ``k`` largest values over
the n updates are dropped and the rest averaged. With β at least the fraction
of attackers, no attacker's value can reach the mean unless it lies between
honest ones. β = 0 is the plain mean; β must stay below 0.5 so at least one
value remains.

Sample counts are ignored (as in the paper): weighting the survivors would
reward a node that inflates its count once its values land in the middle.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate
from flare_chain.errors import ConfigError

__all__ = ["TrimmedMean", "trimmed_mean"]


def trimmed_mean(stacked: torch.Tensor, beta: float) -> torch.Tensor:
    """Mean along dim 0 of ``stacked`` after dropping the ⌊β·n⌋ lowest and highest values; float64.

    The survivors are summed in sorted order, one row at a time, so the result
    does not depend on thread count.
    """
    ordered, _ = torch.sort(stacked.to(torch.float64), dim=0)
    n = ordered.shape[0]
    k = trim_count(n, beta)
    acc = torch.zeros(ordered.shape[1:], dtype=torch.float64)
    for i in range(k, n - k):
        acc += ordered[i]
    return acc / (n - 2 * k)


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
            key: trimmed_mean(torch.stack([u.delta[key].to(torch.float64) for u in updates]), self.beta)
            for key in sorted(updates[0].delta)
        }
