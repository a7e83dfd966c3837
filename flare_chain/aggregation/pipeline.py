"""Run the gates in order and split a round's updates into accepted and rejected.

Each gate sees only the updates every earlier gate let through, so the cheap
per-update checks (policy) come first and protect the statistics of the later
ones (a NaN update never reaches a median). The result is a pure function of
the updates, the global adapter and the gate settings: updates are put in
canonical node order first, so arrival order never changes the accepted set,
and a committee member or an auditor re-running :func:`run_gates` gets the
same accepted set, hence (with a deterministic aggregator) the same bytes —
on the same kind of machine. Across CPUs and devices statistics differ in the
last bits, so a committee member re-runs the gates with a ``settle`` rule
that follows the leader's accepted set where its own statistic lies within
the tolerance band (:mod:`flare_chain.committee.verdict`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import torch
from pydantic import BaseModel, ConfigDict, Field

from flare_chain.aggregation.anomaly import DirectionAnomalyGate, DuplicateGate, NormAnomalyGate
from flare_chain.aggregation.base import ClientUpdate, canonical_order
from flare_chain.aggregation.gates import Gate, GateContext, GateDecision, TensorPolicyGate, reasons_of
from flare_chain.aggregation.mi_filter import MI_MIN_SCALE, MutualInformationFilter, Predictor
from flare_chain.aggregation.probe_loss import ProbeInertGate, ProbeLossGate, ProbeSpreadGate, WindowLosses
from flare_chain.aggregation.probe_twins import ProbeTwinGate
from flare_chain.aggregation.tolerance import ToleranceBands

__all__ = ["GateOutcome", "GateSettings", "GateVerdict", "Settle", "build_gates", "run_gates"]

Settle = Callable[[Sequence[GateDecision]], Mapping[str, str]]
"""Given one gate's decisions, the nodes that leave the round there, with the reason recorded for each."""


@dataclass(frozen=True)
class GateVerdict:
    """One rejection: which gate, which node, and why (recorded, human-readable)."""

    gate: str
    node: str
    reason: str


@dataclass(frozen=True)
class GateOutcome:
    """The updates that passed every gate (canonical order) and the recorded rejections."""

    accepted: list[ClientUpdate]
    rejections: list[GateVerdict] = field(default_factory=list)
    decisions: list[GateDecision] = field(default_factory=list)
    """Every gate's decision on every candidate it saw, with the statistics they rest on."""

    @property
    def accepted_nodes(self) -> list[str]:
        return [u.node for u in self.accepted]

    @property
    def rejected_nodes(self) -> list[str]:
        return [r.node for r in self.rejections]


