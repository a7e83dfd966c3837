"""FlareCoordinator rounds end to end on eth-tester: registration, seats, commit, timeouts, rejection."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from flare_chain.chain import FailureReason, RoundStatus, advance_blocks, fund_accounts, public_key_words
from flare_chain.committee import sortition


def _round_where_a_validator_weighs_one(network, **phases):
    """A round, in its claim window, in which some validator draws seat weight exactly 1; (round, that validator).

    Draws are unknown until the submission deadline block exists (the claim seed), so rounds are
    opened with k = 4 (each validator's weight Poisson(≈1): weight 1 for one of the four with
    p ≈ 0.84) and left to fail until one has such a validator (no such round in 20 with p ≈ 10^-16).
    """
    c = network.coordinator
    for _ in range(20):
        round_id = network.open_round(k=4, **phases)
        network.to_claims(round_id)
        for v in network.validators:
            if c.draw_seat(v, round_id).weight == 1:
                return round_id, v
        network.to_proposals(round_id)  # nobody claimed: the round fails for want of weight
        c.finalize_round(network.outsider, round_id)
    raise AssertionError("no validator drew weight 1 in 20 rounds of k = 4")


def _submit_all(network, round_id, nodes):
    for i, node in enumerate(nodes):
        network.coordinator.submit_update(
            node, round_id, network.cid(f"update {round_id} {i}"), 100 + i, keccak(text=f"manifest {i}")
        )


def test_deployment_sets_owner_threshold_minimum_committee_leader_blocks_and_stake(network):
    c = network.coordinator
    assert c.owner() == network.owner.address
    assert c.approval_threshold_bps() == network.threshold_bps
    assert c.min_committee_size() == network.min_committee
    assert c.leader_blocks() == network.leader_blocks
    assert c.min_stake() == network.min_stake
    assert c.current_round() == 0
    assert c.global_adapter_cid() == network.initial_cid
    assert c.round_info(1).status is RoundStatus.NONE


def test_registration_records_stake_key_and_first_eligible_round(network):
    c = network.coordinator
    regs = {r.node: r for r in c.registrations()}
    for v in network.validators:
        reg = regs[v.address]
        assert (reg.stake, reg.first_eligible_round) == (network.member_stake, 1)
        assert reg.public_key == public_key_words(v)
        assert c.node_info(v.address).public_key == reg.public_key
    assert regs[network.participant.address].stake == network.min_stake
    assert c.total_stake() == 4 * network.member_stake + network.min_stake
    assert c.node_count() == 5
    assert c.is_registered(network.participant.address)
    assert not c.is_registered(network.outsider.address)
    assert not c.node_info(network.outsider.address).registered


def test_full_round_commits_the_proposed_global_adapter(network):
    # Prepare
    c, v = network.coordinator, network.validators
    round_id = network.open_round()
    opened = c.round_opened(round_id)
    submitters = [*v[:3], network.participant]
    _submit_all(network, round_id, submitters)
    network.seat(round_id)
    network.to_proposals(round_id)
    leader = network.leader(round_id)
    new_cid = network.cid("aggregate 1")

    weights = network.weights(round_id)
    committee_weight = sum(weights.values())

    # Execute: approve in validator order until the round commits
    c.propose_aggregate(leader, round_id, new_cid, [n.address for n in reversed(submitters)])
    voters = []
    for voter in v:
        if c.round_info(round_id).status is not RoundStatus.PROPOSED:
            break
        c.vote(voter, round_id, True)
        voters.append(voter)
    approvals = sum(weights[x.address] for x in voters)

    # Assert
    assert opened.global_cid == network.initial_cid
    assert (opened.expected_committee_size, opened.eligible_nodes) == (network.expected_size, 5)
    assert opened.total_stake == c.total_stake()
    assert opened.claim_deadline == opened.submission_deadline + 6
    assert opened.proposal_deadline == opened.claim_deadline + 8
    assert opened.vote_deadline == opened.proposal_deadline + 5
    assert c.global_adapter_cid() == new_cid
    info = c.round_info(round_id)
    assert info.status is RoundStatus.COMMITTED
    assert (info.submission_count, info.approvals, info.rejections, info.committee_size) == (4, approvals, 0, 4)
    assert info.committee_weight == committee_weight
    # the last approval is the one that reached the threshold, not an earlier one
    assert approvals >= network.needed(committee_weight) > approvals - weights[voters[-1].address]
    assert sorted(c.committee(round_id)) == sorted(x.address for x in v)
    proposal = c.proposal(round_id)
    assert proposal.proposer == leader.address and proposal.global_cid == new_cid and proposal.rank == 0
    accepted = sorted((n.address for n in submitters), key=lambda a: int(a, 16))
    assert (proposal.accepted_root, proposal.accepted_count) == (keccak(encode(["address[]"], [accepted])), 4)
    samples = {s.node: s.sample_count for s in c.submissions(round_id)}
    assert sum(samples[a] for a in accepted) == 100 + 101 + 102 + 103
    assert info.proposal_hash == keccak(encode(["bytes", "bytes32", "uint32"], [new_cid, proposal.accepted_root, 4]))
    assert info.proposal_hash == c.proposal_record(new_cid, accepted)
    assert [vote.voter for vote in c.votes(round_id)] == [x.address for x in voters]
    outcome = c.round_outcome(round_id)
    assert outcome.committed and outcome.global_cid == new_cid
    assert (outcome.approval_weight, outcome.committee_weight) == (approvals, committee_weight)


def test_seat_claims_record_output_weight_and_score_and_the_leader_has_the_lowest_score(network):
    c = network.coordinator
    round_id = network.open_round()
    network.to_claims(round_id)
    draws = {v.address: c.draw_seat(v, round_id) for v in network.validators}

    results = [c.claim_seat(v, round_id, draws[v.address].proof) for v in network.validators]

    seats = {s.node: s for s in c.seats(round_id)}
    assert {a: s.output for a, s in seats.items()} == {a: d.output for a, d in draws.items()}
    assert all(seats[a].weight == d.weight == c.seat_weight(round_id, a) >= 1 for a, d in draws.items())
    assert all(c.is_committee_member(round_id, a) for a in draws)
    assert not c.is_committee_member(round_id, network.participant.address)
    order = c.proposer_order(round_id)
    scores = [c.contract.functions.leaderScore(seats[a].output, seats[a].weight).call() for a in order]
    assert scores == sorted(scores) == [sortition.leader_score(seats[a].output, seats[a].weight) for a in order]
    assert scores == [seats[a].leader_score for a in order]
    assert c.leader(round_id) == order[0]
    assert c.sortition_info(round_id).seats == 4 == c.round_info(round_id).committee_size
    assert c.sortition_info(round_id).weight == sum(d.weight for d in draws.values()) == c.round_info(
        round_id).committee_weight
    assert [s.tx_hash for s in c.seats(round_id)] == [r.tx_hash for r in results]


def test_vrf_input_and_seat_weights_match_the_python_sortition(network):
    from flare_chain.committee import sortition

    c = network.coordinator
    round_id = network.open_round(k=3)
    info = c.sortition_info(round_id)
    network.to_claims(round_id)
    advance_blocks(network.w3, 1)  # the view runs at the latest block, which must be past the deadline
    alpha = sortition.vrf_alpha(network.w3.eth.chain_id, c.address, round_id, c.claim_seed(round_id))

    assert c.vrf_input(round_id) == alpha and len(alpha) == sortition.ALPHA_LEN
    for node in [*network.validators, network.participant]:
        stake = c.node_info(node.address).stake
        draw = c.draw_seat(node, round_id)
        expected = sortition.seat_weight(draw.output, 3, stake, info.total_stake)
        assert c.seat_weight_of(round_id, node.address, draw.output) == expected == draw.weight
    assert c.seat_weight_of(round_id, network.outsider.address, b"\xff" * 32) == 0


def test_submissions_are_stored_as_hash_and_sample_count_and_logged_in_full(network):
    c, node = network.coordinator, network.validators[1]
    round_id = network.open_round()
    update_cid, manifest = network.cid("update"), keccak(text="manifest")

    c.submit_update(node, round_id, update_cid, 4242, manifest)

    (submission,) = c.submissions(round_id)
    assert (submission.node, submission.cid, submission.sample_count) == (node.address, update_cid, 4242)
    assert submission.manifest_hash == manifest
    digest = keccak(encode(["bytes", "uint64", "bytes32"], [update_cid, 4242, manifest]))
    expected = digest[:24] + (4242).to_bytes(8, "big")
    assert c.submission_hash(round_id, node.address) == expected
    assert c.submission_record(update_cid, 4242, manifest) == expected
    assert c.submission_hash(round_id, network.validators[2].address) == bytes(32)


def test_round_without_proposal_fails_with_NoProposal_and_keeps_previous_adapter(network):
    c = network.coordinator
    round_id = network.open_round(submission=3, claim=4, proposal=2, voting=2)
    _submit_all(network, round_id, network.validators[:2])
    network.seat(round_id)
    network.next_tx_in_block(c.round_info(round_id).proposal_deadline + 1)

    c.finalize_round(network.outsider, round_id)

    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.NO_PROPOSAL
    assert c.global_adapter_cid() == network.initial_cid


def test_round_with_fewer_seats_than_the_minimum_fails_safely_and_keeps_previous_adapter(network, reverts):
    c = network.coordinator
    round_id, lonely = _round_where_a_validator_weighs_one(network, submission=3, claim=3, proposal=5, voting=5)
    network.seat(round_id, [lonely])  # one seat of weight 1, minimum two (the contract never looks up submissions)
    network.to_proposals(round_id)
    with reverts("CoordinatorCommitteeTooSmall", round_id, 1, network.min_committee):
        c.propose_aggregate(lonely, round_id, network.cid("lonely"), [lonely.address])

    c.finalize_round(network.outsider, round_id)

    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.COMMITTEE_TOO_SMALL
    assert c.global_adapter_cid() == network.initial_cid
    assert network.open_round() == round_id + 1  # the next round opens as usual


def test_proposal_without_enough_votes_fails_with_VoteTimeout(network):
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=3, claim=4, proposal=3, voting=3)
    _submit_all(network, round_id, v[:2])
    network.seat(round_id)
    network.to_proposals(round_id)
    c.propose_aggregate(
        network.leader(round_id), round_id, network.cid("aggregate"), [v[0].address, v[1].address]
    )
    c.vote(v[0], round_id, True)
    advance_blocks(network.w3, c.round_info(round_id).vote_deadline - network.head())

    c.finalize_round(v[3], round_id)

    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.VOTE_TIMEOUT
    assert c.global_adapter_cid() == network.initial_cid


def test_a_round_fails_with_Rejected_once_every_proposer_rank_was_voted_down(network):
    # Four seats: ranks 0..3 each propose once (the contract's fallback) and each proposal is voted
    # down by the rejections that put the threshold out of reach; the fourth rejection ends the round.
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, claim=4, proposal=3, voting=5)
    _submit_all(network, round_id, v[:1])
    network.seat(round_id)
    network.to_proposals(round_id)
    weights = network.weights(round_id)
    total = sum(weights.values())
    order = c.proposer_order(round_id)
    assert len(order) == len(v) == sortition.PROPOSER_RANKS

    for rank, proposer in enumerate(order):
        c.propose_aggregate(network.by_address(proposer), round_id, network.cid(f"bad aggregate {rank}"),
                            [v[0].address])
        rejections = 0
        for voter in v:
            c.vote(voter, round_id, False)
            rejections += weights[voter.address]
            if total - rejections < network.needed(total):
                break
            assert c.round_info(round_id).status is RoundStatus.PROPOSED  # the rest could still approve
        info = c.round_info(round_id)
        if rank < len(order) - 1:
            assert (info.status, info.rejected_proposals, info.first_rank) == (RoundStatus.OPEN, rank + 1, rank + 1)
            assert (info.approvals, info.rejections) == (0, 0)  # the next proposal is voted on afresh

    info = c.round_info(round_id)
    assert (info.status, info.approvals, info.rejections) == (RoundStatus.FAILED, 0, rejections)
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED
    assert [r.rejected_rank for r in c.proposal_rejections(round_id)] == [0, 1, 2]
    assert c.global_adapter_cid() == network.initial_cid


def test_approval_threshold_counts_seated_weight_only(network):
    # Three of four registered members seated: the threshold is over their weight alone.
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, claim=4, proposal=3, voting=6)
    _submit_all(network, round_id, v[:1])
    network.seat(round_id, v[:3])
    network.to_proposals(round_id)
    c.propose_aggregate(network.leader(round_id), round_id, network.cid("aggregate"), [v[0].address])
    weights = network.weights(round_id)
    total = sum(weights.values())
    assert set(weights) == {x.address for x in v[:3]}

    approvals = 0
    for voter in v[:3]:
        c.vote(voter, round_id, True)
        approvals += weights[voter.address]
        if approvals >= network.needed(total):
            break
        assert c.round_info(round_id).status is RoundStatus.PROPOSED

    outcome = c.round_outcome(round_id)
    assert outcome.committed and (outcome.approval_weight, outcome.committee_weight) == (approvals, total)


def test_next_round_chains_seed_and_starts_from_the_committed_adapter(network):
    c, v = network.coordinator, network.validators
    first = network.open_round(submission=2, claim=4, proposal=3, voting=5)
    _submit_all(network, first, v[:1])
    network.seat(first)
    network.to_proposals(first)
    c.propose_aggregate(network.leader(first), first, network.cid("aggregate"), [v[0].address])
    for voter in v:
        if c.round_info(first).status is RoundStatus.PROPOSED:
            c.vote(voter, first, True)

    prevrandao = network.pending_prevrandao()
    second = network.open_round()

    assert second == first + 1 == c.current_round()
    seed_1, opened_2 = c.round_info(first).seed, c.round_opened(second)
    assert opened_2.seed == keccak(encode(["bytes32", "bytes32"], [seed_1, prevrandao]))
    assert opened_2.global_cid == network.cid("aggregate")
    network.to_claims(second)
    advance_blocks(network.w3, 1)  # the view runs at the latest block, which must be past the deadline
    assert c.vrf_input(second) != sortition.vrf_alpha(network.w3.eth.chain_id, c.address, second, c.claim_seed(first))


def test_first_seed_chains_from_chain_id_and_contract_address(network):
    c = network.coordinator
    prevrandao = network.pending_prevrandao()
    round_id = network.open_round()
    seed_0 = keccak(encode(["uint256", "address"], [network.w3.eth.chain_id, c.address]))
    assert c.round_info(round_id).seed == keccak(encode(["bytes32", "bytes32"], [seed_0, prevrandao]))


def test_node_registered_while_a_round_is_open_is_eligible_from_the_next_round(network, reverts):
    c, late = network.coordinator, network.account("late node")
    fund_accounts(network.w3, [late], 10**19)
    first = network.open_round(submission=2, claim=4, proposal=2, voting=2)
    c.register_node(late, network.member_stake)
    assert c.node_info(late.address).first_eligible_round == first + 1
    network.to_claims(first)
    with reverts("CoordinatorNotEligible", first, late.address, first + 1, 0):
        c.claim_seat(late, first, c.draw_seat(late, first).proof)
    assert c.seat_weight_of(first, late.address, b"\xff" * 32) == 0
    network.next_tx_in_block(c.round_info(first).proposal_deadline + 1)
    c.finalize_round(late, first)

    second = network.open_round()

    assert c.sortition_info(first).eligible_nodes == 5 and c.sortition_info(second).eligible_nodes == 6
    assert c.sortition_info(second).total_stake == c.sortition_info(first).total_stake + network.member_stake
    network.seat(second, [late])
    assert c.is_committee_member(second, late.address)


def test_submission_costs_at_most_60k_gas_and_a_seat_claim_at_most_120k(network):
    # k = 8: ordinary weights (Poisson(2) each). Seeds change every run, and with them the number of
    # hash-to-curve tries (1.4k gas each, geometric), so the bound is the README's target, not one run's figure.
    round_id = network.open_round(k=8)
    submit_gas = [
        network.coordinator.submit_update(
            node, round_id, network.cid(f"u{i}"), 1000, keccak(text=f"m{i}")
        ).gas_used
        for i, node in enumerate(network.validators)
    ]
    network.to_claims(round_id)
    draws = [(v, network.coordinator.draw_seat(v, round_id)) for v in network.validators]
    claim_gas = [network.coordinator.claim_seat(v, round_id, draw.proof).gas_used for v, draw in draws if draw.selected]
    assert max(submit_gas) <= 60_000, submit_gas
    assert claim_gas and max(claim_gas) <= 120_000, claim_gas
