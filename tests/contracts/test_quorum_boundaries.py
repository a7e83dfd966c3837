"""The approval threshold and the vote deadline at their exact boundaries, on three thresholds.

The default network uses 6667 bps; here a unanimous coordinator (10000 bps, min committee 2)
and a half one (5000 bps, min committee 3) are deployed as well, each with the same four
validators seated. Votes count by seat weight, so every test reads the members' weights
(recomputed from their VRF outputs, not from the contract's own accounting) and pins the
exact vote at which the round commits or fails: a quorum rule of ``>`` instead of ``>=``,
or one that counts members instead of weight, moves that vote. A vote that puts the
threshold out of reach rejects the proposal, which hands the round to the next rank.
"""

from __future__ import annotations

from eth_utils import keccak

from flare_chain.chain import FailureReason, RoundStatus

MANIFEST = keccak(text="manifest")


def _proposed(network) -> tuple[int, dict[str, int]]:
    """A round with all four validators seated and the leader's proposal made; the seat weights."""
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, claim=4, proposal=3, voting=8)
    c.submit_update(v[0], round_id, network.cid("u0"), 7, MANIFEST)
    network.seat(round_id)
    network.to_proposals(round_id)
    c.propose_aggregate(network.leader(round_id), round_id, network.cid("aggregate"), [v[0].address])
    return round_id, network.weights(round_id)


def _commits_exactly_when_the_threshold_is_reached(net, approve_first: int = 0) -> None:
    c, v = net.coordinator, net.validators
    round_id, weights = _proposed(net)
    total = sum(weights.values())
    needed = net.needed(total)
    approvals = rejections = 0
    for i, voter in enumerate(v):
        approve = i >= approve_first
        c.vote(voter, round_id, approve)
        if approve:
            approvals += weights[voter.address]
        else:
            rejections += weights[voter.address]
        status = c.round_info(round_id).status
        if approvals >= needed:
            assert status is RoundStatus.COMMITTED
            outcome = c.round_outcome(round_id)
            assert (outcome.approval_weight, outcome.committee_weight) == (approvals, total)
            assert c.global_adapter_cid() == net.cid("aggregate")
            return
        if total - rejections < needed:  # the proposal is rejected: the round falls back to rank 1
            info = c.round_info(round_id)
            assert (status, info.rejected_proposals, info.first_rank) == (RoundStatus.OPEN, 1, 1)
            assert [r.rejected_rank for r in c.proposal_rejections(round_id)] == [0]
            assert c.global_adapter_cid() == net.initial_cid
            return
        assert status is RoundStatus.PROPOSED, (i, approvals, rejections, needed, total)
    raise AssertionError("four votes neither committed nor failed the round")


def test_unanimous_threshold_commits_only_on_the_last_approval(unanimous_network):
    _commits_exactly_when_the_threshold_is_reached(unanimous_network)
    round_id = unanimous_network.coordinator.current_round()
    assert len(unanimous_network.coordinator.votes(round_id)) == 4


def test_unanimous_threshold_fails_on_the_first_rejection(unanimous_network):
    net = unanimous_network
    c, v = net.coordinator, net.validators
    round_id, _ = _proposed(net)
    c.vote(v[0], round_id, True)
    c.vote(v[1], round_id, False)
    info = c.round_info(round_id)
    assert (info.status, info.rejected_proposals, info.approvals, info.rejections) == (RoundStatus.OPEN, 1, 0, 0)
    # every later rank's proposal meets the same first "no": the fourth rejection fails the round
    for rank in (1, 2, 3):
        c.propose_aggregate(net.by_address(c.proposer_order(round_id)[rank]), round_id, net.cid(f"again {rank}"),
                            [v[0].address])
        c.vote(v[1], round_id, False)
    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED


def test_half_threshold_commits_at_exactly_half_the_weight(half_network):
    _commits_exactly_when_the_threshold_is_reached(half_network)


def test_half_threshold_rejections_fail_the_round_once_half_is_out_of_reach(half_network):
    _commits_exactly_when_the_threshold_is_reached(half_network, approve_first=4)


def test_half_threshold_counts_approvals_after_rejections(half_network):
    _commits_exactly_when_the_threshold_is_reached(half_network, approve_first=2)


def test_two_thirds_threshold_counts_weight_not_members(network):
    _commits_exactly_when_the_threshold_is_reached(network, approve_first=1)


def test_votes_carry_the_voters_seat_weight(network):
    c, v = network.coordinator, network.validators
    round_id, weights = _proposed(network)
    # the lightest seat: at most a quarter of the weight, so its "no" alone cannot put two
    # thirds out of reach and reject the proposal (which would reset the tally to zero)
    voter = min(v, key=lambda member: weights[member.address])
    assert sum(weights.values()) - weights[voter.address] >= network.needed(sum(weights.values()))
    c.vote(voter, round_id, False)
    (vote,) = c.votes(round_id)
    assert vote.weight == weights[voter.address] == c.seat_weight(round_id, voter.address)
    assert c.round_info(round_id).rejections == weights[voter.address]


def _approve_all_but_the_last_needed(network, round_id: int, weights: dict[str, int]) -> list:
    """Approve in validator order while the threshold stays unreached; the voters left."""
    c = network.coordinator
    needed, approvals = network.needed(sum(weights.values())), 0
    left = list(network.validators)
    while left and approvals + weights[left[0].address] < needed:
        voter = left.pop(0)
        c.vote(voter, round_id, True)
        approvals += weights[voter.address]
    assert left, "the validators' weights never reach the threshold"
    return left


def test_a_vote_in_the_last_voting_block_counts_and_commits(network):
    c = network.coordinator
    round_id, weights = _proposed(network)
    left = _approve_all_but_the_last_needed(network, round_id, weights)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline)
    result = c.vote(left[0], round_id, True)
    assert result.block_number == deadline
    assert c.round_info(round_id).status is RoundStatus.COMMITTED


def test_finalize_in_the_last_voting_block_reverts_and_the_votes_still_commit(network, reverts):
    c = network.coordinator
    round_id, weights = _proposed(network)
    left = _approve_all_but_the_last_needed(network, round_id, weights)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline)
    # nobody can fail the round while a vote is still valid
    with reverts("CoordinatorNothingToFinalize", round_id, RoundStatus.PROPOSED, deadline):
        c.finalize_round(network.outsider, round_id)
    c.vote(left[0], round_id, True)
    assert c.round_info(round_id).status is RoundStatus.COMMITTED


def test_finalize_in_the_first_block_after_the_vote_deadline_fails_the_round(network, reverts):
    c, v = network.coordinator, network.validators
    round_id, weights = _proposed(network)
    if weights[v[0].address] < network.needed(sum(weights.values())):
        c.vote(v[0], round_id, True)
    deadline = c.round_info(round_id).vote_deadline
    network.next_tx_in_block(deadline + 1)
    c.finalize_round(network.outsider, round_id)
    assert c.round_outcome(round_id).failure_reason is FailureReason.VOTE_TIMEOUT
    with reverts("CoordinatorNoProposal", round_id, RoundStatus.FAILED):
        c.vote(v[1], round_id, True)
