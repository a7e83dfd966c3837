"""The MI filter's own catch: a poisoned model whose update every other gate passes.

The world is a linear softmax model on public probe inputs. Honest nodes take
the task's step plus private learning that the public probe hardly
exercises (their models agree on the probe). Poisoners take the same step,
so the probe loss falls along their update exactly as along an honest one,
plus noise of the same size in the directions the probe *does* exercise,
rescaled to the median honest norm. The noise's first-order effect on the
probe loss is zero on average; its harm is second order (softmax curvature)
and in the predictions, which the probe-loss gate's symmetric difference
cancels and the MI filter sees.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from flare_chain.aggregation import ClientUpdate, FedAvg, GateSettings, apply_delta, build_gates, run_gates
from flare_chain.attacks import rescale_to
from flare_chain.attacks.deltas import median_norm

SHAPES = {"m.lora_A.weight": (8, 64), "m.lora_B.weight": (64, 8)}
INPUTS, CLASSES, PROBE_ROWS = 128, 8, 96


def _flat(adapter) -> torch.Tensor:
    return torch.cat([adapter[k].to(torch.float64).reshape(-1) for k in sorted(adapter)])


def _unflat(flat: torch.Tensor) -> dict[str, torch.Tensor]:
    out, at = {}, 0
    for k in sorted(SHAPES):
        n = math.prod(SHAPES[k])
        out[k] = flat[at : at + n].reshape(SHAPES[k]).to(torch.float32)
        at += n
    return out


class LinearWorld:
    def __init__(self, seed: int) -> None:
        self.gen = torch.Generator().manual_seed(seed)
        self.x = self._randn(PROBE_ROWS, INPUTS)
        self.g = _unflat(0.1 * self._randn(INPUTS * CLASSES))
        self.task = 0.05 * self._randn(INPUTS, CLASSES)
        self.labels = (self.x @ (self._matrix(self.g) + self.task)).argmax(dim=1)
        self.visible = torch.linalg.pinv(self.x) @ self.x  # the input directions the probe exercises
        self.hidden = torch.eye(INPUTS, dtype=torch.float64) - self.visible

    def _randn(self, *shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=self.gen, dtype=torch.float64)

    @staticmethod
    def _matrix(adapter) -> torch.Tensor:
        return _flat(adapter).reshape(INPUTS, CLASSES)

    def window_losses(self, adapter) -> np.ndarray:
        logp = torch.log_softmax(self.x @ self._matrix(adapter), dim=1)
        return (-logp[torch.arange(PROBE_ROWS), self.labels]).reshape(12, 8).mean(dim=1).numpy()

    def predictor(self, adapter) -> np.ndarray:
        return (self.x @ self._matrix(adapter)).argmax(dim=1).numpy()

    def honest(self) -> dict[str, torch.Tensor]:
        own = self.hidden @ self._randn(INPUTS, CLASSES)
        own = own / own.norm() + 0.05 * (self.visible @ self._randn(INPUTS, CLASSES)) / own.norm()
        return _unflat((self.task + own / own.norm() * 3 * self.task.norm()).reshape(-1))

    def poisoned(self, honest: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
        noise = self.visible @ self._randn(INPUTS, CLASSES)
        return rescale_to(_unflat((self.task + noise / noise.norm() * 3 * self.task.norm()).reshape(-1)),
                          median_norm(honest))


@pytest.mark.parametrize(("seed", "attackers"), [(0, 2), (0, 4), (1, 3)])
def test_only_the_mi_filter_stops_poisoners_that_look_honest_in_weight_space_and_first_order_loss(
    seed: int, attackers: int
) -> None:
    # Prepare: 10 nodes, the first `attackers` poisoned
    world = LinearWorld(seed)
    honest = [world.honest() for _ in range(10 - attackers)]
    bad = [world.poisoned(honest) for _ in range(attackers)]
    updates = [ClientUpdate(node=f"0x{i:040x}", delta=d, sample_count=1) for i, d in enumerate(bad + honest)]
    attacker_nodes = [u.node for u in updates[:attackers]]

    def run(settings: GateSettings):
        return run_gates(updates, world.g, build_gates(settings, window_losses=world.window_losses,
                                                       predictor=world.predictor))

    # Execute
    with_mi = run(GateSettings())
    without_mi = run(GateSettings(mutual_information=False))

    # Assert: the MI filter rejects exactly the poisoners; every other gate passes all of them
    assert sorted(with_mi.rejected_nodes) == attacker_nodes
    assert {r.gate for r in with_mi.rejections} == {"mutual_information"}
    assert without_mi.rejections == []
    # ... and what the other gates let through costs a measurable share of the honest-only gain on the probe
    base = float(world.window_losses(world.g).mean())

    def loss_after(accepted: list[ClientUpdate]) -> float:
        return float(world.window_losses(apply_delta(world.g, FedAvg().aggregate(accepted))).mean())

    honest_only = loss_after(updates[attackers:])
    assert (base - loss_after(without_mi.accepted)) / (base - honest_only) < 1 - 0.04 * attackers
    assert loss_after(with_mi.accepted) == pytest.approx(honest_only)
