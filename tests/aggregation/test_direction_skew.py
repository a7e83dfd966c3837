"""The direction gate on label-skewed honest nodes: specialisation is not an attack, turning around is.

The round: honest updates share the task's direction; five of six also share
the skills most nodes hold, the sixth holds skills no other node has (its own
direction, larger), like the demo's node-4 (cosine +0.35 against a median of
+0.59). Before issue 15 the gate judged the cosine's robust z alone and left
that node out; now an update must also point against the round (cosine below
``direction_max_cosine``, 0 by default).
"""

from __future__ import annotations

import math

import pytest
import torch

from flare_chain import attacks
from flare_chain.aggregation import (
    ClientUpdate,
    DirectionAnomalyGate,
    FedAvg,
    GateSettings,
    apply_delta,
    build_gates,
    run_gates,
)
from flare_chain.aggregation.gates import GateContext
from flare_chain.aggregation.tolerance import ToleranceBands, in_band
from flare_chain.attacks import RoundView, behaviour
from flare_chain.errors import ConfigError

from ._rounds import SHAPES, global_adapter, node
from .test_defences import World
from .test_defences import _unflat as _world_unflat

CTX = GateContext(global_tensors=global_adapter())
SIZE = sum(math.prod(s) for s in SHAPES.values())


def _unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for key in sorted(SHAPES):
        n = math.prod(SHAPES[key])
        out[key] = (flat[at:at + n].reshape(SHAPES[key]) * 1e-2).to(torch.float32)
        at += n
    return out


def skewed_round(seed: int, n: int = 6) -> list[ClientUpdate]:
    """n honest updates: n−1 share the task and the common skills, the last holds skills nobody else has."""
    gen = torch.Generator().manual_seed(seed)

    def unit() -> torch.Tensor:
        v = torch.randn(SIZE, generator=gen, dtype=torch.float64)
        return v / v.norm()

    task, common = unit(), unit()
    flats = [task + 0.6 * common + 0.9 * unit() for _ in range(n - 1)]
    own = task + 2.4 * unit()
    flats.append(own * (flats[0].norm() / own.norm()))  # an honest size: the norm gate has no reason to act
    return [ClientUpdate(node=node(i), delta=_unflat(f), sample_count=10) for i, f in enumerate(flats)]


def _flip(updates: list[ClientUpdate], *indices: int) -> list[ClientUpdate]:
    return [ClientUpdate(node=u.node, delta=attacks.sign_flip(u.delta) if i in indices else u.delta,
                         sample_count=u.sample_count) for i, u in enumerate(updates)]


@pytest.mark.parametrize("seed", range(5))
def test_an_honest_node_whose_skills_nobody_shares_passes_the_default_gates(seed: int) -> None:
    # Prepare: the z-alone rule (before issue 15) leaves the skewed node out: this round is the false positive
    updates = skewed_round(seed)
    skewed = updates[-1].node
    assert DirectionAnomalyGate(max_cosine=None).screen(updates, CTX).keys() == {skewed}
    # Execute: the committee's default gates (no probe corpus here)
    outcome = run_gates(updates, global_adapter(), build_gates(GateSettings()))
    # Assert: everyone is in, and the skewed node's cosine is a low outlier but positive
    assert outcome.rejections == []
    decision = next(d for d in outcome.decisions if d.gate == "direction" and d.node == skewed)
    z, cosine = decision.comparisons
    assert z.rejects and not cosine.rejects and cosine.value > 0


@pytest.mark.parametrize("flipped", [(0,), (5,), (0, 1), (1, 5)])
def test_sign_flips_among_skewed_honest_nodes_are_still_rejected_by_the_direction_gate(flipped: tuple[int, ...]) -> None:
    # Prepare: the skewed node itself, or majority nodes, send their update negated (up to a third of the round)
    updates = _flip(skewed_round(1), *flipped)
    # Execute
    outcome = run_gates(updates, global_adapter(), build_gates(GateSettings()))
    # Assert: exactly the flipped ones leave, at the direction gate
    assert sorted(outcome.rejected_nodes) == sorted(node(i) for i in flipped)
    assert {r.gate for r in outcome.rejections} == {"direction"}
    assert all("below +0" in r.reason for r in outcome.rejections)


