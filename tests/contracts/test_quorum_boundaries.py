"""The approval threshold and the vote deadline at their exact boundaries, on three thresholds.

The default network uses 6667 bps; here a unanimous coordinator (10000 bps, min committee 2)
and a half one (5000 bps, min committee 3) are deployed as well, each with the same four
validators seated. A quorum rule of ``>`` instead of ``>=`` would never commit at 10000 bps
and would need three of four at 5000 bps; these tests pin both.
"""

from __future__ import annotations

from eth_utils import keccak

from flare_chain.chain import FailureReason, RoundStatus

MANIFEST = keccak(text="manifest")


def _proposed(network) -> int:
    """A round with all four validators seated and the leader's proposal (accepting validator 0) made."""
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, claim=4, proposal=3, voting=6)
    c.submit_update(v[0], round_id, network.cid("u0"), 7, MANIFEST)
    network.seat(round_id)
    network.to_proposals(round_id)
    c.propose_aggregate(network.leader(round_id), round_id, network.cid("aggregate"), [v[0].address])
    return round_id


def test_unanimous_threshold_commits_on_the_fourth_of_four_approvals(unanimous_network):
    # Prepare
    net = unanimous_network
    c, v = net.coordinator, net.validators
    round_id = _proposed(net)
    # Execute: three of four approve
    for voter in v[:3]:
        c.vote(voter, round_id, True)
    # Assert: 7500 bps is short of 10000; the last approval commits with all four
    assert c.round_info(round_id).status is RoundStatus.PROPOSED
    c.vote(v[3], round_id, True)
    outcome = c.round_outcome(round_id)
    assert outcome.committed and (outcome.approvals, outcome.committee_size) == (4, 4)
    assert c.global_adapter_cid() == net.cid("aggregate")


def test_unanimous_threshold_fails_on_the_first_rejection(unanimous_network):
    net = unanimous_network
    c, v = net.coordinator, net.validators
    round_id = _proposed(net)
    c.vote(v[0], round_id, True)
    c.vote(v[1], round_id, False)
    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED


def test_half_threshold_commits_on_exactly_two_of_four_approvals(half_network):
    net = half_network
    c, v = net.coordinator, net.validators
    round_id = _proposed(net)
    c.vote(v[0], round_id, True)
    assert c.round_info(round_id).status is RoundStatus.PROPOSED  # 1 of 4 is 2500 bps
    c.vote(v[1], round_id, True)
    outcome = c.round_outcome(round_id)
    assert outcome.committed and (outcome.approvals, outcome.committee_size) == (2, 4)


def test_half_threshold_survives_two_rejections_and_fails_on_the_third(half_network):
    net = half_network
    c, v = net.coordinator, net.validators
    round_id = _proposed(net)
    c.vote(v[0], round_id, False)
    c.vote(v[1], round_id, False)
    assert c.round_info(round_id).status is RoundStatus.PROPOSED  # the other two could still make half
    c.vote(v[2], round_id, False)
    info = c.round_info(round_id)
    assert (info.status, info.rejections) == (RoundStatus.FAILED, 3)
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED


def test_half_threshold_commits_two_approvals_after_two_rejections(half_network):
    net = half_network
    c, v = net.coordinator, net.validators
    round_id = _proposed(net)
    c.vote(v[0], round_id, False)
    c.vote(v[1], round_id, False)
    c.vote(v[2], round_id, True)
    c.vote(v[3], round_id, True)
    outcome = c.round_outcome(round_id)
    assert outcome.committed and (outcome.approvals, outcome.committee_size) == (2, 4)


def test_a_vote_in_the_last_voting_block_counts_and_commits(network):
    c, v = network.coordinator, network.validators
    round_id = _proposed(network)
    c.vote(v[0], round_id, True)
    c.vote(v[1], round_id, True)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline)
    result = c.vote(v[2], round_id, True)
    assert result.block_number == deadline
    assert c.round_info(round_id).status is RoundStatus.COMMITTED


def test_finalize_in_the_last_voting_block_reverts_and_the_votes_still_commit(network, reverts):
    # Prepare: two approvals in, the third member votes in the last block
    c, v = network.coordinator, network.validators
    round_id = _proposed(network)
    c.vote(v[0], round_id, True)
    c.vote(v[1], round_id, True)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline)
    # Execute / Assert: nobody can fail the round while a vote is still valid
    with reverts("CoordinatorNothingToFinalize", round_id, RoundStatus.PROPOSED, deadline):
        c.finalize_round(network.outsider, round_id)
    c.vote(v[2], round_id, True)
    assert c.round_info(round_id).status is RoundStatus.COMMITTED


def test_finalize_in_the_first_block_after_the_vote_deadline_fails_the_round(network, reverts):
    c, v = network.coordinator, network.validators
    round_id = _proposed(network)
    c.vote(v[0], round_id, True)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline + 1)
    c.finalize_round(network.outsider, round_id)
    assert c.round_outcome(round_id).failure_reason is FailureReason.VOTE_TIMEOUT
    with reverts("CoordinatorNoProposal", round_id, RoundStatus.FAILED):
        c.vote(v[1], round_id, True)