class GateSettings(BaseModel):
    """Which gates run and how strict they are; the same settings must be used by the whole committee."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    max_update_bytes: int = Field(default=256 * 2**20, ge=1, description="bound on a decoded update's size")
    max_abs_value: float | None = Field(default=None, gt=0, description="bound on any entry; None: none")
    duplicates: bool = Field(default=True, description="reject identical or near-identical updates from different nodes")
    duplicate_tolerance: float = Field(default=0.1, ge=0, lt=1,
                                       description="relative distance below which two updates count as one; 0: exact")
    norm: bool = True
    norm_threshold: float = Field(default=3.5, gt=0, description="robust z-score bound on log update norms")
    direction: bool = True
    direction_threshold: float = Field(default=3.5, gt=0, description="robust z-score bound on cosine to the median")
    direction_max_cosine: float | None = Field(
        default=0.0, ge=-1, le=1, description=(
            "the direction gate rejects only updates whose cosine with the median is also below this (they point "
            "against the round; honest label-skewed nodes point elsewhere but not against); None: the z alone"))
    probe_loss: bool = Field(default=True, description="run the probe-loss gate when a probe corpus is available")
    probe_loss_z: float = Field(default=3.0, gt=0, description="standard errors above 0 that make an update harmful")
    probe_loss_outlier_z: float | None = Field(
        default=3.0, gt=0, description=(
            "a harmful update must also stand out: lie this many spreads above the round's median probe change "
            "(honest label-skewed nodes raise the probe loss within the honest spread), or undo "
            "probe_loss_rise_share of a helping update's gain; both None: harm alone"))
    probe_loss_rise_share: float | None = Field(
        default=0.75, gt=0, le=10, description=(
            "or stand out by undoing at least this share of the round's typical helping update's probe gain (a "
            "sign flip undoes a whole one, and at 40 % attackers flips inflate the spread; honest label-skewed "
            "nodes measured up to 0.39 in three rounds on a records probe, 0.67 on a text probe, and up to 4.2 "
            "after round 6 at the full local budget, which the z test does not always stop); None: the spread alone"))
    probe_loss_spread_z: float | None = Field(
        default=3.5, gt=0, description="spreads above the round's median probe change that make an outlier; None: off")
    probe_loss_min_effect: float | None = Field(
        default=0.3, gt=0, lt=1, description=(
            "reject an update whose first-order changes of the probe windows have a root mean square below this "
            "share of the round's typical update's (adapter negation, diluting free riders: weight without "
            "learning, measured 0.01-0.06 and 0.18-0.51; honest updates move their own skills' windows, measured "
            "0.54 and up, a node that learned a third as much 0.33-0.37); None: off"))
    probe_loss_twin_tolerance: float | None = Field(
        default=0.1, gt=0, lt=1, description=(
            "reject updates whose per-window first-order probe changes lie within this relative distance of "
            "another's, or their patterns across windows do (colluders sending one vector with independent noise "
            "of 20 % of its norm: measured 0.01-0.07; honest nodes 0.16 and up, two holding the same skills "
            "included); None: off"))
    probe_loss_windows: int = Field(default=128, ge=2, description="corpus windows the probe-loss gate runs on")
    probe_loss_seq_len: int = Field(default=64, ge=2, description="tokens per probe-loss window")
    mutual_information: bool = Field(default=True, description="run the MI filter when a predictor is available")
    mi_threshold: float = Field(default=3.5, gt=0, description="robust z-score bound on median pairwise NMI")
    mi_min_scale: float = Field(default=MI_MIN_SCALE, gt=0, le=1, description="floor of the NMI spread")
    min_candidates: int = Field(default=5, ge=3, description="below this many updates the statistical gates pass all")
    probe_windows: int = Field(default=8, ge=1, description="probe windows of the MI filter")
    probe_seq_len: int = Field(default=64, ge=2, description="tokens per probe window")
    bands: ToleranceBands = Field(default_factory=ToleranceBands,
                                  description="how near its threshold a statistic may go either way (verdicts)")


def build_gates(
    settings: GateSettings | None = None, *, predictor: Predictor | None = None,
    window_losses: WindowLosses | None = None,
) -> list[Gate]:
    """The gate chain for ``settings``: policy, duplicates, norm, direction, probe loss (needs
    ``window_losses``; after its twin gate, then with its spread and inert-update gates), then MI (needs
    ``predictor``)."""
    s = settings or GateSettings()
    gates: list[Gate] = [TensorPolicyGate(max_update_bytes=s.max_update_bytes, max_abs_value=s.max_abs_value)]
    if s.duplicates:
        gates.append(DuplicateGate(s.duplicate_tolerance))
    if s.norm:
        gates.append(NormAnomalyGate(s.norm_threshold, min_candidates=s.min_candidates))
    if s.direction:
        gates.append(DirectionAnomalyGate(s.direction_threshold, min_candidates=s.min_candidates,
                                          max_cosine=s.direction_max_cosine))
    if s.probe_loss and window_losses is not None:
        probe = ProbeLossGate(window_losses, z=s.probe_loss_z, min_candidates=s.min_candidates,
                              outlier_z=s.probe_loss_outlier_z, rise_share=s.probe_loss_rise_share)
        if s.probe_loss_twin_tolerance is not None:
            # First: a colluding cluster left in would weigh on every probe statistic after it.
            gates.append(ProbeTwinGate(probe, tolerance=s.probe_loss_twin_tolerance, min_candidates=s.min_candidates))
        gates.append(probe)
        if s.probe_loss_spread_z is not None:
            gates.append(ProbeSpreadGate(probe, spread_z=s.probe_loss_spread_z, min_candidates=s.min_candidates))
        if s.probe_loss_min_effect is not None:
            gates.append(ProbeInertGate(probe, min_ratio=s.probe_loss_min_effect, min_candidates=s.min_candidates))
    if s.mutual_information and predictor is not None:
        gates.append(MutualInformationFilter(predictor, threshold=s.mi_threshold, min_scale=s.mi_min_scale,
                                             min_candidates=max(4, s.min_candidates - 1)))
    return gates


def run_gates(
    updates: Sequence[ClientUpdate], global_tensors: Mapping[str, torch.Tensor], gates: Sequence[Gate],
    *, settle: Settle | None = None,
) -> GateOutcome:
    """Pass ``updates`` through ``gates`` in order; deterministic, never raises for a bad update.

    After each gate, ``settle`` (default: the gate's own rejections) names the
    nodes that leave the round there. Raises UpdateError only when two updates
    name the same node (a caller bug: the chain allows one submission per node
    and round).
    """
    remaining = canonical_order(updates)
    context = GateContext(global_tensors={k: global_tensors[k] for k in sorted(global_tensors)})
    rejections: list[GateVerdict] = []
    decisions: list[GateDecision] = []
    for gate in gates:
        if not remaining:
            break
        assessed = gate.assess(remaining, context)
        decisions += assessed
        leaving = settle(assessed) if settle is not None else reasons_of(assessed)
        for update in remaining:
            if update.node in leaving:
                rejections.append(GateVerdict(gate=gate.name, node=update.node, reason=leaving[update.node]))
        remaining = [u for u in remaining if u.node not in leaving]
    return GateOutcome(accepted=remaining, rejections=rejections, decisions=decisions)
