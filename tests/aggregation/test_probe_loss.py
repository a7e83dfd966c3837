"""The probe-loss gate on hand-made losses with known answers, and on a loss with a known gradient."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from flare_chain.aggregation import (
    ClientUpdate,
    GateContext,
    GateSettings,
    ProbeLossGate,
    build_gates,
    harmful_updates,
    probe_effect,
    run_gates,
)
from flare_chain.aggregation.probe_loss import ProbeEffect
from flare_chain.errors import ConfigError
from tests.aggregation._rounds import SHAPES, global_adapter, node


def test_probe_effect_is_half_the_mean_window_difference_with_its_standard_error() -> None:
    plus, minus = np.array([1.2, 1.4, 1.0, 1.6]), np.array([1.0, 1.0, 1.0, 1.0])
    effect = probe_effect(plus, minus)
    d = (plus - minus) / 2
    assert effect.change == pytest.approx(d.mean())
    assert effect.stderr == pytest.approx(d.std(ddof=1) / 2)
    assert effect.windows == 4 and effect.z == pytest.approx(d.mean() / (d.std(ddof=1) / 2))


def test_one_window_gives_a_change_but_no_significance() -> None:
    # One window has no spread to judge its change by: the standard error is unknown (infinite) and z is 0, so
    # however the update moved that window's loss it is never significantly harmful
    effect = probe_effect(np.array([2.5]), np.array([2.0]))
    assert (effect.change, effect.stderr, effect.z, effect.windows) == (0.25, math.inf, 0.0, 1)


def test_a_non_finite_probe_loss_counts_as_maximally_harmful() -> None:
    effect = probe_effect(np.array([1.0, math.nan]), np.array([1.0, 1.0]))
    assert effect.change == math.inf and effect.z == math.inf


def test_mismatched_window_counts_are_refused() -> None:
    with pytest.raises(ConfigError, match="equal"):
        probe_effect(np.ones(3), np.ones(4))


def _effects(changes: list[float], stderr: float = 0.01) -> dict[str, ProbeEffect]:
    return {node(i): ProbeEffect(change=c, stderr=stderr, windows=128) for i, c in enumerate(changes)}


def test_only_significantly_harmful_updates_are_flagged_and_the_reason_says_so() -> None:
    # helpful, helpful, helpful, neutral noise (+1 SE), harmful (+5 SE), harmful (+3 SE exactly)
    verdicts = harmful_updates(_effects([-0.05, -0.04, -0.03, 0.01, 0.05, 0.03]), z=3.0)
    assert set(verdicts) == {node(4), node(5)}
    assert "raises the loss on the federation's public probe text" in verdicts[node(4)]
    assert "+0.0500" in verdicts[node(4)] and "5.0 standard errors" in verdicts[node(4)]


def test_no_verdicts_below_min_candidates_or_when_the_median_update_does_not_help_the_probe() -> None:
    assert harmful_updates(_effects([-0.05, 0.2, -0.03, -0.04]), min_candidates=5) == {}
    # most updates raise the probe loss: the corpus does not measure what the nodes learn
    assert harmful_updates(_effects([0.05, 0.06, 0.07, 0.08, -0.01, -0.02])) == {}
    # half of them raise it (median +0.02 > 0): the same, though the three look "significant"
    assert harmful_updates(_effects([0.05, 0.06, 0.07, -0.08, -0.01, -0.02])) == {}
    # three of seven with the median update helping: all three are flagged
    assert len(harmful_updates(_effects([0.05, 0.06, 0.07, -0.08, -0.01, -0.02, -0.03]))) == 3


def test_a_probe_that_does_not_measure_the_round_is_reported_as_info_not_a_warning(caplog) -> None:
    caplog.set_level(logging.INFO, logger="flare_chain.aggregation")
    assert harmful_updates(_effects([0.05, 0.06, 0.07, 0.08, -0.01, -0.02])) == {}
    assert [(r.levelno, "does not lower the probe loss" in r.getMessage()) for r in caplog.records] == [
        (logging.INFO, True)]


def test_verdicts_do_not_depend_on_the_order_effects_are_given_in() -> None:
    effects = _effects([-0.05, 0.2, -0.03, -0.04, -0.01, 0.3])
    reversed_effects = dict(reversed(list(effects.items())))
    assert harmful_updates(effects) == harmful_updates(reversed_effects)


# A loss with a known gradient: window w's loss is ‖θ − t_w‖² over the flattened adapter θ, with
# targets t_w = global + τ + small per-window jitter. Honest updates step toward τ but are nearly
# orthogonal to each other (each moves mostly along its own random direction); negated ones step away.


def _flat(adapter: Mapping[str, torch.Tensor]) -> torch.Tensor:
    return torch.cat([adapter[k].to(torch.float64).reshape(-1) for k in sorted(adapter)])


def _quadratic_world(seed: int = 0, windows: int = 64):
    gen = torch.Generator().manual_seed(seed)
    g = global_adapter()
    size = sum(math.prod(s) for s in SHAPES.values())
    task = torch.randn(size, generator=gen, dtype=torch.float64)
    task /= task.norm()
    targets = _flat(g) + task + 0.05 * torch.randn(windows, size, generator=gen, dtype=torch.float64)

    def window_losses(adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
        return ((_flat(adapter) - targets) ** 2).sum(dim=1).numpy()

    def update(i: int, toward: float) -> ClientUpdate:
        own = torch.randn(size, generator=gen, dtype=torch.float64)
        own -= (own @ task) * task
        flat = 0.02 * toward * task + 0.1 * own / own.norm()
        delta, at = {}, 0
        for k in sorted(SHAPES):
            n = math.prod(SHAPES[k])
            delta[k] = flat[at : at + n].reshape(SHAPES[k]).to(torch.float32)
            at += n
        return ClientUpdate(node=node(i), delta=delta, sample_count=100)

    return g, window_losses, update


def test_the_gate_rejects_sign_flipped_updates_that_look_like_honest_orthogonal_ones() -> None:
    g, window_losses, update = _quadratic_world()
    updates = [update(i, toward=1.0) for i in range(7)] + [update(i, toward=-1.0) for i in range(7, 10)]
    cosines = [float(_flat(a.delta) @ _flat(b.delta) / (_flat(a.delta).norm() * _flat(b.delta).norm()))
               for a in updates for b in updates if a.node < b.node]
    assert max(abs(c) for c in cosines) < 0.5  # weight space alone does not single them out
    outcome = run_gates(updates, g, [ProbeLossGate(window_losses, z=3.0)])
    assert sorted(outcome.rejected_nodes) == [node(i) for i in (7, 8, 9)]
    assert {r.gate for r in outcome.rejections} == {"probe_loss"}


def test_an_all_honest_round_loses_nothing() -> None:
    g, window_losses, update = _quadratic_world(seed=1)
    outcome = run_gates([update(i, toward=1.0) for i in range(10)], g, [ProbeLossGate(window_losses)])
    assert outcome.rejections == [] and len(outcome.accepted) == 10


def test_build_gates_adds_the_probe_loss_gate_only_with_window_losses_and_when_enabled() -> None:
    _, window_losses, _ = _quadratic_world()
    assert "probe_loss" not in [gate.name for gate in build_gates(GateSettings())]
    names = [gate.name for gate in build_gates(GateSettings(), window_losses=window_losses)]
    # the twin gate runs between them: it reads the effects the probe-loss gate measures
    assert names.index("probe_loss") == names.index("probe_twin") + 1 == names.index("direction") + 2
    assert "probe_loss" not in [g.name for g in build_gates(GateSettings(probe_loss=False),
                                                             window_losses=window_losses)]


@pytest.mark.parametrize("bad", [0.0, -1.0, math.inf, math.nan])
def test_a_bad_threshold_is_a_config_error(bad: float) -> None:
    with pytest.raises(ConfigError, match="threshold"):
        ProbeLossGate(lambda a: np.zeros(2), z=bad)


def test_a_round_of_exactly_min_candidates_is_judged() -> None:
    effects = _effects([-0.05, -0.04, -0.03, -0.02, 0.05])
    assert set(harmful_updates(effects, min_candidates=5)) == {node(4)}
    assert harmful_updates(effects, min_candidates=6) == {}


def test_the_gate_judges_a_round_of_exactly_min_candidates() -> None:
    g, window_losses, update = _quadratic_world(seed=2)
    updates = [update(i, toward=1.0) for i in range(4)] + [update(4, toward=-1.0)]
    assert ProbeLossGate(window_losses, min_candidates=5).screen(updates, GateContext(global_tensors=g)).keys() == {
        node(4)}
    assert ProbeLossGate(window_losses, min_candidates=6).screen(updates, GateContext(global_tensors=g)) == {}
