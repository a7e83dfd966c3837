"""Every FlareCoordinator guard reverts with its exact custom error and arguments."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from flare_chain.chain import ErrorDecoder, RoundStatus, deploy_coordinator, load_artifact, public_key_words
from flare_chain.chain.coordinator import DEFAULT_MAX_SAMPLE_COUNT
from flare_chain.chain.transactions import send_transaction
from flare_chain.errors import ConfigError
from flare_chain.protocol import accepted_root
from flare_chain.protocol.accepted import list_hash

MANIFEST = keccak(text="manifest")


def _by_address(accounts):
    return sorted(accounts, key=lambda a: int(a.address, 16))


@pytest.fixture
def open_round(network):
    """Round 1 open (10/6/8/5 blocks) with submissions from validators 0 and 1."""
    round_id = network.open_round(submission=10, claim=6, proposal=8, voting=5)
    for i, node in enumerate(network.validators[:2]):
        network.coordinator.submit_update(node, round_id, network.cid(f"u{i}"), 10 + i, MANIFEST)
    return round_id


@pytest.fixture
def proposed_round(network, open_round):
    """Round 1 with all four validators seated and the leader's proposal accepting validators 0 and 1."""
    c = network.coordinator
    network.seat(open_round)
    network.to_proposals(open_round)
    c.propose_aggregate(
        network.leader(open_round),
        open_round,
        network.cid("aggregate"),
        [v.address for v in network.validators[:2]],
    )
    return open_round


# ---------------------------------------------------------------- deployment and owner calls


def _deploy_raw(network, *args):
    artifact = load_artifact("FlareCoordinator")
    factory = network.w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    return send_transaction(
        network.w3,
        network.owner,
        to=None,
        label="deploy",
        data=factory.constructor(*args).data_in_transaction,
        decoder=ErrorDecoder(artifact.abi),
    )


@pytest.mark.parametrize(
    ("args", "error"),
    [
        ((0, 2, 1, 1, 1), ("CoordinatorInvalidThreshold", 0)),
        ((10_001, 2, 1, 1, 1), ("CoordinatorInvalidThreshold", 10_001)),
        ((6000, 0, 1, 1, 1), ("CoordinatorInvalidMinCommitteeSize", 0)),
        ((6000, 1001, 1, 1, 1), ("CoordinatorInvalidMinCommitteeSize", 1001)),
        # One seat must never commit alone: min committee × threshold must exceed 10000 bps.
        ((5000, 2, 1, 1, 1), ("CoordinatorOneSeatCommits", 5000, 2)),
        ((10_000, 1, 1, 1, 1), ("CoordinatorOneSeatCommits", 10_000, 1)),
        ((3333, 3, 1, 1, 1), ("CoordinatorOneSeatCommits", 3333, 3)),
        ((6000, 2, 0, 1, 1), ("CoordinatorInvalidLeaderBlocks", 0)),
        ((6000, 2, 100_801, 1, 1), ("CoordinatorInvalidLeaderBlocks", 100_801)),
        ((6000, 2, 1, 0, 1), ("CoordinatorInvalidMinStake", 0)),
        ((6000, 2, 1, 2**96, 1), ("CoordinatorInvalidMinStake", 2**96)),
        ((6000, 2, 1, 1, 0), ("CoordinatorInvalidMaxSampleCount", 0)),
    ],
)
def test_constructor_rejects_bad_parameters_with_custom_errors(network, reverts, args, error):
    with reverts(*error):
        _deploy_raw(network, *args)


# The largest minimum committee (1000 seats, the expected-size cap) is a bound too: a `>=` there refused it
@pytest.mark.parametrize("args", [(5001, 2, 1, 1, 1), (3334, 3, 100_800, 2**96 - 1, 2**64 - 1), (10_000, 2, 1, 1, 1),
                                  (6000, 1000, 1, 1, 1)])
