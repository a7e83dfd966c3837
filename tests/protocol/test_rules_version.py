"""The verdicts of this build's rules version on fixed rounds: a change detector for ``RULES_VERSION``.

Members on builds with different verdict rules read the same federation spec
and reject different updates. The spec names the rules version it was written
for (``rules_version``), and that only helps if the version moves whenever the
verdicts do. This test runs the whole default gate chain (policy, duplicates,
norm, direction, probe loss with its twin, spread and inert rules, the MI filter) on
fixed rounds: honest updates around a shared direction and the attacks the
gates are built for, on a synthetic probe whose window losses are a fixed
quadratic in the adapter and a fixed linear "next-token" predictor. When a
change moves any verdict here, it changed the rules: raise ``RULES_VERSION``
in ``flare_chain/protocol/spec.py`` and record the new verdicts under it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from flare_chain.aggregation import ClientUpdate, GateSettings, build_gates, run_gates
from flare_chain.aggregation.gates import GateDecision
from flare_chain.attacks import BEHAVIOURS, RoundView
from flare_chain.protocol.spec import RULES_VERSION

SHAPES = {"m.lora_A.weight": (4, 512), "m.lora_B.weight": (512, 4)}
SIZE = sum(a * b for a, b in SHAPES.values())
WINDOWS = 48
TOKENS = 96
CLASSES = 6
NODES = 10
SKILLS = 5


def _node(i: int) -> str:
    return f"node-{i:02d}"


def _flat(adapter: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([adapter[k].reshape(-1).to(torch.float64) for k in sorted(adapter)])


def _global() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    return {k: torch.randn(s, generator=gen) * 0.1 for k, s in SHAPES.items()}


def _directions(gen: torch.Generator, count: int) -> torch.Tensor:
    rows = torch.randn(count, SIZE, generator=gen, dtype=torch.float64)
    return rows / rows.norm(dim=1, keepdim=True)


class _Task:
    """A label-skewed federation in miniature: a direction every node learns, one of ``SKILLS`` skill
    directions per node (two nodes per skill), and what its own records taught it. Probe window w belongs to
    skill w mod ``SKILLS``: its loss ``3 + g_w·x + 2·(h_w·x)²`` falls along the shared direction, its own
    skill's and a direction of its own, and the predictions ``argmax_k A_tk·x`` stand in for the model's next
    tokens.

    As in a real adapter, the update space is much larger than what the probe's windows see (4,096 weights,
    48 windows): noise in random directions barely moves the probe, while what a node learned from its own
    records (here a random mix of the windows' own directions) does."""

    def __init__(self, glob: Mapping[str, torch.Tensor]) -> None:
        gen = torch.Generator().manual_seed(11)
        self.common, self.skills = _directions(gen, 1)[0], _directions(gen, SKILLS)
        own = self.skills[torch.arange(WINDOWS) % SKILLS]
        self.window_own = _directions(gen, WINDOWS)
        self.grad = -(0.6 * self.common + 2.0 * own) + 0.6 * self.window_own
        self.curve = _directions(gen, WINDOWS)
        self.logits = torch.randn(TOKENS, CLASSES, SIZE, generator=gen, dtype=torch.float64)
        self.origin = _flat(glob)

    def honest(self, seed: int) -> list[dict[str, torch.Tensor]]:
        gen = torch.Generator().manual_seed(seed)
        flats = []
        for i in range(NODES):
            learned = torch.randn(WINDOWS, generator=gen, dtype=torch.float64) @ self.window_own
            flats.append(0.4 * self.common + 1.0 * self.skills[i % SKILLS] + 1.5 * learned / learned.norm())
        return [_unflat(f * 0.05) for f in flats]

    def window_losses(self, adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
        x = _flat(adapter) - self.origin
        losses = 3.0 + self.grad @ x + 2.0 * (self.curve @ x) ** 2
        return losses.numpy()

    def predict(self, adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
        return (self.logits @ _flat(adapter)).argmax(dim=1).numpy()


def _unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for key in sorted(SHAPES):
        rows, cols = SHAPES[key]
        out[key] = flat[at: at + rows * cols].reshape(rows, cols).to(torch.float32)
        at += rows * cols
    return out


ATTACKERS = 3
"""Nodes 0-2 run the scenario's behaviour (30 %), each colluder with independent noise of 0.2 of its norm."""

SCENARIOS = ["honest", *sorted(name for name, b in BEHAVIOURS.items() if b.trains_on == "own")]
"""No attacker, then every behaviour that crafts from the node's own training (the data attacks need a
model to train)."""

def _attackers(gate: str) -> dict[str, str]:
    return {_node(i): gate for i in range(ATTACKERS)}


VERDICTS: dict[int, dict[str, dict[str, str]]] = {
    3: {
        "honest": {},
        "adapter_negation": _attackers("norm"),
        "adapter_negation_nm": _attackers("probe_spread"),
        "alie": _attackers("norm"),
        "alie_nm": _attackers("probe_twin"),
        "colluding": _attackers("duplicate"),
        "dilution": _attackers("probe_spread"),
        "inf": _attackers("policy"),
        "ipm_0.1": _attackers("norm"),
        "ipm_0.5": _attackers("norm"),
        "minmax_sign": _attackers("probe_twin"),
        "minmax_std": {},
        "minsum_sign": _attackers("norm"),
        "minsum_std": {},
        "nan": _attackers("policy"),
        "near_duplicate": _attackers("direction"),
        "noise": _attackers("norm"),
        "scale10": _attackers("norm"),
        "scale100": _attackers("norm"),
        "sign_flip": _attackers("probe_loss"),
        "sign_flip_nm": _attackers("probe_loss"),
        "wrong_shape": _attackers("policy"),
    },
}
"""``{rules version: {scenario: {node: the gate that rejected it}}}``; a version's entry never changes. The
passes are recorded as faithfully as the catches: this miniature is not where the gates' strength is
measured (that is ``scripts/bench_learning.py``), only where their rules are pinned. Versions before 3 were
recorded on an earlier miniature (a 192-weight adapter, where random noise moved the probe as much as
learning did); their entries are in the history of this file."""


def _run(scenario: str, seed: int) -> tuple[dict[str, str], list[GateDecision]]:
    glob = _global()
    probe = _Task(glob)
    honest = probe.honest(seed)
    deltas = dict(enumerate(honest))
    if scenario != "honest":
        craft = BEHAVIOURS[scenario].craft
        for i in range(ATTACKERS):
            deltas[i] = craft(RoundView(own=honest[i], global_tensors=glob, nodes=NODES, attackers=ATTACKERS,
                                        seed=i, honest=honest[ATTACKERS:], relative_noise=0.2))
    updates = [ClientUpdate(node=_node(i), delta=deltas[i], sample_count=100) for i in range(NODES)]
    gates = build_gates(GateSettings(), predictor=probe.predict, window_losses=probe.window_losses)
    outcome = run_gates(updates, glob, gates)
    return {r.node: r.gate for r in outcome.rejections}, outcome.decisions


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_this_builds_rules_reach_the_verdicts_recorded_for_its_rules_version(scenario: str) -> None:
    # Act
    rejected, _ = _run(scenario, seed=0)
    # Assert: a verdict that moved means the rules moved: raise RULES_VERSION and record the new verdicts
    assert RULES_VERSION in VERDICTS, f"no verdicts recorded for rules version {RULES_VERSION}"
    assert rejected == VERDICTS[RULES_VERSION][scenario], (
        f"{scenario}: the gates' verdicts differ from those of rules version {RULES_VERSION}; a change that moves "
        "a verdict changes the protocol: raise RULES_VERSION in flare_chain/protocol/spec.py and record these "
        "verdicts under the new version")


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_no_recorded_verdict_rests_on_a_statistic_near_its_threshold(scenario: str) -> None:
    # Another CPU computes the statistics in other last bits; a verdict recorded here must not hinge on them.
    _, decisions = _run(scenario, seed=0)
    for decision in decisions:
        for c in decision.comparisons:
            if math.isfinite(c.value) and math.isfinite(c.threshold):
                assert abs(c.value - c.threshold) > 1e-6 * max(1.0, abs(c.threshold)), (decision.node, c)
