"""Each attack family against the default gates on small synthetic rounds: rejected, or shown harmless.

The world: a quadratic probe loss per window around a task direction; honest
updates = a small step along the task + a larger private component
orthogonal to it (non-IID nodes: honest updates nearly orthogonal to each
other), as in the probe-loss tests. Four of ten nodes attack.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from flare_chain.aggregation import ClientUpdate, FedAvg, GateSettings, apply_delta, build_gates, run_gates
from flare_chain.aggregation.anomaly import DuplicateGate
from flare_chain.aggregation.gates import GateContext
from flare_chain.aggregation.probe_loss import ProbeEffect, harmful_updates, spread_outliers
from flare_chain.attacks import RoundView, behaviour
from flare_chain.errors import ConfigError
from tests.aggregation._rounds import SHAPES, global_adapter, honest_round, node

ATTACKERS = 4
NODES = 10


def _flat(adapter: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([adapter[k].to(torch.float64).reshape(-1) for k in sorted(adapter)])


def _unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for k in sorted(SHAPES):
        n = math.prod(SHAPES[k])
        out[k] = flat[at : at + n].reshape(SHAPES[k]).to(torch.float32)
        at += n
    return out


class World:
    """A quadratic task: window w's loss is ‖adapter − target_w‖², targets around ``g + task``."""

    def __init__(self, seed: int = 0, windows: int = 64) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.g = global_adapter()
        self.size = sum(math.prod(s) for s in SHAPES.values())
        task = torch.randn(self.size, generator=self.gen, dtype=torch.float64)
        self.task = task / task.norm()
        self.targets = _flat(self.g) + self.task + 0.05 * torch.randn(windows, self.size, generator=self.gen,
                                                                     dtype=torch.float64)

    def window_losses(self, adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
        return ((_flat(adapter) - self.targets) ** 2).sum(dim=1).numpy()

    def honest(self, toward: float = 1.0) -> dict[str, torch.Tensor]:
        own = torch.randn(self.size, generator=self.gen, dtype=torch.float64)
        own -= (own @ self.task) * self.task
        return _unflat(0.02 * toward * self.task + 0.1 * own / own.norm())

    def loss(self, adapter: Mapping[str, torch.Tensor]) -> float:
        return float(self.window_losses(adapter).mean())


def _round(world: World, attack: str, relative_noise: float) -> tuple[list[ClientUpdate], list[ClientUpdate]]:
    """(all updates, honest updates) with the first ATTACKERS nodes running ``attack``."""
    b = behaviour(attack)
    own = [world.honest(toward=-1.0 if b.trains_on == "label_poison" else 1.0) for _ in range(ATTACKERS)]
    honest = [world.honest() for _ in range(NODES - ATTACKERS)]
    crafted = [b.craft(RoundView(own=own[i], global_tensors=world.g, nodes=NODES, attackers=ATTACKERS, seed=i,
                                 honest=honest if b.omniscient else (), relative_noise=relative_noise))
               for i in range(ATTACKERS)]
    updates = [ClientUpdate(node=node(i), delta=d, sample_count=10) for i, d in enumerate(crafted + honest)]
    return updates, updates[ATTACKERS:]


COLLUDING = ["alie", "alie_nm", "ipm_0.1", "ipm_0.5", "minmax_std", "minmax_sign", "minsum_std", "minsum_sign",
             "near_duplicate", "adapter_negation", "adapter_negation_nm"]


@pytest.mark.parametrize("attack", COLLUDING)
def test_colluders_sending_one_vector_with_tiny_independent_noise_are_all_rejected_as_duplicates(attack: str) -> None:
    # Prepare
    world = World()
    updates, _ = _round(world, attack, relative_noise=1e-6)
    # Execute
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    # Assert: every attacker out, every honest node in
    assert sorted(outcome.rejected_nodes) == [node(i) for i in range(ATTACKERS)]
    assert {r.gate for r in outcome.rejections} == {"duplicate"}


@pytest.mark.parametrize("attack", [*COLLUDING, "sign_flip_nm", "label_poison", "dilution"])
def test_adaptive_attackers_with_large_independent_noise_are_rejected_or_harmless(attack: str) -> None:
    # Prepare: 30 % independent noise per attacker, far beyond the duplicate gate's tolerance
    world = World(seed=1)
    updates, honest = _round(world, attack, relative_noise=0.3)
    # Execute
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    # Assert: no honest node rejected; what gets through keeps >= 90 % of the honest-only gain
    assert not set(outcome.rejected_nodes) & {u.node for u in honest}
    base = world.loss(world.g)
    honest_only = world.loss(apply_delta(world.g, FedAvg().aggregate(honest)))
    defended = world.loss(apply_delta(world.g, FedAvg().aggregate(outcome.accepted)))
    undefended = world.loss(apply_delta(world.g, FedAvg().aggregate(updates)))
    assert (base - defended) / (base - honest_only) >= 0.9, (attack, base, honest_only, defended, undefended)


def test_sign_flip_at_an_honest_norm_is_caught_by_the_probe_loss_gate() -> None:
    world = World(seed=2)
    updates, _ = _round(world, "sign_flip_nm", relative_noise=0.0)
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    assert sorted(outcome.rejected_nodes) == [node(i) for i in range(ATTACKERS)]
    assert {r.gate for r in outcome.rejections} == {"probe_loss"}


def test_the_spread_rule_catches_an_update_that_helps_far_less_than_the_round_without_raising_the_loss() -> None:
    # Prepare: honest changes around −0.05 (spread 0.005), one at −0.01: it does not raise the loss at all
    changes = [-0.05, -0.052, -0.048, -0.055, -0.045, -0.051, -0.049, -0.01]
    effects = {node(i): ProbeEffect(change=c, stderr=0.001, windows=128) for i, c in enumerate(changes)}
    # Execute
    without = harmful_updates(effects, z=3.0)
    with_spread = harmful_updates(effects, z=3.0, spread_z=3.5)
    # Assert
    assert without == {}
    assert list(with_spread) == [node(7)] and "far less than the round's other updates" in with_spread[node(7)]


def test_the_spread_rule_is_floored_by_each_updates_own_standard_error() -> None:
    # Identical honest changes (MAD 0): a slightly weaker but imprecisely measured update is kept
    effects = {node(i): ProbeEffect(change=-0.05, stderr=0.01, windows=128) for i in range(7)}
    effects[node(7)] = ProbeEffect(change=-0.04, stderr=0.01, windows=128)
    assert spread_outliers(effects, 3.5) == {}
    effects[node(7)] = ProbeEffect(change=0.0, stderr=0.01, windows=128)
    assert set(spread_outliers(effects, 3.5)) == {node(7)}


def test_honest_rounds_lose_no_node_to_the_new_rules() -> None:
    for seed in range(5):
        world = World(seed=10 + seed)
        honest = [ClientUpdate(node=node(i), delta=world.honest(), sample_count=10) for i in range(NODES)]
        outcome = run_gates(honest, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
        assert outcome.rejections == [], seed
    assert run_gates(honest_round(), global_adapter(), build_gates()).rejections == []


def test_near_duplicate_verdicts_do_not_depend_on_arrival_order() -> None:
    # Prepare
    world = World(seed=3)
    updates, _ = _round(world, "minmax_std", relative_noise=1e-4)
    gates = build_gates(GateSettings(), window_losses=world.window_losses)
    first = run_gates(updates, world.g, gates)
    # Execute: the same updates in other orders
    for seed in range(3):
        shuffled = list(updates)
        random.Random(seed).shuffle(shuffled)
        again = run_gates(shuffled, world.g, gates)
        # Assert: the same verdicts, the same reasons, the same accepted set
        assert again.rejections == first.rejections and again.accepted_nodes == first.accepted_nodes


def test_the_duplicate_tolerance_is_bounded_and_zero_keeps_only_the_bit_exact_check() -> None:
    world = World(seed=4)
    updates, _ = _round(world, "near_duplicate", relative_noise=1e-6)
    assert DuplicateGate(0.0).screen(updates, GateContext(global_tensors=world.g)) == {}
    for bad in (-0.1, 1.0, math.nan):
        with pytest.raises(ConfigError, match="tolerance"):
            DuplicateGate(bad)


def test_the_duplicate_gate_flags_exactly_the_pairs_within_tolerance_by_their_float64_distance() -> None:
    # Prepare: pairs of updates at known relative distances around the 0.1 tolerance
    world = World(seed=5)
    base = [world.honest() for _ in range(4)]
    updates = []
    for i, (b, gap) in enumerate(zip(base, (0.05, 0.099, 0.101, 0.5), strict=True)):
        other = world.honest()
        direction = {k: other[k] - b[k] for k in b}
        norm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in direction.values()))
        bnorm = math.sqrt(sum(float((v.double() ** 2).sum()) for v in b.values()))
        twin = {k: b[k] + direction[k] * (gap * bnorm / norm) for k in b}
        updates += [ClientUpdate(node=node(2 * i), delta=b, sample_count=1),
                    ClientUpdate(node=node(2 * i + 1), delta=twin, sample_count=1)]
    # Execute
    verdicts = DuplicateGate(0.1).screen(updates, GateContext(global_tensors=world.g))
    # Assert: the pairs at 0.05 and 0.099 (relative to the larger norm: a hair less), not 0.101 or 0.5
    assert sorted(verdicts) == [node(0), node(1), node(2), node(3)]
    assert "relative distance" in verdicts[node(0)]


def test_a_round_of_exactly_two_near_duplicates_flags_both() -> None:
    # Two sybils alone in a round (the smallest round the check applies to) must not slip past it
    world = World(seed=6)
    b = world.honest()
    twin = {k: v * 1.01 for k, v in b.items()}  # relative distance 0.01/1.01, well inside 0.1
    updates = [ClientUpdate(node=node(0), delta=b, sample_count=1), ClientUpdate(node=node(1), delta=twin, sample_count=1)]
    verdicts = DuplicateGate(0.1).screen(updates, GateContext(global_tensors=world.g))
    assert sorted(verdicts) == [node(0), node(1)]
    assert "relative distance" in verdicts[node(1)]