def test_constructor_accepts_parameters_at_their_bounds(network, args):
    assert _deploy_raw(network, *args).receipt["contractAddress"] is not None


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"approval_threshold_bps": 0}, "approval_threshold_bps"),
        ({"min_committee_size": 0}, "min_committee_size"),
        ({"leader_blocks": 0}, "leader_blocks"),
        ({"min_stake_wei": 0}, "min_stake_wei"),
    ],
)
def test_deploy_helper_validates_parameters_before_sending(network, kwargs, name):
    with pytest.raises(ConfigError, match=name):
        deploy_coordinator(network.w3, network.owner, **kwargs)


# ---------------------------------------------------------------- registration


def test_second_registration_reverts_with_CoordinatorAlreadyRegistered(network, reverts):
    node = network.validators[0]
    with reverts("CoordinatorAlreadyRegistered", node.address):
        network.coordinator.register_node(node, network.member_stake)


def test_registration_below_min_stake_reverts_with_CoordinatorStakeTooLow(network, reverts):
    with reverts("CoordinatorStakeTooLow", network.min_stake - 1, network.min_stake):
        network.coordinator.register_node(network.outsider, network.min_stake - 1)
    assert not network.coordinator.is_registered(network.outsider.address)


def test_registration_with_another_accounts_key_reverts_with_CoordinatorKeyNotSender(network, reverts):
    other = network.validators[0]
    with reverts("CoordinatorKeyNotSender", other.address, network.outsider.address):
        network.coordinator.register_node(network.outsider, network.min_stake, public_key_words(other))


def test_client_refuses_a_public_key_that_is_not_a_curve_point(network):
    with pytest.raises(ConfigError):
        network.coordinator.register_node(network.outsider, network.min_stake, (1, 1))


# ---------------------------------------------------------------- owner calls


def test_second_adapter_initialization_reverts_with_CoordinatorGlobalAdapterAlreadyInitialized(
    network, reverts
):
    with reverts("CoordinatorGlobalAdapterAlreadyInitialized", network.initial_cid):
        network.coordinator.initialize_global_adapter(network.owner, network.cid("other"))


@pytest.mark.parametrize("call", ["initialize", "open"])
def test_owner_calls_from_others_revert_with_OwnableUnauthorizedAccount(network, reverts, call):
    intruder = network.validators[0]
    with reverts("OwnableUnauthorizedAccount", intruder.address):
        if call == "initialize":
            network.coordinator.initialize_global_adapter(intruder, network.cid("evil"))
        else:
            network.coordinator.open_round(intruder, 5, 5, 5, 5)


def test_open_before_adapter_initialization_reverts_with_CoordinatorGlobalAdapterNotInitialized(
    network, reverts
):
    fresh = deploy_coordinator(network.w3, network.owner, min_committee_size=2, min_stake_wei=1)
    fresh.register_node(network.validators[0], 1)
    with reverts("CoordinatorGlobalAdapterNotInitialized"):
        fresh.open_round(network.owner, 5, 5, 5, 5)


def test_open_with_fewer_nodes_than_the_minimum_committee_reverts_with_CoordinatorTooFewNodes(
    network, reverts
):
    fresh = deploy_coordinator(network.w3, network.owner, min_committee_size=2, min_stake_wei=1)
    fresh.register_node(network.validators[0], 1)
    fresh.initialize_global_adapter(network.owner, network.initial_cid)
    with reverts("CoordinatorTooFewNodes", 1, 2):
        fresh.open_round(network.owner, 5, 5, 5, 5, expected_committee_size=2)


def test_expected_size_below_the_minimum_committee_reverts_with_CoordinatorInvalidExpectedCommitteeSize(
    network, reverts
):
    with reverts("CoordinatorInvalidExpectedCommitteeSize", 1, network.min_committee, 1000):
        network.open_round(k=1)


def test_expected_size_above_the_bound_reverts_with_CoordinatorInvalidExpectedCommitteeSize(network, reverts):
    with reverts("CoordinatorInvalidExpectedCommitteeSize", 1001, network.min_committee, 1000):
        network.open_round(k=1001)


