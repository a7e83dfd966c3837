"""The probe-loss gate on label-skewed honest nodes: harm is judged against the round's honest spread.

The probe corpus covers every node's skills; a node that learns its own two
raises the loss on the other six, so on the skills task some honest updates
raise the probe loss significantly while the round as a whole lowers it
(the demo's round 3: 3 of 6 nodes; the benchmark's round 2: 4 of 10). Such a
rise lies inside the round's spread of changes; a sign flip of a helping
update, or a poisoned one, lies far above it.
"""

from __future__ import annotations

import math

import pytest

from flare_chain.aggregation.probe_loss import (
    ProbeEffect,
    harmful_updates,
    probe_decisions,
    spread_decisions,
    spread_excess,
)

from ._rounds import node

# First-order probe changes (nats/token) of six honest skewed nodes: the median lowers the probe loss, two
# nodes raise it by many standard errors (128 windows, stderr 0.002).
HONEST = [-0.031, -0.022, -0.014, -0.006, +0.009, +0.012]


def _effects(changes: list[float], stderr: float = 0.002) -> dict[str, ProbeEffect]:
    return {node(i): ProbeEffect(change=c, stderr=stderr, windows=128) for i, c in enumerate(changes)}


def test_honest_skewed_nodes_that_raise_the_probe_loss_within_the_honest_spread_are_kept() -> None:
    effects = _effects(HONEST)
    # Before issue 15 (harm against zero alone) both risers are rejected: the false positive
    assert set(harmful_updates(effects, z=3.0)) == {node(4), node(5)}
    # Now a harmful update must also stand out from the round's spread
    assert harmful_updates(effects, z=3.0, outlier_z=3.0) == {}
    assert max(spread_excess(effects).values()) < 3.0


@pytest.mark.parametrize("rise", [0.08, 0.2])
def test_an_update_that_raises_the_probe_loss_far_beyond_the_honest_risers_is_rejected(rise: float) -> None:
    # Prepare: a poisoned update beside the skewed honest ones
    effects = _effects([*HONEST, -0.018, rise])
    # Execute
    decisions = {d.node: d for d in probe_decisions(effects, z=3.0, outlier_z=3.0)}
    # Assert: only it, and the decision names every condition it rests on, the spread included
    assert {n for n, d in decisions.items() if d.rejected} == {node(7)}
    stats = [c.statistic for c in decisions[node(7)].comparisons]
    assert stats == ["probe_median_change", "probe_change", "probe_z", "probe_spread_excess"]
    assert "spreads above the round's" in str(decisions[node(7)].reason)


def test_where_honest_updates_agree_a_flipped_helping_update_is_rejected() -> None:
    # Honest changes within ±0.003 of −0.05 (nodes learning the same thing): the flip's +0.05 is far outside.
    # Where honest changes span zero (HONEST), a flip hides in their spread; its cosine with the round is then
    # negative and the direction gate rejects it (tests/aggregation/test_direction_skew.py).
    changes = [-0.05, -0.052, -0.048, -0.053, -0.047, -0.051, -0.049, +0.05]
    assert set(harmful_updates(_effects(changes, stderr=0.004), z=3.0, outlier_z=3.0)) == {node(7)}


def test_without_the_outlier_condition_the_decisions_rest_on_three_comparisons_as_before() -> None:
    decisions = probe_decisions(_effects(HONEST), z=3.0)
    assert all(len(d.comparisons) == 3 for d in decisions)


def test_the_spread_rule_judges_a_round_of_exactly_min_candidates_and_none_smaller() -> None:
    # Four agreeing honest updates and one far above them: five (the default least) is judged, four are not
    effects = _effects([-0.05, -0.052, -0.048, -0.051, +0.05])
    judged = spread_decisions(effects, spread_z=3.5)
    assert {d.node for d in judged if d.rejected} == {node(4)}
    fewer = {n: e for n, e in effects.items() if n != node(0)}
    unjudged = spread_decisions(fewer, spread_z=3.5)
    assert [(d.rejected, d.comparisons) for d in unjudged] == [(False, ())] * 4


def test_the_spread_is_measured_once_three_changes_are_finite() -> None:
    # Two updates whose probe loss is not finite leave three to measure the spread by: still measured (the
    # probe-loss gate rejects the other two); with two finite changes there is no spread to speak of
    excess = spread_excess(_effects([-0.05, -0.049, +0.05, math.nan, math.inf]))
    assert excess[node(2)] > 3.5 and excess[node(3)] == excess[node(4)] == 0.0
    assert set(spread_excess(_effects([-0.05, +0.05, math.nan, math.nan, math.inf])).values()) == {0.0}
