"""A member's vote protects its own data: the default tolerance rejects an adapter clearly worse on it."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.node.config import DEFAULT_VOTE_TOLERANCE, CommitteeSettings, load_node_config
from flare_chain.node.participant import loss_within_tolerance

TEMPLATES = sorted((Path(__file__).resolve().parents[2] / "nodes").glob("node-*.toml"))


def test_the_default_rejects_the_rise_a_member_approved_under_the_old_template() -> None:
    # node-1's held-out loss went 1.7386 -> 1.7484 (+0.56%) and it voted yes with vote_tolerance = 0.05
    assert CommitteeSettings().vote_tolerance == DEFAULT_VOTE_TOLERANCE
    assert not loss_within_tolerance(1.7386, 1.7484, DEFAULT_VOTE_TOLERANCE)


@pytest.mark.parametrize(("before", "after", "approved"), [
    (1.7386, 1.7386, True),    # unchanged
    (1.7386, 1.6000, True),    # better
    (1.7386, 1.7470, True),    # +0.48%: within half a round of training's gain
    (1.7386, 1.7480, False),   # +0.54%
])
def test_the_rule_is_relative_to_the_previous_global_loss(before: float, after: float, approved: bool) -> None:
    assert loss_within_tolerance(before, after, DEFAULT_VOTE_TOLERANCE) is approved


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_templates_use_the_protecting_default(path: Path) -> None:
    assert load_node_config(path, env={}).committee.vote_tolerance == DEFAULT_VOTE_TOLERANCE