@pytest.mark.parametrize(("durations", "phase", "blocks", "least", "most"), [
    ((0, 5, 5, 5), 0, 0, 1, 100_800), ((5, 0, 5, 5), 1, 0, 3, 256), ((5, 5, 0, 5), 2, 0, 1, 100_800),
    ((5, 5, 5, 0), 3, 0, 1, 100_800),
    # A claim window of one or two blocks would let a node that computed its proof in advance sit alone.
    ((5, 2, 5, 5), 1, 2, 3, 256),
    # Claims past 256 blocks after the submission deadline could not read its block hash (the claim seed).
    ((5, 257, 5, 5), 1, 257, 3, 256),
    # Phases of 2^61 blocks would freeze finalizeRound and every later round (and the stakes) for good.
    ((2**61, 5, 5, 5), 0, 2**61, 1, 100_800), ((5, 5, 5, 100_801), 3, 100_801, 1, 100_800),
    ((5, 5, 2**63, 5), 2, 2**63, 1, 100_800),
])
def test_phase_length_out_of_bounds_reverts_with_CoordinatorPhaseOutOfBounds(
    network, reverts, durations, phase, blocks, least, most
):
    with reverts("CoordinatorPhaseOutOfBounds", phase, blocks, least, most):
        network.coordinator.open_round(network.owner, *durations)


def test_phases_at_their_bounds_open_a_round(network):
    network.coordinator.open_round(network.owner, 1, 3, 1, 100_800)
    assert network.coordinator.round_info(1).vote_deadline == network.head() + 1 + 3 + 1 + 100_800


def test_the_longest_claim_window_opens_a_round(network):
    network.coordinator.open_round(network.owner, 1, 256, 1, 1)
    info = network.coordinator.round_info(1)
    assert info.claim_deadline - info.submission_deadline == 256


def test_open_while_previous_round_open_reverts_with_CoordinatorPreviousRoundNotFinalized(
    network, reverts, open_round
):
    with reverts("CoordinatorPreviousRoundNotFinalized", open_round, RoundStatus.OPEN):
        network.open_round()


def test_open_while_previous_round_proposed_reverts_with_CoordinatorPreviousRoundNotFinalized(
    network, reverts, proposed_round
):
    with reverts("CoordinatorPreviousRoundNotFinalized", proposed_round, RoundStatus.PROPOSED):
        network.open_round()


# ---------------------------------------------------------------- submissions


def test_submission_from_unregistered_node_reverts_with_CoordinatorNotRegistered(
    network, reverts, open_round
):
    with reverts("CoordinatorNotRegistered", network.outsider.address):
        network.coordinator.submit_update(network.outsider, open_round, network.cid("x"), 1, MANIFEST)


def test_submission_to_unopened_round_reverts_with_CoordinatorRoundNotOpen(network, reverts, open_round):
    with reverts("CoordinatorRoundNotOpen", open_round + 1, RoundStatus.NONE):
        network.coordinator.submit_update(
            network.validators[2], open_round + 1, network.cid("x"), 1, MANIFEST
        )


def test_submission_to_failed_round_reverts_with_CoordinatorRoundNotOpen(network, reverts, open_round):
    c = network.coordinator
    network.next_tx_in_block(c.round_info(open_round).claim_deadline + 1)
    c.finalize_round(network.outsider, open_round)  # no seats: CommitteeTooSmall
    with reverts("CoordinatorRoundNotOpen", open_round, RoundStatus.FAILED):
        c.submit_update(network.validators[2], open_round, network.cid("x"), 1, MANIFEST)


def test_late_submission_reverts_with_CoordinatorLateSubmission(network, reverts, open_round):
    c = network.coordinator
    deadline = c.round_info(open_round).submission_deadline
    network.next_tx_in_block(deadline)
    c.submit_update(network.validators[2], open_round, network.cid("just in time"), 1, MANIFEST)  # inclusive
    with reverts("CoordinatorLateSubmission", open_round, deadline):
        c.submit_update(network.validators[3], open_round, network.cid("late"), 1, MANIFEST)


