"""Aggregation strategies: pure functions from accepted updates to one delta."""

from flare_chain.aggregation.base import (
    Aggregator,
    ClientUpdate,
    apply_delta,
    canonical_order,
    check_compatible,
)
from flare_chain.aggregation.exact_lora import (
    ExactLoraAggregator,
    ExactResult,
    factorwise_fedavg_error,
    product_error,
)
from flare_chain.aggregation.fedavg import FedAvg
from flare_chain.aggregation.krum import Krum, MultiKrum
from flare_chain.aggregation.median import CoordinateMedian
from flare_chain.aggregation.trimmed_mean import TrimmedMean

__all__ = [
    "Aggregator",
    "ClientUpdate",
    "CoordinateMedian",
    "ExactLoraAggregator",
    "ExactResult",
    "FedAvg",
    "Krum",
    "MultiKrum",
    "TrimmedMean",
    "apply_delta",
    "canonical_order",
    "check_compatible",
    "factorwise_fedavg_error",
    "product_error",
]
