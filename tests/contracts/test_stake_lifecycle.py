"""Unbonding and withdrawal: a stake leaves W at once, is paid back only after the delay and its last round."""

from __future__ import annotations

from flare_chain.chain import RoundStatus
from flare_chain.chain.coordinator import deploy_coordinator

UNBONDING_BLOCKS = 64  # FlareCoordinator.UNBONDING_BLOCKS


def test_unbonding_constant_matches_the_contract(network):
    assert network.coordinator.contract.functions.UNBONDING_BLOCKS().call() == UNBONDING_BLOCKS


def test_unbond_takes_the_stake_out_of_W_for_later_rounds_only(network):
    c, leaving = network.coordinator, network.validators[0]
    round_id = network.open_round()
    w_before = c.sortition_info(round_id).total_stake

    tx = c.request_unbond(leaving)

    assert c.unbonding(leaving.address) == (round_id + 1, tx.block_number + UNBONDING_BLOCKS)
    assert c.total_stake() == w_before - network.member_stake
    assert not c.is_registered(leaving.address)
    # The open round's W counted this stake: it may still sit on that committee.
    assert c.sortition_info(round_id).total_stake == w_before
    network.seat(round_id, [leaving])
    assert c.is_committee_member(round_id, leaving.address)


def test_an_unbonding_node_submits_no_more_and_is_not_eligible_for_later_rounds(network, reverts):
    c, leaving = network.coordinator, network.validators[0]
    first = network.open_round()
    c.request_unbond(leaving)
    with reverts("CoordinatorNotRegistered", leaving.address):
        c.submit_update(leaving, first, network.cid("after unbond"), 5, b"\x00" * 32)
    network.seat(first, network.validators[1:])
    network.next_tx_in_block(c.round_info(first).proposal_deadline + 1)
    c.finalize_round(network.outsider, first)
    second = network.open_round()
    assert c.seat_weight_of(second, leaving.address, b"\xff" * 32) == 0
    network.to_claims(second)
    draw = c.draw_seat(leaving, second)
    with reverts("CoordinatorNotEligible", second, leaving.address, 1, second):
        c.claim_seat(leaving, second, draw.proof)


def test_withdraw_waits_for_the_delay_and_for_the_last_round_to_end(network, reverts):
    c, leaving = network.coordinator, network.validators[0]
    round_id = network.open_round()
    tx = c.request_unbond(leaving)
    with reverts("CoordinatorAlreadyUnbonding", leaving.address, round_id + 1):
        c.request_unbond(leaving)
    withdrawable = tx.block_number + UNBONDING_BLOCKS
    with reverts("CoordinatorUnbondingNotOver", leaving.address, withdrawable):
        c.withdraw_stake(leaving)
    # Past the delay the round it may still be seated in is open: no payout while it can still vote.
    network.next_tx_in_block(max(withdrawable, c.round_info(round_id).submission_deadline + 1))
    with reverts("CoordinatorStillEligible", leaving.address, round_id):
        c.withdraw_stake(leaving)
    network.next_tx_in_block(max(network.head() + 1, c.round_info(round_id).claim_deadline + 1))
    c.finalize_round(network.outsider, round_id)  # no seats: the round fails
    assert c.round_info(round_id).status == RoundStatus.FAILED

    balance = network.w3.eth.get_balance(leaving.address)
    contract_balance = network.w3.eth.get_balance(c.address)
    tx = c.withdraw_stake(leaving)

    fee = tx.receipt["gasUsed"] * tx.receipt["effectiveGasPrice"]
    assert network.w3.eth.get_balance(leaving.address) == balance + network.member_stake - fee
    assert network.w3.eth.get_balance(c.address) == contract_balance - network.member_stake
    assert c.node_info(leaving.address).stake == 0 and c.unbonding(leaving.address) == (0, 0)
    with reverts("CoordinatorNotUnbonding", leaving.address):
        c.withdraw_stake(leaving)
    # Withdrawn, it may come back as a new node (eligible from the next round).
    c.register_node(leaving, network.member_stake)
    assert c.is_registered(leaving.address)


def test_unbond_before_any_round_is_withdrawable_after_the_delay_alone(network, reverts):
    fresh = deploy_coordinator(network.w3, network.owner, min_stake_wei=1)
    node = network.validators[0]
    fresh.register_node(node, 10**18)
    tx = fresh.request_unbond(node)
    network.next_tx_in_block(tx.block_number + UNBONDING_BLOCKS)
    fresh.withdraw_stake(node)
    assert network.w3.eth.get_balance(fresh.address) == 0  # the contract holds only what it owes


def test_contract_balance_is_exactly_the_stakes_not_withdrawn(network):
    stakes = network.coordinator.total_stake()
    assert network.w3.eth.get_balance(network.coordinator.address) == stakes

