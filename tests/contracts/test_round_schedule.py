"""RoundSchedule agrees with FlareCoordinator: the contract's own errors state the turns and deadlines."""

from __future__ import annotations

from flare_chain.chain import RoundStatus
from flare_chain.committee import sortition, vrf
from flare_chain.protocol import RoundSchedule

MANIFEST = b"\x00" * 32


def test_proposer_turns_are_the_ones_the_contract_enforces(network, reverts):
    # Prepare: four seated validators, at the leader's first block.
    c = network.coordinator
    round_id = network.seated_round()
    schedule = RoundSchedule.read(c, round_id)
    order = c.proposer_order(round_id)
    # Execute / Assert: every later rank is refused, and the contract names the turn the schedule gives.
    for rank in range(1, len(order)):
        member = network.by_address(order[rank])
        assert not schedule.may_propose(rank, network.head() + 1)
        with reverts("CoordinatorNotLeader", round_id, member.address, rank, schedule.proposer_turn(rank)):
            c.propose_aggregate(member, round_id, network.cid("early"), [network.validators[0].address])


def test_the_second_rank_proposes_in_the_first_block_the_schedule_allows(network):
    c = network.coordinator
    round_id = network.open_round()
    c.submit_update(network.validators[0], round_id, network.cid("u0"), 5, MANIFEST)
    network.seat(round_id)
    schedule = RoundSchedule.read(c, round_id)
    second = network.by_address(c.proposer_order(round_id)[1])
    network.next_tx_in_block(schedule.proposer_turn(1))
    assert schedule.may_propose(1, network.head() + 1)
    c.propose_aggregate(second, round_id, network.cid("agg"), [network.validators[0].address])
    assert c.round_info(round_id).status == RoundStatus.PROPOSED


def _assert_finalize_agrees(network, reverts, round_id):
    """The block before ``finalizable_from`` reverts naming the same deadline; that block succeeds."""
    c = network.coordinator
    info = c.round_info(round_id)
    schedule = RoundSchedule.for_round(info, c)
    first = schedule.finalizable_from(info.status, info.committee_weight)
    network.next_tx_in_block(first - 1)
    assert not schedule.is_stuck(info.status, info.committee_weight, network.head() + 1)
    with reverts("CoordinatorNothingToFinalize", round_id, info.status, first - 1):
        c.finalize_round(network.outsider, round_id)
    network.next_tx_in_block(first)  # a reverted call mines nothing
    assert schedule.is_stuck(info.status, info.committee_weight, network.head() + 1)
    c.finalize_round(network.outsider, round_id)
    assert c.round_info(round_id).status == RoundStatus.FAILED


def test_stuck_after_the_claim_deadline_when_the_committee_is_too_small(network, reverts):
    round_id = network.open_round()
    network.seat(round_id, network.validators[:1])  # one seat, two needed
    _assert_finalize_agrees(network, reverts, round_id)


def test_stuck_after_the_proposal_deadline_when_nobody_proposed(network, reverts):
    round_id = network.seated_round()
    _assert_finalize_agrees(network, reverts, round_id)


def test_stuck_after_the_vote_deadline_without_quorum(network, reverts):
    c = network.coordinator
    round_id = network.open_round()
    c.submit_update(network.validators[0], round_id, network.cid("u0"), 5, MANIFEST)
    network.seat(round_id)
    network.to_proposals(round_id)
    c.propose_aggregate(network.leader(round_id), round_id, network.cid("agg"), [network.validators[0].address])
    _assert_finalize_agrees(network, reverts, round_id)


def test_claim_window_matches_the_contract(network, reverts):
    c = network.coordinator
    round_id = network.open_round()
    schedule = RoundSchedule.read(c, round_id)
    member = network.validators[0]
    network.next_tx_in_block(schedule.submission_deadline)
    assert not schedule.accepts_claim(network.head() + 1)
    # no proof can be drawn yet (the claim seed needs the deadline block), so try one on the round seed
    alpha = sortition.vrf_alpha(network.w3.eth.chain_id, c.address, round_id, c.round_info(round_id).seed)
    early = vrf.compute_fast_verify_params(vrf.public_key(bytes(member.key)), vrf.prove(bytes(member.key), alpha),
                                           alpha)
    with reverts("CoordinatorOutsideClaimWindow", round_id, schedule.submission_deadline + 1,
                 schedule.claim_deadline):
        c.claim_seat_with_params(member, round_id, early)
    network.next_tx_in_block(schedule.submission_deadline + 1)
    assert schedule.accepts_claim(network.head() + 1)
    c.claim_seat(member, round_id, c.draw_seat(member, round_id).proof)
    late = network.validators[1]
    network.next_tx_in_block(schedule.claim_deadline + 1)
    assert not schedule.accepts_claim(network.head() + 1)
    with reverts("CoordinatorOutsideClaimWindow", round_id, schedule.submission_deadline + 1,
                 schedule.claim_deadline):
        c.claim_seat(late, round_id, c.draw_seat(late, round_id).proof)