def test_late_submission_after_proposal_reverts_with_CoordinatorLateSubmission(
    network, reverts, proposed_round
):
    deadline = network.coordinator.round_info(proposed_round).submission_deadline
    with reverts("CoordinatorLateSubmission", proposed_round, deadline):
        network.coordinator.submit_update(
            network.validators[3], proposed_round, network.cid("late"), 1, MANIFEST
        )


def test_second_submission_reverts_with_CoordinatorDuplicateSubmission(network, reverts, open_round):
    node = network.validators[0]
    with reverts("CoordinatorDuplicateSubmission", open_round, node.address):
        network.coordinator.submit_update(node, open_round, network.cid("again"), 5, MANIFEST)


def test_zero_sample_count_reverts_with_CoordinatorZeroSampleCount(network, reverts, open_round):
    node = network.validators[2]
    with reverts("CoordinatorZeroSampleCount", open_round, node.address):
        network.coordinator.submit_update(node, open_round, network.cid("empty"), 0, MANIFEST)


@pytest.mark.parametrize("length", [0, 1, 65])
def test_cid_of_bad_length_reverts_with_CoordinatorInvalidCidLength(network, reverts, open_round, length):
    with reverts("CoordinatorInvalidCidLength", length, 2, 64):
        network.coordinator.submit_update(network.validators[2], open_round, b"\x01" * length, 1, MANIFEST)


def test_cid_of_64_bytes_is_accepted(network, open_round):
    network.coordinator.submit_update(network.validators[2], open_round, b"\x01" * 64, 1, MANIFEST)
    assert network.coordinator.submissions(open_round)[-1].cid == b"\x01" * 64


# ---------------------------------------------------------------- proposals


@pytest.fixture
def seated_round(network, open_round):
    """Round 1 with all four validators seated, at the leader's first block."""
    network.seat(open_round)
    network.to_proposals(open_round)
    return open_round


@pytest.mark.parametrize("who", ["participant", "outsider"])
def test_proposal_from_non_member_reverts_with_CoordinatorNotCommitteeMember(
    network, reverts, seated_round, who
):
    proposer = getattr(network, who)
    with reverts("CoordinatorNotCommitteeMember", seated_round, proposer.address):
        network.coordinator.propose_aggregate(
            proposer, seated_round, network.cid("a"), [network.validators[0].address]
        )


def test_proposal_before_claim_deadline_reverts_with_CoordinatorClaimsStillOpen(network, reverts, open_round):
    c = network.coordinator
    network.seat(open_round)
    deadline = c.round_info(open_round).claim_deadline
    network.next_tx_in_block(deadline)
    with reverts("CoordinatorClaimsStillOpen", open_round, deadline):
        c.propose_aggregate(
            network.leader(open_round), open_round, network.cid("a"), [network.validators[0].address]
        )


def test_proposal_after_proposal_deadline_reverts_with_CoordinatorProposalClosed(
    network, reverts, seated_round
):
    c = network.coordinator
    deadline = c.round_info(seated_round).proposal_deadline
    network.next_tx_in_block(deadline + 1)
    with reverts("CoordinatorProposalClosed", seated_round, deadline):
        c.propose_aggregate(
            network.leader(seated_round), seated_round, network.cid("a"), [network.validators[0].address]
        )


def test_proposal_in_the_last_block_of_the_proposal_window_is_accepted(network, seated_round):
    """The window is inclusive: the leader may still propose in ``proposalDeadline`` itself."""
    c = network.coordinator
    deadline = c.round_info(seated_round).proposal_deadline
    network.next_tx_in_block(deadline)
    c.propose_aggregate(
        network.leader(seated_round), seated_round, network.cid("a"), [network.validators[0].address]
    )
    assert c.round_info(seated_round).status == RoundStatus.PROPOSED


def test_proposal_with_empty_accepted_list_reverts_with_CoordinatorEmptyAcceptedSet(
    network, reverts, seated_round
):
    with reverts("CoordinatorEmptyAcceptedSet", seated_round):
        network.coordinator.propose_aggregate(
            network.leader(seated_round), seated_round, network.cid("a"), []
        )