def test_a_round_with_forty_percent_sign_flips_loses_exactly_the_flippers() -> None:
    updates = _flip(skewed_round(2, n=10), 0, 3, 5, 7)
    verdicts = DirectionAnomalyGate().screen(updates, CTX)
    assert sorted(verdicts) == sorted(node(i) for i in (0, 3, 5, 7))


def test_the_cosine_bound_is_a_spec_setting_and_none_restores_the_z_alone_rule() -> None:
    updates = skewed_round(3)
    strict = build_gates(GateSettings(direction_max_cosine=None))
    assert run_gates(updates, global_adapter(), strict).rejected_nodes == [updates[-1].node]
    # A bound above the skewed node's cosine (+0.4 or so) rejects it again: the bound decides, not a constant
    loose = build_gates(GateSettings(direction_max_cosine=0.9))
    assert run_gates(updates, global_adapter(), loose).rejected_nodes == [updates[-1].node]
    with pytest.raises(ValueError, match="direction_max_cosine"):
        GateSettings(direction_max_cosine=1.5)
    with pytest.raises(ConfigError, match="max_cosine"):
        DirectionAnomalyGate(max_cosine=-2.0)


def test_the_cosine_comparison_has_a_tolerance_band_for_members_on_other_machines() -> None:
    # A member's verdict code looks a band up per statistic; the new one must have one, tight (float64 cosines)
    updates = skewed_round(4)
    decisions = DirectionAnomalyGate().assess(updates, CTX)
    bands = ToleranceBands()
    for d in decisions:
        for c in d.comparisons:
            assert bands.band(c.statistic).width(c.threshold) <= 1e-6
            assert not in_band(c, bands)


class SkewedWorld(World):
    """The defence tests' quadratic task, with honest updates that agree (round 1 of a real federation: cosines
    with the median around +0.6) and one honest node whose skills nobody shares: less of the task, more of its own."""

    def honest(self, toward: float = 1.0, *, skewed: bool = False) -> dict[str, torch.Tensor]:
        own = torch.randn(self.size, generator=self.gen, dtype=torch.float64)
        own -= (own @ self.task) * self.task
        strength = 0.6 if skewed else 0.75 + 0.5 * float(torch.rand(1, generator=self.gen))
        spread = 0.025 if skewed else 0.02
        return _world_unflat(0.02 * strength * toward * self.task + spread * own / own.norm())


@pytest.mark.parametrize("attack", ["sign_flip", "sign_flip_nm", "minmax_std", "alie_nm"])
@pytest.mark.parametrize("attackers", [2, 3, 4])
def test_the_cosine_bound_costs_no_catch_and_spares_the_skewed_honest_node(attack: str, attackers: int) -> None:
    # Prepare: ten nodes, the last honest one skewed; attackers craft from the honest updates, 30 % own noise
    world = SkewedWorld(seed=7)
    b = behaviour(attack)
    honest = [world.honest(skewed=i == 9 - attackers) for i in range(10 - attackers)]
    crafted = [b.craft(RoundView(own=world.honest(), global_tensors=world.g, nodes=10, attackers=attackers, seed=i,
                                 honest=honest if b.omniscient else (), relative_noise=0.3))
               for i in range(attackers)]
    updates = [ClientUpdate(node=node(i), delta=d, sample_count=10) for i, d in enumerate(crafted + honest)]
    bad = {node(i) for i in range(attackers)}
    # Execute: the default gates, and the same with the z-alone direction rule
    now = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    before = run_gates(updates, world.g, build_gates(GateSettings(direction_max_cosine=None),
                                                     window_losses=world.window_losses))
    # Assert: the same attackers leave; no honest node leaves at the direction gate; the gain holds
    assert set(now.rejected_nodes) & bad == set(before.rejected_nodes) & bad
    assert not {r.node for r in now.rejections if r.gate == "direction"} - bad
    base = world.loss(world.g)
    honest_only = world.loss(apply_delta(world.g, FedAvg().aggregate(updates[attackers:])))
    defended = world.loss(apply_delta(world.g, FedAvg().aggregate(now.accepted)))
    assert (base - defended) / (base - honest_only) >= 0.9
