"""The inert-update gate: an update that moves no probe window adds weight to the average, not learning.

The world is a LoRA layer whose probe loss depends on the product B·A only,
as a real model's does: window w's loss is ‖B·A − T_w‖² with targets around
where the task leads. Honest nodes take a gradient step on their own data
(the task plus a private direction). Adapter negation sends (√2·A, −√2·B)
scaled to an honest norm: ``global ± Δ`` give the same product, so every
first-order probe change is 0 and no test of harm can reject it; four of ten
such colluders, each with 20 % noise of its own, got past the duplicate gate
and cost 12 % of the gain in the learning benchmark (10 nodes, 40 %).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flare_chain.aggregation import ClientUpdate, FedAvg, GateSettings, apply_delta, build_gates, run_gates
from flare_chain.aggregation.probe_loss import ProbeEffect, effect_ratios, inert_decisions, probe_effect
from flare_chain.attacks import RoundView, behaviour

from ._rounds import node

A, B = "m.lora_A.weight", "m.lora_B.weight"
ATTACKERS, NODES = 4, 10


class LoraWorld:
    """One LoRA layer (rank 4, 32 × 32); the probe loss of window w is ‖B·A − T_w‖² (float64)."""

    def __init__(self, seed: int = 0, windows: int = 64) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.g = {A: 0.3 * torch.randn(4, 32, generator=self.gen), B: 0.3 * torch.randn(32, 4, generator=self.gen)}
        product = self.g[B].double() @ self.g[A].double()
        self.task = torch.randn(32, 32, generator=self.gen, dtype=torch.float64)
        self.targets = product + self.task + 0.3 * torch.randn(windows, 32, 32, generator=self.gen,
                                                               dtype=torch.float64)

    def window_losses(self, adapter) -> np.ndarray:
        product = adapter[B].double() @ adapter[A].double()
        return ((product - self.targets) ** 2).sum(dim=(1, 2)).numpy() / 1024

    def honest(self, lr: float | None = None) -> dict[str, torch.Tensor]:
        """A gradient step on the node's own data: the task plus a private direction as large; nodes learn at
        rates up to a factor of 2 apart (data size, skills), so their probe gains differ as trained nodes' do."""
        if lr is None:
            lr = 0.01 * 2 ** float(torch.rand(1, generator=self.gen))
        pull = self.task + torch.randn(32, 32, generator=self.gen, dtype=torch.float64) * self.task.norm() / 32
        a, b = self.g[A].double(), self.g[B].double()
        return {A: (lr * b.T @ pull).float(), B: (lr * pull @ a.T).float()}

    def loss(self, adapter) -> float:
        return float(self.window_losses(adapter).mean())


def _round(world: LoraWorld, attack: str, noise: float) -> tuple[list[ClientUpdate], list[ClientUpdate]]:
    b = behaviour(attack)
    honest = [world.honest() for _ in range(NODES - ATTACKERS)]
    crafted = [b.craft(RoundView(own=world.honest(), global_tensors=world.g, nodes=NODES, attackers=ATTACKERS,
                                 seed=i, honest=honest, relative_noise=noise)) for i in range(ATTACKERS)]
    updates = [ClientUpdate(node=node(i), delta=d, sample_count=10) for i, d in enumerate(crafted + honest)]
    return updates, updates[ATTACKERS:]


def test_the_probe_effect_measures_how_far_the_windows_move_either_way() -> None:
    d = np.array([0.1, -0.1, 0.3, -0.3])
    effect = probe_effect(2.0 + d, 2.0 - d)
    assert effect.change == pytest.approx(0.0, abs=1e-12)
    assert effect.rms == pytest.approx(math.sqrt(0.05))
    assert probe_effect(np.array([1.0, math.inf]), np.array([1.0, 1.0])).rms == math.inf


