"""The probe-twin gate: colluders who noise one vector past the duplicate gate still act as one on the probe.

The world is an adapter much larger than what the probe sees (16,384 weights,
64 windows), as a real one is: window w's loss is ``3 + g_w·x + (h_w·x)²``.
Honest nodes learn the shared direction plus what their own records teach
(a random mix of the windows' own directions, which the probe sees). Noise
in random directions of weight space barely moves any window, so colluders
sending one crafted vector with 20 % noise each stay probe twins.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flare_chain.aggregation import ClientUpdate, GateSettings, build_gates, run_gates
from flare_chain.aggregation.gates import GateContext
from flare_chain.aggregation.probe_loss import ProbeEffect, ProbeLossGate
from flare_chain.aggregation.probe_twins import ProbeTwinGate, twin_decisions, twin_distance, twin_distances
from flare_chain.attacks import RoundView, behaviour
from flare_chain.errors import ConfigError

from ._rounds import node

KEY = "m.lora_A.weight"
SIZE, WINDOWS, NODES, ATTACKERS = 16384, 64, 10, 3


class WideWorld:
    def __init__(self, seed: int = 0) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.shared = self._unit(1)[0]
        self.own = self._unit(WINDOWS)
        self.grad = -(self.shared + self.own)
        self.curve = self._unit(WINDOWS)
        self.g = {KEY: 0.1 * torch.randn(SIZE, generator=self.gen)}

    def _unit(self, rows: int) -> torch.Tensor:
        m = torch.randn(rows, SIZE, generator=self.gen, dtype=torch.float64)
        return m / m.norm(dim=1, keepdim=True)

    def window_losses(self, adapter) -> np.ndarray:
        x = adapter[KEY].double() - self.g[KEY].double()
        return (3.0 + self.grad @ x + (self.curve @ x) ** 2).numpy()

    def honest(self) -> dict[str, torch.Tensor]:
        learned = torch.randn(WINDOWS, generator=self.gen, dtype=torch.float64) @ self.own
        return {KEY: (0.05 * (self.shared + learned / learned.norm())).float()}


def _round(world: WideWorld, attack: str, noise: float = 0.2) -> list[ClientUpdate]:
    honest = [world.honest() for _ in range(NODES - ATTACKERS)]
    b = behaviour(attack)
    crafted = [b.craft(RoundView(own=world.honest(), global_tensors=world.g, nodes=NODES, attackers=ATTACKERS,
                                 seed=i, honest=honest, relative_noise=noise)) for i in range(ATTACKERS)]
    return [ClientUpdate(node=node(i), delta=d, sample_count=10) for i, d in enumerate(crafted + honest)]


def _effects(rows: dict[str, list[float]]) -> dict[str, ProbeEffect]:
    return {n: ProbeEffect(change=float(np.mean(v)), stderr=0.01, windows=len(v), per_window=tuple(v))
            for n, v in rows.items()}


def test_identical_changes_are_twins_and_two_updates_that_do_nothing_are_not() -> None:
    a = np.array([-0.3, -0.1, -0.2, 0.05])
    assert twin_distance(a, a.copy()) == 0.0
    assert twin_distance(np.zeros(4), np.zeros(4)) == math.inf


def test_updates_that_lower_every_window_alike_but_in_other_patterns_are_not_twins() -> None:
    # Both lower every window by about 1; what differs is which windows a little more: the pattern term
    # sees it where the raw changes alone (0.03 apart) would call them twins.
    gen = np.random.default_rng(0)
    a, b = -1.0 + 0.03 * gen.standard_normal(64), -1.0 + 0.03 * gen.standard_normal(64)
    raw = np.linalg.norm(a - b) / max(np.linalg.norm(a), np.linalg.norm(b))
    assert raw < 0.1 < twin_distance(a, b)


def test_colluders_who_noise_one_crafted_vector_are_rejected_as_probe_twins_and_honest_nodes_kept() -> None:
    # Prepare: ALIE at an honest norm, 3 of 10, each colluder with 20 % noise of its own
    world = WideWorld()
    updates = _round(world, "alie_nm")
    # Execute: the default chain
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    # Assert: the colluders out at the twin gate (the duplicate gate let them through); every honest node in
    assert sorted(outcome.rejected_nodes) == [node(i) for i in range(ATTACKERS)]
    assert {r.gate for r in outcome.rejections} == {"probe_twin"}
    assert "window by window" in outcome.rejections[0].reason
    nearest = twin_distances(_probe(world).effects(updates, _context(world)))
    honest = [nearest[u.node][0] for u in updates[ATTACKERS:]]
    colluders = [nearest[u.node][0] for u in updates[:ATTACKERS]]
    assert max(colluders) < GateSettings().probe_loss_twin_tolerance < min(honest)


def test_without_the_twin_gate_the_same_colluders_pass() -> None:
    world = WideWorld()
    updates = _round(world, "alie_nm")
    outcome = run_gates(updates, world.g, build_gates(GateSettings(probe_loss_twin_tolerance=None),
                                                      window_losses=world.window_losses))
    assert not set(outcome.rejected_nodes) & {node(i) for i in range(ATTACKERS)}


def test_a_copier_takes_the_copied_node_out_with_it() -> None:
    # The documented cost: the gate cannot tell which of two twins trained.
    world = WideWorld(seed=1)
    honest = [world.honest() for _ in range(NODES)]
    noise = torch.randn(SIZE, generator=world.gen) * honest[5][KEY].norm() * 0.2 / math.sqrt(SIZE)
    honest[0] = {KEY: honest[5][KEY] + noise}
    updates = [ClientUpdate(node=node(i), delta=d, sample_count=10) for i, d in enumerate(honest)]
    decisions = twin_decisions(_probe(world).effects(updates, _context(world)), tolerance=0.1)
    assert sorted(d.node for d in decisions if d.rejected) == sorted([node(0), node(5)])


def test_a_round_below_min_candidates_or_without_per_window_changes_is_not_judged() -> None:
    same = [-0.2, -0.1, 0.0]
    effects = _effects({node(i): same for i in range(4)})
    assert all(d.reason is None and not d.comparisons for d in twin_decisions(effects, tolerance=0.1,
                                                                               min_candidates=5))
    effects = _effects({node(i): same for i in range(5)})
    effects[node(4)] = ProbeEffect(change=0.0, stderr=0.0, windows=3, per_window=(math.nan, 0.0, 0.0))
    decided = {d.node: d for d in twin_decisions(effects, tolerance=0.1, min_candidates=5)}
    assert decided[node(4)].reason is None and not decided[node(4)].comparisons
    assert all(decided[node(i)].rejected for i in range(4))


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, math.nan, math.inf])
def test_a_tolerance_outside_zero_to_one_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="twin tolerance"):
        ProbeTwinGate(_probe(WideWorld()), tolerance=bad)


def _probe(world: WideWorld) -> ProbeLossGate:
    return ProbeLossGate(world.window_losses)


def _context(world: WideWorld) -> GateContext:
    return GateContext(world.g)