def test_client_refuses_duplicate_accepted_addresses_before_sending(network, seated_round):
    node = network.validators[0].address
    with pytest.raises(ConfigError, match="twice"):
        network.coordinator.propose_aggregate(
            network.leader(seated_round), seated_round, network.cid("a"), [node, node.lower()]
        )


def test_a_proposal_puts_only_the_accepted_root_and_count_on_chain(network, seated_round):
    # The list itself is in the aggregate's manifest on IPFS: the contract keeps keccak(abi.encode(list)) and its
    # length, whose hash (with the CID) is the stored proposal record. Members and the audit hold the list to them.
    c = network.coordinator
    accepted = sorted([network.validators[0].address, network.validators[3].address], key=lambda a: int(a, 16))
    c.propose_aggregate(network.leader(seated_round), seated_round, network.cid("a"), accepted)
    proposal = c.proposal(seated_round)
    assert proposal.accepted is None  # not on chain
    assert (proposal.accepted_root, proposal.accepted_count) == (accepted_root(accepted), 2)
    assert c.accepted_list_hash(accepted) == accepted_root(accepted) == list_hash(accepted)
    assert c.round_info(seated_round).proposal_hash == c.proposal_record(network.cid("a"), accepted)
    assert c.proposal_record(network.cid("a"), accepted[::-1]) != c.proposal_record(network.cid("a"), accepted)


def test_an_unsorted_list_is_hashed_as_given_and_matches_no_canonical_root(network, seated_round):
    # A proposer that skips the client's sorting commits a root no member's canonical list hashes to.
    c = network.coordinator
    low, high = (a.address for a in _by_address(network.validators[:2]))
    c.propose_aggregate(network.leader(seated_round), seated_round, network.cid("a"), [high, low], sort=False)
    proposal = c.proposal(seated_round)
    assert proposal.accepted_root == list_hash([high, low]) != accepted_root([high, low])


def test_second_proposal_reverts_with_CoordinatorRoundNotOpen(network, reverts, proposed_round):
    with reverts("CoordinatorRoundNotOpen", proposed_round, RoundStatus.PROPOSED):
        network.coordinator.propose_aggregate(
            network.leader(proposed_round), proposed_round, network.cid("b"), [network.validators[1].address]
        )


def test_proposal_with_bad_cid_reverts_with_CoordinatorInvalidCidLength(network, reverts, seated_round):
    with reverts("CoordinatorInvalidCidLength", 1, 2, 64):
        network.coordinator.propose_aggregate(
            network.leader(seated_round), seated_round, b"\x01", [network.validators[0].address]
        )


# ---------------------------------------------------------------- votes and finalization


def test_vote_without_proposal_reverts_with_CoordinatorNoProposal(network, reverts, seated_round):
    with reverts("CoordinatorNoProposal", seated_round, RoundStatus.OPEN):
        network.coordinator.vote(network.validators[0], seated_round, True)


@pytest.mark.parametrize("who", ["participant", "outsider"])
def test_vote_from_non_member_reverts_with_CoordinatorNotCommitteeMember(
    network, reverts, proposed_round, who
):
    voter = getattr(network, who)
    with reverts("CoordinatorNotCommitteeMember", proposed_round, voter.address):
        network.coordinator.vote(voter, proposed_round, True)


def test_second_vote_reverts_with_CoordinatorDuplicateVote(network, reverts, proposed_round):
    voter = network.validators[2]
    network.coordinator.vote(voter, proposed_round, True)
    assert network.coordinator.has_voted(proposed_round, voter.address)
    with reverts("CoordinatorDuplicateVote", proposed_round, voter.address):
        network.coordinator.vote(voter, proposed_round, False)


def test_vote_after_deadline_reverts_with_CoordinatorVoteClosed(network, reverts, proposed_round):
    c = network.coordinator
    deadline = c.round_info(proposed_round).vote_deadline
    network.next_tx_in_block(deadline + 1)
    with reverts("CoordinatorVoteClosed", proposed_round, deadline):
        c.vote(network.validators[0], proposed_round, True)


