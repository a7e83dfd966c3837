"""The probe-twin gate: updates that do the same thing to the probe, window by window, are one update sent twice.

Colluding attacks (ALIE, IPM, min-max, min-sum, a shared crafted vector) send
one vector from several nodes. The duplicate gate
(:class:`~flare_chain.aggregation.anomaly.DuplicateGate`) finds them in weight
space, but only within its tolerance: each colluder adding independent noise
of a fifth of the vector's norm gets past it. Noise in random directions of
adapter space barely moves the model on any probe window (what the inert-update
test rests on), so the colluders' first-order changes of the probe windows
(:class:`~flare_chain.aggregation.probe_loss.ProbeEffect`'s ``per_window``)
stay copies of each other: on the 10-node learning benchmark, ALIE and
min-max colluders with 20 % noise each sat 0.01-0.07 apart
(:func:`twin_distance`), against 0.16 and more between any two honest nodes
over 8 rounds of the label-skewed task (two nodes holding the same skills
included) and 0.19 and more over 10 rounds with the data split evenly
(README, "Probe twins"). Removing them before the
spread test also keeps their cluster out of the round's median and spread,
which it otherwise squeezes until honest nodes look like outliers.

An update is rejected when another candidate's per-window changes lie within
``tolerance`` relative distance of its own (``‖dᵢ − dⱼ‖ / max(‖dᵢ‖, ‖dⱼ‖)``),
both of them, as the duplicate gate does: the gate cannot tell which of the
two trained. An attacker who copies an honest node's published update this
way takes that node out of the round with it, as with the duplicate gate.
Colluders who want to pass must make their updates act differently on the
probe, which is sending different updates: no longer one vector at the weight
of several nodes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from flare_chain.aggregation.gates import Comparison, GateDecision
from flare_chain.aggregation.probe_loss import ProbeEffect, ProbeEffectsGate, ProbeLossGate
from flare_chain.errors import ConfigError

__all__ = ["ProbeTwinGate", "twin_decisions", "twin_distance", "twin_distances"]


def _relative_distance(a: np.ndarray, b: np.ndarray) -> float:
    """``‖a − b‖ / max(‖a‖, ‖b‖)`` (inf when both are 0: two updates that do nothing are not twins)."""
    scale = max(float(np.linalg.norm(a)), float(np.linalg.norm(b)))
    return float(np.linalg.norm(a - b)) / scale if scale > 0 else math.inf


def twin_distance(a: np.ndarray, b: np.ndarray) -> float:
    """How far apart two updates' per-window changes are: the larger of the relative distance of the changes
    and of their patterns across windows (each less its mean over the windows).

    Both must be small for twins. The changes alone are not enough: on a probe whose windows all measure the
    same thing, every honest update lowers every window by about its own amount, and two that learned about
    as much look alike (measured 0.03 apart in a test world like that, where the patterns stayed 0.6 and more
    apart). The patterns alone are not enough either: two updates with one pattern can differ in how much
    they move the windows overall.
    """
    return max(_relative_distance(a, b), _relative_distance(a - a.mean(), b - b.mean()))


def twin_distances(effects: Mapping[str, ProbeEffect]) -> dict[str, tuple[float, str]]:
    """``{node: (distance, nearest node)}``: each update's smallest :func:`twin_distance` to another's
    per-window changes; nodes without finite per-window changes are left out (the probe-loss and inert
    tests judge those)."""
    vectors: dict[str, np.ndarray] = {}
    for node in sorted(effects, key=str.lower):
        changes = effects[node].per_window
        if changes is None:
            continue
        v = np.asarray(changes, dtype=np.float64)
        if np.isfinite(v).all():
            vectors[node] = v
    out: dict[str, tuple[float, str]] = {}
    for node, v in vectors.items():
        best: tuple[float, str] | None = None
        for other, w in vectors.items():
            if other == node or w.shape != v.shape:
                continue
            distance = twin_distance(v, w)
            if best is None or distance < best[0]:
                best = (distance, other)
        if best is not None:
            out[node] = best
    return out


def twin_decisions(effects: Mapping[str, ProbeEffect], *, tolerance: float, min_candidates: int = 5
                   ) -> list[GateDecision]:
    """The twin rule, one decision per node (case-insensitive node order): rejected when another update's
    per-window probe changes lie within ``tolerance`` relative distance of its own (``probe_twin_distance``)."""
    nodes = sorted(effects, key=str.lower)
    if len(nodes) < min_candidates:
        return [GateDecision(ProbeTwinGate.name, n, None) for n in nodes]
    nearest = twin_distances(effects)
    out: list[GateDecision] = []
    for n in nodes:
        if n not in nearest:
            out.append(GateDecision(ProbeTwinGate.name, n, None))
            continue
        distance, other = nearest[n]
        test = Comparison("probe_twin_distance", distance, tolerance, rejects=distance < tolerance)
        reason = None
        if test.rejects:
            reason = (f"applied alone, it does what {other}'s update does to the public probe, window by window "
                      f"(their first-order changes of {effects[n].windows} windows lie {distance:.3f} apart, "
                      f"relative; tolerance {tolerance:g}; updates trained on different data measured 0.16 and "
                      f"more apart): one vector sent from several nodes, with noise that moves weights but not "
                      f"the model, to pass the duplicate gate")
        out.append(GateDecision(ProbeTwinGate.name, n, reason, (test,)))
    return out


class ProbeTwinGate(ProbeEffectsGate):
    """The probe-twin test as a gate (:func:`twin_decisions`)."""

    name = "probe_twin"

    def __init__(self, probe: ProbeLossGate, *, tolerance: float = 0.1, min_candidates: int = 5) -> None:
        if not 0 < tolerance < 1 or not math.isfinite(tolerance):
            raise ConfigError(f"probe twin tolerance must be within (0, 1), got {tolerance!r}")
        super().__init__(probe, min_candidates=min_candidates)
        self.tolerance = float(tolerance)

    def decide(self, effects: Mapping[str, ProbeEffect]) -> list[GateDecision]:
        return twin_decisions(effects, tolerance=self.tolerance, min_candidates=self.min_candidates)
