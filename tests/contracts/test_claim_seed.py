"""The claim seed: seats are drawn on the round seed mixed with the submission deadline block's hash.

The owner picks the block that opens a round and so can re-draw the round seed; it
cannot know the hash of a block that is not yet built, so the seed the VRF uses is
not its to choose.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from flare_chain.chain import advance_blocks, deploy_coordinator, fund_accounts, in_process_chain
from flare_chain.chain.coordinator import CoordinatorClient
from flare_chain.committee import sortition
from flare_chain.errors import ChainError


def _block_hash(network, number: int) -> bytes:
    return bytes(network.w3.eth.get_block(number)["hash"])


def test_seats_are_drawn_on_the_round_seed_mixed_with_the_deadline_block_hash(network):
    c = network.coordinator
    round_id = network.open_round(submission=3, claim=4)
    network.to_claims(round_id)
    advance_blocks(network.w3, 1)  # a view (eth_call) runs at the latest block: one past the deadline
    info = c.round_info(round_id)
    expected = keccak(info.seed + _block_hash(network, info.submission_deadline))
    assert c.claim_seed(round_id) == expected != info.seed
    assert bytes(c.contract.functions.claimSeed(round_id).call()) == expected
    assert c.vrf_input(round_id) == sortition.vrf_alpha(network.w3.eth.chain_id, c.address, round_id, expected)
    # a seat claimed with the client's proof is one the contract verified on that input
    network.seat(round_id, network.validators[:1])
    (seat,) = c.seats(round_id)
    assert seat.output == c.draw_seat(network.validators[0], round_id).output


def test_a_proof_on_the_round_seed_alone_is_refused(network):
    from flare_chain.committee import vrf

    c, member = network.coordinator, network.validators[0]
    round_id = network.open_round(submission=3, claim=4)
    network.to_claims(round_id)
    stale = sortition.vrf_alpha(network.w3.eth.chain_id, c.address, round_id, c.round_info(round_id).seed)
    params = vrf.compute_fast_verify_params(vrf.public_key(bytes(member.key)), vrf.prove(bytes(member.key), stale),
                                            stale)
    with pytest.raises(ChainError, match="VRFVerifier"):
        c.claim_seat_with_params(member, round_id, params)
    assert not c.is_committee_member(round_id, member.address)


def test_the_claim_seed_is_unknown_while_submissions_are_open(network, reverts):
    c = network.coordinator
    round_id = network.open_round(submission=5, claim=4)
    deadline = c.round_info(round_id).submission_deadline
    with pytest.raises(ChainError, match=f"submission deadline block {deadline}"):
        c.claim_seed(round_id)
    with reverts("CoordinatorClaimSeedUnavailable", round_id, deadline + 1, deadline + 256):
        c.vrf_input(round_id)


def test_the_claim_seed_is_unknown_in_the_deadline_block_and_known_one_block_later(network, reverts):
    """In the deadline block itself its hash does not exist yet (``blockhash`` of the current block is 0): a
    contract answering there would hand out a seed no seat is ever drawn on."""
    c = network.coordinator
    round_id = network.open_round(submission=4, claim=4)
    network.to_claims(round_id)  # the next transaction lands one past the deadline: a view runs in the deadline block
    info = c.round_info(round_id)
    assert network.head() == info.submission_deadline
    with reverts("CoordinatorClaimSeedUnavailable", round_id, info.submission_deadline + 1,
                 info.submission_deadline + 256):
        c.vrf_input(round_id)
    advance_blocks(network.w3, 1)
    expected = keccak(info.seed + _block_hash(network, info.submission_deadline))
    assert bytes(c.contract.functions.claimSeed(round_id).call()) == expected


def test_after_blockhash_reach_the_contract_refuses_but_the_client_still_reads_the_seed(network, reverts):
    c = network.coordinator
    round_id = network.open_round(submission=2, claim=3, proposal=1, voting=1)
    network.to_claims(round_id)
    seed = c.claim_seed(round_id)
    advance_blocks(network.w3, 300)
    deadline = c.round_info(round_id).submission_deadline
    with reverts("CoordinatorClaimSeedUnavailable", round_id, deadline + 1, deadline + 256):
        c.vrf_input(round_id)
    assert c.claim_seed(round_id) == seed


OWNER = Account.from_key(keccak(text="claim seed owner"))
NODES = [Account.from_key(keccak(text=f"claim seed node {i}")) for i in range(2)]
SECRET = keccak(text="one chain secret for both worlds")


def _opened_world(between: int) -> CoordinatorClient:
    """A chain (always the same prevrandao secret) where the owner opens round 1 in the same block with the same
    seed; ``between`` is what some other account does while submissions are open."""
    w3 = in_process_chain(randao_secret=SECRET)
    fund_accounts(w3, [OWNER, *NODES], 10**19)
    coordinator = deploy_coordinator(w3, OWNER, min_committee_size=2)
    for node in NODES:
        coordinator.register_node(node, 10**18)
    coordinator.initialize_global_adapter(OWNER, b"\x01\x55\x12\x20" + keccak(text="adapter"))
    coordinator.open_round(OWNER, 4, 3, 2, 2, expected_committee_size=6)
    stranger = Account.from_key(keccak(text=f"stranger {between}"))
    fund_accounts(w3, [stranger], 10**15 * (between + 1))
    advance_blocks(w3, coordinator.round_info(1).submission_deadline + 1 - int(w3.eth.block_number))
    return coordinator


def test_the_owner_fixes_the_round_seed_but_not_the_claim_seed():
    # Two worlds identical up to and including the opening transaction: the owner's choices (the block, the
    # phases, the prevrandao it saw) are the same, so the round seed is; what others do before the
    # submission deadline is not, and neither is the seed the seats are drawn on.
    first, second = _opened_world(0), _opened_world(1)
    assert first.round_info(1).seed == second.round_info(1).seed
    assert first.round_info(1).submission_deadline == second.round_info(1).submission_deadline
    assert first.claim_seed(1) != second.claim_seed(1)