def test_vote_after_commit_reverts_with_CoordinatorNoProposal(network, reverts, proposed_round):
    c = network.coordinator
    network.approve_until_final(proposed_round)
    with reverts("CoordinatorNoProposal", proposed_round, RoundStatus.COMMITTED):
        c.vote(network.validators[3], proposed_round, True)


def test_finalize_during_claims_reverts_with_CoordinatorNothingToFinalize(network, reverts, open_round):
    c = network.coordinator
    deadline = c.round_info(open_round).claim_deadline
    network.next_tx_in_block(deadline)
    with reverts("CoordinatorNothingToFinalize", open_round, RoundStatus.OPEN, deadline):
        c.finalize_round(network.outsider, open_round)


def test_early_finalize_of_seated_round_reverts_with_CoordinatorNothingToFinalize(
    network, reverts, seated_round
):
    c = network.coordinator
    deadline = c.round_info(seated_round).proposal_deadline
    network.next_tx_in_block(deadline)
    with reverts("CoordinatorNothingToFinalize", seated_round, RoundStatus.OPEN, deadline):
        c.finalize_round(network.outsider, seated_round)


def test_finalize_during_voting_reverts_with_CoordinatorNothingToFinalize(network, reverts, proposed_round):
    deadline = network.coordinator.round_info(proposed_round).vote_deadline
    with reverts("CoordinatorNothingToFinalize", proposed_round, RoundStatus.PROPOSED, deadline):
        network.coordinator.finalize_round(network.outsider, proposed_round)


def test_finalize_of_final_or_unknown_round_reverts_with_CoordinatorNothingToFinalize(
    network, reverts, proposed_round
):
    c = network.coordinator
    network.approve_until_final(proposed_round)
    with reverts("CoordinatorNothingToFinalize", proposed_round, RoundStatus.COMMITTED, 0):
        c.finalize_round(network.outsider, proposed_round)
    with reverts("CoordinatorNothingToFinalize", 7, RoundStatus.NONE, 0):
        c.finalize_round(network.outsider, 7)


def test_phase_bounds_view_states_the_bounds_open_round_enforces(network):
    assert network.coordinator.contract.functions.phaseBounds().call() == [3, 100_800, 1000, 256]


@pytest.mark.parametrize("samples", [DEFAULT_MAX_SAMPLE_COUNT + 1, 2**64 - 1])
def test_sample_count_above_the_cap_reverts_with_CoordinatorSampleCountAboveCap(network, reverts, samples):
    # A node declaring 2^64 − 1 samples would otherwise take all of FedAvg's weight.
    round_id = network.open_round()
    node = network.validators[0]
    with reverts("CoordinatorSampleCountAboveCap", round_id, node.address, samples, DEFAULT_MAX_SAMPLE_COUNT):
        network.coordinator.submit_update(node, round_id, network.cid("inflated"), samples, MANIFEST)
    assert network.coordinator.submissions(round_id) == []


def test_sample_count_at_the_cap_is_the_most_weight_one_update_gets(network):
    c = network.coordinator
    assert c.max_sample_count() == DEFAULT_MAX_SAMPLE_COUNT
    round_id = network.open_round()
    c.submit_update(network.validators[0], round_id, network.cid("big"), DEFAULT_MAX_SAMPLE_COUNT, MANIFEST)
    c.submit_update(network.validators[1], round_id, network.cid("small"), 10, MANIFEST)
    network.seat(round_id)
    network.to_proposals(round_id)
    accepted = sorted(v.address for v in network.validators[:2])
    c.propose_aggregate(network.leader(round_id), round_id, network.cid("agg"), accepted)
    samples = {s.node: s.sample_count for s in c.submissions(round_id)}
    assert c.proposal(round_id).accepted_root == accepted_root(accepted)
    assert sum(samples[a] for a in accepted) == DEFAULT_MAX_SAMPLE_COUNT + 10