def test_adapter_negation_with_noise_beyond_the_duplicate_tolerance_is_rejected_as_inert() -> None:
    # Prepare
    world = LoraWorld()
    updates, honest = _round(world, "adapter_negation_nm", noise=0.2)
    # Execute
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    # Assert: each colluder out, at the inert-update gate; every honest node in; the gain kept
    assert sorted(outcome.rejected_nodes) == [node(i) for i in range(ATTACKERS)]
    assert {r.gate for r in outcome.rejections} == {"probe_inert"}
    assert "barely moves the loss" in outcome.rejections[0].reason
    base = world.loss(world.g)
    honest_only = world.loss(apply_delta(world.g, FedAvg().aggregate(honest)))
    diluted = world.loss(apply_delta(world.g, FedAvg().aggregate(updates)))
    defended = world.loss(apply_delta(world.g, FedAvg().aggregate(outcome.accepted)))
    assert (base - diluted) / (base - honest_only) < 0.9 < (base - defended) / (base - honest_only)
    # and without the gate they pass every other one
    off = run_gates(updates, world.g, build_gates(GateSettings(probe_loss_min_effect=None),
                                                  window_losses=world.window_losses))
    assert off.rejected_nodes == []


def test_diluting_nodes_that_move_the_probe_less_than_the_threshold_are_rejected_as_inert() -> None:
    # Prepare: four of ten nodes send 0.15 of their own update hidden in noise, at the median honest norm
    world = LoraWorld()
    updates, honest = _round(world, "dilution", noise=0.0)
    effects = {u.node: probe_effect(world.window_losses(_at(world, u, 1.0)), world.window_losses(_at(world, u, -1.0)))
               for u in updates}
    ratios = effect_ratios(effects)
    weak = {u.node for u in updates[:ATTACKERS] if ratios[u.node] < GateSettings().probe_loss_min_effect}
    # Execute
    outcome = run_gates(updates, world.g, build_gates(GateSettings(), window_losses=world.window_losses))
    # Assert: those below the threshold leave at the inert gate, every honest node stays
    assert weak and {r.node for r in outcome.rejections if r.gate == "probe_inert"} == weak
    assert not set(outcome.rejected_nodes) & {u.node for u in honest}
    # and the old threshold of 0.1 let every one of them in
    old = run_gates(updates, world.g, build_gates(GateSettings(probe_loss_min_effect=0.1),
                                                  window_losses=world.window_losses))
    assert not any(r.gate == "probe_inert" for r in old.rejections)


def test_an_honest_node_that_learned_a_third_as_much_is_kept() -> None:
    # Its windows move a third as far as the others': far above the inert threshold
    world = LoraWorld(seed=1)
    updates = [ClientUpdate(node=node(i), delta=world.honest(lr=0.005 if i == 0 else 0.015), sample_count=10)
               for i in range(NODES)]
    effects = {u.node: probe_effect(world.window_losses(_at(world, u, 1.0)), world.window_losses(_at(world, u, -1.0)))
               for u in updates}
    assert not any(d.rejected for d in inert_decisions(effects, min_ratio=GateSettings().probe_loss_min_effect))
    assert 0.2 < effect_ratios(effects)[node(0)] < 0.5


def _at(world: LoraWorld, update: ClientUpdate, sign: float) -> dict[str, torch.Tensor]:
    return {k: world.g[k] + sign * update.delta[k] for k in world.g}


def test_the_rule_stands_down_where_the_probe_does_not_measure_the_task_or_the_round_is_small() -> None:
    effects = {node(i): ProbeEffect(change=c, stderr=0.01, windows=64, rms=r)
               for i, (c, r) in enumerate([(-0.2, 0.5), (-0.3, 0.6), (-0.1, 0.4), (-0.25, 0.5), (0.0, 0.001)])}
    judged = {d.node: d for d in inert_decisions(effects, min_ratio=0.1)}
    assert [n for n, d in judged.items() if d.rejected] == [node(4)]
    assert [c.statistic for c in judged[node(4)].comparisons] == ["probe_median_change", "probe_effect_ratio"]
    rising = {n: ProbeEffect(change=abs(e.change), stderr=e.stderr, windows=64, rms=e.rms) for n, e in effects.items()}
    assert not any(d.rejected for d in inert_decisions(rising, min_ratio=0.1))
    four = dict(list(effects.items())[1:])
    assert not any(d.rejected for d in inert_decisions(four, min_ratio=0.1))
    unmeasured = {n: ProbeEffect(change=e.change, stderr=e.stderr, windows=64) for n, e in effects.items()}
    assert all(d.comparisons == () and not d.rejected for d in inert_decisions(unmeasured, min_ratio=0.1))
