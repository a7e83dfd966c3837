"""FlareCoordinator rounds end to end on eth-tester: commit, timeouts, rejection, committee snapshots."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from flare_chain.chain import FailureReason, RoundStatus, advance_blocks, fund_accounts


def _submit_all(network, round_id, nodes):
    for i, node in enumerate(nodes):
        network.coordinator.submit_update(
            node, round_id, network.cid(f"update {round_id} {i}"), 100 + i, keccak(text=f"manifest {i}")
        )


def test_deployment_sets_owner_threshold_and_minimum_committee(network):
    c = network.coordinator
    assert c.owner() == network.owner.address
    assert c.approval_threshold_bps() == network.threshold_bps
    assert c.min_committee_size() == 2
    assert c.current_round() == 0
    assert c.global_adapter_cid() == network.initial_cid
    assert c.round_info(1).status is RoundStatus.NONE


def test_registration_emits_NodeRegistered_with_first_eligible_round(network):
    regs = {r.node: r for r in network.coordinator.registrations()}
    assert all(
        regs[v.address].validator and regs[v.address].first_eligible_round == 1 for v in network.validators
    )
    assert regs[network.participant.address].validator is False
    assert network.coordinator.is_registered(network.participant.address)
    assert not network.coordinator.is_registered(network.outsider.address)


def test_full_round_commits_the_proposed_global_adapter(network):
    # Prepare
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=10, proposal=5, voting=5)
    opened = c.round_opened(round_id)
    submitters = [*v[:3], network.participant]
    _submit_all(network, round_id, submitters)
    network.next_tx_in_block(opened.submission_deadline + 1)
    new_cid = network.cid("aggregate 1")

    # Execute
    c.propose_aggregate(v[0], round_id, new_cid, [n.address for n in reversed(submitters)])
    for voter in v[:3]:
        c.vote(voter, round_id, True)

    # Assert
    assert opened.global_cid == network.initial_cid and opened.committee_size == 4
    assert opened.proposal_deadline == opened.submission_deadline + 5
    assert opened.vote_deadline == opened.proposal_deadline + 5
    assert c.global_adapter_cid() == new_cid
    info = c.round_info(round_id)
    assert info.status is RoundStatus.COMMITTED
    assert (info.submission_count, info.approvals, info.rejections, info.committee_size) == (4, 3, 0, 4)
    proposal = c.proposal(round_id)
    assert proposal.proposer == v[0].address and proposal.global_cid == new_cid
    assert list(proposal.accepted) == sorted((n.address for n in submitters), key=lambda a: int(a, 16))
    assert proposal.accepted_samples == 100 + 101 + 102 + 103
    assert info.proposal_hash == keccak(encode(["bytes", "address[]"], [new_cid, list(proposal.accepted)]))
    assert info.proposal_hash == c.proposal_record(new_cid, proposal.accepted)
    assert [vote.voter for vote in c.votes(round_id)] == [x.address for x in v[:3]]
    outcome = c.round_outcome(round_id)
    assert outcome.committed and outcome.global_cid == new_cid
    assert (outcome.approvals, outcome.committee_size) == (3, 4)


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
    round_id = network.open_round(submission=3, proposal=2, voting=2)
    _submit_all(network, round_id, network.validators[:2])
    network.next_tx_in_block(c.round_info(round_id).proposal_deadline + 1)

    c.finalize_round(network.outsider, round_id)

    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.NO_PROPOSAL
    assert c.global_adapter_cid() == network.initial_cid


def test_proposal_without_enough_votes_fails_with_VoteTimeout(network):
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=3, proposal=2, voting=3)
    _submit_all(network, round_id, v[:2])
    network.next_tx_in_block(c.round_info(round_id).submission_deadline + 1)
    c.propose_aggregate(v[0], round_id, network.cid("aggregate"), [v[0].address, v[1].address])
    c.vote(v[0], round_id, True)
    advance_blocks(network.w3, c.round_info(round_id).vote_deadline - network.head())

    c.finalize_round(v[3], round_id)

    assert c.round_info(round_id).status is RoundStatus.FAILED
    assert c.round_outcome(round_id).failure_reason is FailureReason.VOTE_TIMEOUT
    assert c.global_adapter_cid() == network.initial_cid


def test_rejections_that_make_threshold_unreachable_fail_with_Rejected(network):
    c, v = network.coordinator, network.validators
    round_id = network.open_round(submission=2, proposal=3, voting=5)
    _submit_all(network, round_id, v[:1])
    network.next_tx_in_block(c.round_info(round_id).submission_deadline + 1)
    c.propose_aggregate(v[1], round_id, network.cid("bad aggregate"), [v[0].address])

    c.vote(v[0], round_id, True)
    c.vote(v[1], round_id, False)
    assert c.round_info(round_id).status is RoundStatus.PROPOSED  # 3 of 4 could still approve
    c.vote(v[2], round_id, False)

    info = c.round_info(round_id)
    assert (info.status, info.approvals, info.rejections) == (RoundStatus.FAILED, 1, 2)
    assert c.round_outcome(round_id).failure_reason is FailureReason.REJECTED
    assert c.global_adapter_cid() == network.initial_cid


def test_next_round_chains_seed_and_starts_from_the_committed_adapter(network):
    c, v = network.coordinator, network.validators
    first = network.open_round(submission=2, proposal=2, voting=5)
    _submit_all(network, first, v[:1])
    network.next_tx_in_block(c.round_info(first).submission_deadline + 1)
    c.propose_aggregate(v[0], first, network.cid("aggregate"), [v[0].address])
    for voter in v[:3]:
        c.vote(voter, first, True)

    prevrandao = network.pending_prevrandao()
    second = network.open_round()

    assert second == first + 1 == c.current_round()
    seed_1, opened_2 = c.round_info(first).seed, c.round_opened(second)
    assert opened_2.seed == keccak(encode(["bytes32", "bytes32"], [seed_1, prevrandao]))
    assert opened_2.global_cid == network.cid("aggregate")


def test_first_seed_chains_from_chain_id_and_contract_address(network):
    c = network.coordinator
    prevrandao = network.pending_prevrandao()
    round_id = network.open_round()
    seed_0 = keccak(encode(["uint256", "address"], [network.w3.eth.chain_id, c.address]))
    assert c.round_info(round_id).seed == keccak(encode(["bytes32", "bytes32"], [seed_0, prevrandao]))


def test_validator_registered_while_a_round_is_open_joins_the_next_committee(network):
    c, late = network.coordinator, network.account("late validator")
    fund_accounts(network.w3, [late], 10**18)
    first = network.open_round(submission=2, proposal=2, voting=2)
    c.register_node(late, validator=True)
    network.next_tx_in_block(c.round_info(first).proposal_deadline + 1)
    c.finalize_round(late, first)

    second = network.open_round()

    assert not c.is_committee_member(first, late.address)
    assert c.is_committee_member(second, late.address)
    assert c.round_info(first).committee_size == 4 and c.round_info(second).committee_size == 5
    assert not c.is_committee_member(second, network.participant.address)
    assert not c.is_committee_member(second + 1, network.validators[0].address)  # not opened yet


def test_submission_costs_at_most_60k_gas(network):
    round_id = network.open_round()
    gas = [
        network.coordinator.submit_update(
            node, round_id, network.cid(f"u{i}"), 1000, keccak(text=f"m{i}")
        ).gas_used
        for i, node in enumerate(network.validators)
    ]
    assert max(gas) <= 60_000, gas
