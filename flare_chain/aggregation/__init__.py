"""Aggregation: gates that screen a round's updates, and strategies that combine the survivors.

Strategies are pure functions from accepted updates to one delta; gates
share :class:`Gate` and run in order through :func:`run_gates`.
"""

from flare_chain.aggregation.anomaly import DirectionAnomalyGate, DuplicateGate, NormAnomalyGate
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
from flare_chain.aggregation.gates import Gate, GateContext, TensorPolicyGate, policy_gate
from flare_chain.aggregation.krum import Krum, MultiKrum
from flare_chain.aggregation.median import CoordinateMedian
from flare_chain.aggregation.mi_filter import MutualInformationFilter, nmi_outliers, seed_probe_windows
from flare_chain.aggregation.pipeline import GateOutcome, GateSettings, GateVerdict, build_gates, run_gates
from flare_chain.aggregation.privacy import DPFedAvg, PrivacyAccountant, clip_update, privatize_update
from flare_chain.aggregation.probe_loss import ProbeLossGate, harmful_updates, probe_effect
from flare_chain.aggregation.trimmed_mean import TrimmedMean

__all__ = [
    "Aggregator",
    "ClientUpdate",
    "CoordinateMedian",
    "DPFedAvg",
    "DirectionAnomalyGate",
    "DuplicateGate",
    "ExactLoraAggregator",
    "ExactResult",
    "FedAvg",
    "Gate",
    "GateContext",
    "GateOutcome",
    "GateSettings",
    "GateVerdict",
    "Krum",
    "MultiKrum",
    "MutualInformationFilter",
    "NormAnomalyGate",
    "PrivacyAccountant",
    "ProbeLossGate",
    "TensorPolicyGate",
    "TrimmedMean",
    "apply_delta",
    "build_gates",
    "canonical_order",
    "check_compatible",
    "clip_update",
    "factorwise_fedavg_error",
    "harmful_updates",
    "nmi_outliers",
    "policy_gate",
    "privatize_update",
    "probe_effect",
    "product_error",
    "run_gates",
    "seed_probe_windows",
]
