"""The fallback proposer: a rejected proposal hands the round to the next rank, within bounds.

Without the fallback a single rejected proposal (a junk one from a bought leader, or an honest
one voted down by a vocal minority) ended the round; with it the next-ranked member proposes
in fresh windows, votes on the rejected proposal can never count on the next one, and ranks
that already had their turn (or lie past ``PROPOSER_RANKS``) cannot propose.
"""

from __future__ import annotations

from eth_utils import keccak

from flare_chain.chain import FailureReason, RoundStatus, advance_blocks
from flare_chain.committee import sortition
from flare_chain.protocol import RoundSchedule


def _reject(network, round_id):
    """Vote the current proposal down with validators in turn until the threshold is out of reach."""
    c = network.coordinator
    for voter in network.validators:
        if c.round_info(round_id).status is not RoundStatus.PROPOSED:
            return
        c.vote(voter, round_id, False)


def _round_with_a_rejected_leader(network, *, proposal=3, voting=5):
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, claim=4, proposal=proposal, voting=voting)
    c.submit_update(v[0], round_id, network.cid("update"), 100, keccak(text="manifest"))
    network.seat(round_id)
    network.to_proposals(round_id)
    order = [network.by_address(a) for a in c.proposer_order(round_id)]
    c.propose_aggregate(order[0], round_id, network.cid("junk"), [v[0].address])
    _reject(network, round_id)
    return round_id, order


def test_after_a_rejection_the_next_rank_proposes_in_fresh_windows_and_can_commit(network):
    c, v = network.coordinator, network.validators
    round_id, order = _round_with_a_rejected_leader(network, proposal=3, voting=5)
    rejected_in = network.head()
    info = c.round_info(round_id)
    assert info.status is RoundStatus.OPEN
    assert (info.turns_start, info.first_rank, info.rejected_proposals) == (rejected_in + 1, 1, 1)
    assert (info.proposal_deadline, info.vote_deadline) == (rejected_in + 3, rejected_in + 3 + 5)
    [rejection] = c.proposal_rejections(round_id)
    assert (rejection.rejected_rank, rejection.next_rank, rejection.turns_start) == (0, 1, rejected_in + 1)

    c.propose_aggregate(order[1], round_id, network.cid("good"), [v[0].address])
    assert c.proposal(round_id).rank == 1
    assert [p.rank for p in c.proposals(round_id)] == [0, 1]
    network.approve_until_final(round_id)
    assert c.round_info(round_id).status is RoundStatus.COMMITTED
    assert c.global_adapter_cid() == network.cid("good")


def test_the_rejected_leader_cannot_propose_again(network, reverts):
    c, v = network.coordinator, network.validators
    round_id, order = _round_with_a_rejected_leader(network)
    with reverts("CoordinatorRankHasNoTurn", round_id, order[0].address, 0, 1, sortition.PROPOSER_RANKS - 1):
        c.propose_aggregate(order[0], round_id, network.cid("junk again"), [v[0].address])


def test_a_later_rank_waits_for_its_turn_after_a_rejection(network, reverts):
    c, v = network.coordinator, network.validators
    round_id, order = _round_with_a_rejected_leader(network, proposal=12)
    info = c.round_info(round_id)
    turn = info.turns_start + network.leader_blocks
    with reverts("CoordinatorNotLeader", round_id, order[2].address, 2, turn):
        c.propose_aggregate(order[2], round_id, network.cid("early"), [v[0].address])
    network.next_tx_in_block(turn)
    c.propose_aggregate(order[2], round_id, network.cid("rank 2, rank 1 silent"), [v[0].address])
    assert c.proposal(round_id).rank == 2


def test_a_vote_cast_for_the_rejected_proposal_never_counts_on_the_next(network, reverts):
    c, v = network.coordinator, network.validators
    round_id, order = _round_with_a_rejected_leader(network)
    c.propose_aggregate(order[1], round_id, network.cid("second"), [v[0].address])
    with reverts("CoordinatorVoteOnOtherProposal", round_id, 0, 1):
        c.vote(v[0], round_id, False, attempt=0)
    assert c.round_info(round_id).rejections == 0


def test_members_vote_again_on_the_fallback_proposal(network):
    # Everyone who rejected the first proposal votes again: votes are per proposal.
    c, v = network.coordinator, network.validators
    round_id, order = _round_with_a_rejected_leader(network)
    c.propose_aggregate(order[1], round_id, network.cid("second"), [v[0].address])
    assert not any(c.has_voted(round_id, m.address) for m in v)
    network.approve_until_final(round_id)
    assert c.round_info(round_id).status is RoundStatus.COMMITTED


def test_a_silent_fallback_fails_the_round_at_its_own_proposal_deadline(network, reverts):
    c = network.coordinator
    round_id, _ = _round_with_a_rejected_leader(network, proposal=3)
    info = c.round_info(round_id)
    schedule = RoundSchedule.for_round(info, c)
    assert schedule.finalizable_from(info.status, info.committee_weight) == info.proposal_deadline + 1
    with reverts("CoordinatorNothingToFinalize", round_id, RoundStatus.OPEN, info.proposal_deadline):
        c.finalize_round(network.outsider, round_id)
    advance_blocks(network.w3, info.proposal_deadline - network.head())
    c.finalize_round(network.outsider, round_id)
    assert c.round_outcome(round_id).failure_reason is FailureReason.NO_PROPOSAL


def test_the_proposer_scores_slot_holds_the_lowest_scores_in_order(network):
    c = network.coordinator
    round_id = network.seated_round()
    scores = sorted(s.leader_score for s in c.seats(round_id))
    stored = c.proposer_scores(round_id)
    assert stored == (scores + [2**64 - 1] * sortition.PROPOSER_RANKS)[: sortition.PROPOSER_RANKS]
    assert c._view("PROPOSER_RANKS") == sortition.PROPOSER_RANKS
