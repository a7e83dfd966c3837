"""scripts/bench_gate_fpr.py: the false-positive table's bookkeeping (each gate's row and the default chain's)."""

from __future__ import annotations

from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.scripts._scripts import script_module

NODES = [f"node-{i:02d}" for i in range(5)]


@pytest.fixture(scope="module")
def fpr() -> Iterator[ModuleType]:
    with script_module("bench_gate_fpr") as module:  # it imports its sibling bench_learning
        yield module


def test_the_default_chain_row_counts_a_node_left_out_by_two_gates_once_and_leaves_the_old_rules_out(
        fpr: ModuleType) -> None:
    # Prepare: node-00 attacks; round 1 has three gates rejecting overlapping nodes, round 2 two gates the same one
    counts: dict[str, list[int]] = {}
    bad = {"node-00"}
    round_1 = {"norm": {"node-04"}, "probe_loss": {"node-00", "node-01", "node-02"}, fpr.OLD_PROBE_LOSS: {"node-03"}}
    round_2 = {"norm": {"node-01"}, "probe_loss": {"node-01"}, fpr.OLD_PROBE_LOSS: set()}
    # Execute
    fpr.count_round(counts, round_1, NODES, bad)
    fpr.count_round(counts, round_2, NODES, bad)
    # Assert: [honest rejected, honest node-rounds, attackers rejected, attacker node-rounds]
    assert counts["norm"] == [2, 8, 0, 2]
    assert counts["probe_loss"] == [3, 8, 1, 2]
    assert counts[fpr.OLD_PROBE_LOSS] == [1, 8, 0, 2]
    # node-04, node-01, node-02 in round 1 and node-01 once in round 2; node-03 only by the old rule
    assert counts[fpr.ANY_GATE] == [4, 8, 1, 2]
