"""The probe-loss gate on label-skewed honest nodes: harm is judged against what honest updates gain.

The probe corpus covers every node's skills; a node that learns its own two
can raise the loss on the other six, so some honest updates raise the probe
loss significantly while the round as a whole lowers it (scored on whole
texts: the demo's round 3, 3 of 6 nodes; the benchmark's round 2, 4 of 10;
scored on responses: the demo's round 1, 1 of 6). Such a rise undoes a small
share of what a typical helping update gains; a sign flip of a helping update
undoes about all of it, and a poisoned one more. The rule before (a rise must
lie far above the round's spread) failed at 40 % attackers, whose own changes
inflate the spread.
"""

from __future__ import annotations

import math

import pytest

from flare_chain.aggregation.pipeline import GateSettings
from flare_chain.aggregation.probe_loss import (
    ProbeEffect,
    harmful_updates,
    probe_decisions,
    rise_shares,
    spread_decisions,
    spread_excess,
    typical_help,
)

from ._rounds import node

# First-order probe changes (nats/token) of six honest skewed nodes: the median lowers the probe loss, two
# nodes raise it by many standard errors (128 windows, stderr 0.002).
HONEST = [-0.031, -0.022, -0.014, -0.006, +0.009, +0.012]


def _effects(changes: list[float], stderr: float = 0.002) -> dict[str, ProbeEffect]:
    return {node(i): ProbeEffect(change=c, stderr=stderr, windows=128) for i, c in enumerate(changes)}


# Measured on the skills task's response-scored probe (bench_gate_fpr, demo round 1): node 2 rises at z 3.2.
DEFAULTS = GateSettings()
HONEST_RECORDS = [-0.4442, -0.2479, +0.1041, -0.3528, -0.5716, +0.0134]
# Measured (bench_learning ablation, 5 nodes, nodes 0 and 1 flip at the median honest norm), rounds 3 and 4,
# which the spread rule let through (in round 1 it caught both).
FLIPS_40 = [([+0.613, +0.438, -0.446, -0.039, -0.500], 0.07), ([+0.714, +0.495, -0.527, -0.018, -0.691], 0.07)]


def test_honest_skewed_nodes_that_raise_the_probe_loss_a_little_are_kept() -> None:
    for changes, stderr in ((HONEST, 0.002), (HONEST_RECORDS, 0.0325)):
        effects = _effects(changes, stderr=stderr)
        risers = {node(i) for i, c in enumerate(changes) if c / stderr >= 3.0}
        # Harm against zero alone rejects the significant risers: the false positive
        assert risers and set(harmful_updates(effects, z=3.0)) == risers
        # The spec's defaults: a harmful update must also stand out, by the round's spread or by undoing
        # three quarters of a typical helping update's gain; the risers do neither
        assert harmful_updates(effects, z=3.0, outlier_z=DEFAULTS.probe_loss_outlier_z,
                               rise_share=DEFAULTS.probe_loss_rise_share) == {}
        assert max(rise_shares(effects).values()) < 0.7
        assert max(spread_excess(effects).values()) < 3.0


@pytest.mark.parametrize(("changes", "stderr"), FLIPS_40)
def test_flips_at_40_percent_are_rejected_though_they_inflate_the_spread(changes: list[float], stderr: float) -> None:
    effects = _effects(changes, stderr=stderr)
    flips = {node(0), node(1)}
    # the spread alone (the rule before), which the flips' own changes inflate, lets at least one through
    assert set(harmful_updates(effects, z=3.0, outlier_z=3.0)) != flips
    # with the defaults each flip stands out, by the spread or by undoing most of a helping update's gain
    decisions = {d.node: d for d in probe_decisions(effects, z=3.0, outlier_z=DEFAULTS.probe_loss_outlier_z,
                                                   rise_share=DEFAULTS.probe_loss_rise_share)}
    assert {n for n, d in decisions.items() if d.rejected} == flips
    assert [c.statistic for c in decisions[node(1)].comparisons][-1] == "probe_standout"


def test_the_typical_help_is_the_median_gain_of_the_updates_that_help() -> None:
    effects = _effects([-0.3, -0.1, -0.2, +0.4, math.inf])
    assert typical_help(effects) == pytest.approx(0.2)
    shares = rise_shares(effects)
    assert shares[node(3)] == pytest.approx(2.0) and shares[node(4)] == math.inf
    assert set(rise_shares(_effects([+0.1, +0.2, +0.3])).values()) == {0.0}  # nothing helps: no reference


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
    both = {d.node: d for d in probe_decisions(effects, z=3.0, outlier_z=3.0, rise_share=0.75)}
    assert {n for n, d in both.items() if d.rejected} == {node(7)}
    assert "of a typical helping update's gain" in str(both[node(7)].reason)


def test_where_honest_updates_agree_a_flipped_helping_update_is_rejected() -> None:
    # Honest changes within ±0.003 of −0.05 (nodes learning the same thing): the flip's +0.05 is far outside.
    # Where honest changes span zero (HONEST), a flip hides in their spread; its cosine with the round is then
    # negative and the direction gate rejects it (tests/aggregation/test_direction_skew.py).
    changes = [-0.05, -0.052, -0.048, -0.053, -0.047, -0.051, -0.049, +0.05]
    assert set(harmful_updates(_effects(changes, stderr=0.004), z=3.0, outlier_z=3.0)) == {node(7)}
    assert set(harmful_updates(_effects(changes, stderr=0.004), z=3.0, rise_share=0.75)) == {node(7)}


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
