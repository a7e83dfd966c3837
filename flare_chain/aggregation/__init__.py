"""Aggregation strategies: pure functions from accepted updates to one delta."""

from flare_chain.aggregation.base import (
    Aggregator,
    ClientUpdate,
    apply_delta,
    canonical_order,
    check_compatible,
)
from flare_chain.aggregation.fedavg import FedAvg

__all__ = ["Aggregator", "ClientUpdate", "FedAvg", "apply_delta", "canonical_order", "check_compatible"]
