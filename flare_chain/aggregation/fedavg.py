"""Sample-count-weighted federated averaging (McMahan et al., 2017, "FedAvg").

The weights are n_i / sum(n): a node that trained on more windows moves the
global adapter more. Accumulation runs in float64 over a fixed node order so the
result is bit-for-bit reproducible on one machine, which committee members rely
on when they recompute the leader's aggregate.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from flare_chain.aggregation.base import Aggregator, ClientUpdate

__all__ = ["FedAvg"]


class FedAvg(Aggregator):
    """Weighted mean of the deltas, weights proportional to sample counts."""

    name = "fedavg"

    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        total = sum(u.sample_count for u in updates)
        out: dict[str, torch.Tensor] = {}
        for key in sorted(updates[0].delta):
            acc = torch.zeros(updates[0].delta[key].shape, dtype=torch.float64)
            for update in updates:
                acc += update.delta[key].to(torch.float64) * (update.sample_count / total)
            out[key] = acc
        return out
