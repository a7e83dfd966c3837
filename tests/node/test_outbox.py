"""DurableSender never sends a step whose effect the chain already shows, fresh or resumed.

Registration stands in for every transaction step (submit, claim, propose and
vote go through the same ``send``): it needs no round, so these tests need no
model and no training.
"""

from __future__ import annotations

import pytest
from eth_account import Account
from eth_utils import keccak

from flare_chain.chain import deploy_coordinator, fund_accounts, in_process_chain, public_key_words
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.node.daemon import InjectedCrash, raise_crash
from flare_chain.node.outbox import DurableSender
from flare_chain.node.state import NodeState, StepStatus

STAKE = 10**15


@pytest.fixture
def chain(tmp_path):
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="outbox tests owner"))
    node = Account.from_key(keccak(text="outbox tests node"))
    fund_accounts(w3, [owner, node], 10**20)
    coordinator = deploy_coordinator(w3, owner, approval_threshold_bps=6666, leader_blocks=2)
    state = NodeState(tmp_path / "state.sqlite")
    yield w3, coordinator, node, state
    state.close()


def _send_register(w3, coordinator, node, state, **kwargs):
    sender = DurableSender(w3, node, state, ErrorDecoder(coordinator.contract.abi), **kwargs)
    data = coordinator.contract.encode_abi("registerNode", args=[list(public_key_words(node))])
    return sender.send(0, "register", to=coordinator.address, data=data, value_wei=STAKE,
                       already_done=lambda: coordinator.is_registered(node.address))


def test_a_step_the_chain_already_shows_is_recorded_done_and_nothing_is_signed(chain) -> None:
    # Prepare: the node registered by hand (another tool, or a state file restored from an old backup)
    w3, coordinator, node, state = chain
    coordinator.register_node(node, STAKE)
    nonce = w3.eth.get_transaction_count(node.address)
    # Execute
    outcome = _send_register(w3, coordinator, node, state)
    # Assert: no transaction, no simulated revert, the step is done
    assert (outcome.tx_hash, outcome.already_on_chain) == (None, True)
    assert w3.eth.get_transaction_count(node.address) == nonce
    rec = state.get(0, "register")
    assert rec.status == StepStatus.DONE and rec.raw_tx is None and rec.detail.get("found_on_chain") is True


def test_a_stored_transaction_whose_effect_reached_the_chain_another_way_is_not_rebroadcast(chain) -> None:
    # Prepare: signed and stored, then the process died before broadcasting it ...
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash, match="register:signed"):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    stored = state.get(0, "register")
    assert stored.status == StepStatus.SIGNED and stored.nonce == 0
    # ... and the operator registered by hand (another stake, so other bytes), spending the stored nonce
    coordinator.register_node(node, STAKE + 1)
    # Execute
    outcome = _send_register(w3, coordinator, node, state)
    # Assert: the stored bytes (now a stale nonce) were not re-sent; the step is done
    assert (outcome.tx_hash, outcome.already_on_chain, outcome.resent) == (None, True, False)
    assert w3.eth.get_transaction_count(node.address) == 1
    assert state.get(0, "register").status == StepStatus.DONE


def test_a_stored_transaction_never_broadcast_is_sent_as_stored(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash, match="register:signed"):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    stored = state.get(0, "register")
    outcome = _send_register(w3, coordinator, node, state)
    assert (outcome.tx_hash, outcome.resent, outcome.already_on_chain) == (stored.tx_hash, True, False)
    assert coordinator.is_registered(node.address)


@pytest.mark.parametrize("balance", [0, STAKE, STAKE + 1000])  # nothing, the stake but no gas, 1000 wei of gas
def test_a_node_that_cannot_pay_is_told_its_address_and_the_amount_and_nothing_is_signed(chain, balance) -> None:
    w3, coordinator, _node, state = chain
    poor = Account.from_key(keccak(text=f"outbox tests poor node {balance}"))
    if balance:
        fund_accounts(w3, [poor], balance)
    from flare_chain.errors import ChainError

    with pytest.raises(ChainError) as err:
        _send_register(w3, coordinator, poor, state)
    message = str(err.value)
    assert f"register: {poor.address} holds" in message and f"flare-chain chain fund {poor.address}" in message
    address, need, have = err.value.error_args
    assert (address, have) == (poor.address, balance) and need > max(balance, STAKE - 1)
    assert f"({need} wei)" in message
    rec = state.get(0, "register")
    assert rec is None or (rec.raw_tx is None and rec.tx_hash is None)
    assert w3.eth.get_transaction_count(poor.address) == 0
