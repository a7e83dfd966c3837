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
from flare_chain.errors import ChainError
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


def _crash_at(point: str):
    """A fault hook that crashes at ``point`` only (``raise_crash`` fires at the first point)."""

    def fault(reached: str) -> None:
        if reached == point:
            raise_crash(reached)

    return fault


def test_a_fresh_send_reports_its_own_transaction_and_a_repeat_sends_nothing(chain) -> None:
    w3, coordinator, node, state = chain

    first = _send_register(w3, coordinator, node, state)
    receipt = w3.eth.get_transaction_receipt(first.tx_hash)
    again = _send_register(w3, coordinator, node, state)

    # The operator's log line is built from these: a fresh send is neither "re-sent" nor "already on-chain"
    assert (first.resent, first.already_on_chain) == (False, False)
    assert (first.block_number, first.gas_used) == (receipt["blockNumber"], receipt["gasUsed"]) and first.gas_used > 0
    # The repeat reads the stored record: same transaction, same block and gas, nothing new signed
    assert (again.tx_hash, again.block_number, again.gas_used) == (first.tx_hash, first.block_number, first.gas_used)
    assert (again.resent, again.already_on_chain) == (False, False)
    assert w3.eth.get_transaction_count(node.address) == 1


def test_a_stored_transaction_mined_before_the_crash_is_confirmed_not_resent(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash, match="register:sent"):
        _send_register(w3, coordinator, node, state, faults=_crash_at("register:sent"))
    stored = state.get(0, "register")

    outcome = _send_register(w3, coordinator, node, state)

    assert (outcome.tx_hash, outcome.resent, outcome.already_on_chain) == (stored.tx_hash, False, False)
    assert w3.eth.get_transaction_count(node.address) == 1
    assert state.get(0, "register").detail["tx_hash"] == stored.tx_hash


def test_a_step_found_on_chain_after_a_restart_spent_no_gas_of_this_node(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    coordinator.register_node(node, STAKE + 1)

    outcome = _send_register(w3, coordinator, node, state)

    assert (outcome.block_number, outcome.gas_used) == (None, 0)
    assert state.get(0, "register").detail == {"found_on_chain": True}


def test_settling_a_step_at_intent_skips_it_with_the_reason(chain) -> None:
    w3, coordinator, node, state = chain
    state.record_intent(0, "register")
    sender = DurableSender(w3, node, state, ErrorDecoder(coordinator.contract.abi))

    settled = sender.settle(0, "register", "round 0 committed without it")

    assert settled.status == StepStatus.SKIPPED and settled.detail["reason"] == "round 0 committed without it"


def test_settling_a_stored_transaction_never_broadcast_skips_it_and_names_the_transaction(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    stored = state.get(0, "register")
    sender = DurableSender(w3, node, state, ErrorDecoder(coordinator.contract.abi))

    settled = sender.settle(0, "register", "round over")

    assert settled.status == StepStatus.SKIPPED
    assert settled.detail["reason"] == f"round over; its stored transaction {stored.tx_hash} was never mined"
    assert not coordinator.is_registered(node.address)


def test_settling_a_stored_transaction_that_was_mined_records_its_block_and_gas(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=_crash_at("register:sent"))
    stored = state.get(0, "register")
    receipt = w3.eth.get_transaction_receipt(stored.tx_hash)
    sender = DurableSender(w3, node, state, ErrorDecoder(coordinator.contract.abi))

    settled = sender.settle(0, "register", "round over")
    # A final step is left as it is
    again = sender.settle(0, "register", "another reason")

    assert settled.status == StepStatus.DONE
    assert settled.detail == {"block": receipt["blockNumber"], "gas_used": receipt["gasUsed"],
                              "tx_hash": stored.tx_hash}
    assert again.status == StepStatus.DONE and again.detail == settled.detail


def _spend_nonce_zero_by_hand(w3, node, to: str) -> None:
    """The operator sends another transaction from the node's key, taking the nonce a stored one holds."""
    from flare_chain.chain.transactions import _fee_fields

    tx = {"from": node.address, "to": to, "value": 1, "gas": 21000, "nonce": 0, "chainId": w3.eth.chain_id,
          **_fee_fields(w3)}
    w3.eth.send_raw_transaction(node.sign_transaction(tx).raw_transaction)


def test_a_stored_transaction_the_node_refuses_raises_and_stays_stored(chain) -> None:
    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    stored = state.get(0, "register")
    _spend_nonce_zero_by_hand(w3, node, coordinator.address)

    with pytest.raises(ChainError, match=rf"the node refused transaction {stored.tx_hash} .*stays stored"):
        _send_register(w3, coordinator, node, state)

    after = state.get(0, "register")
    assert (after.status, after.raw_tx, after.tx_hash) == (StepStatus.SIGNED, stored.raw_tx, stored.tx_hash)
    assert not coordinator.is_registered(node.address)


def test_an_unreachable_endpoint_is_not_taken_for_a_transaction_never_mined(chain) -> None:
    # Settling asks for the stored transaction's receipt; an outage must not read as "never mined"
    import requests
    from web3 import Web3

    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    down = Web3(Web3.HTTPProvider("http://127.0.0.1:9", exception_retry_configuration=None))
    sender = DurableSender(down, node, state, ErrorDecoder(coordinator.contract.abi))

    with pytest.raises(requests.exceptions.ConnectionError):
        sender.settle(0, "register", "round over")

    assert state.get(0, "register").status == StepStatus.SIGNED


@pytest.mark.parametrize("message", ["transaction not found", "unknown transaction"])
def test_an_endpoint_answering_an_unknown_hash_with_an_error_still_settles_the_step(chain, message: str) -> None:
    # Some endpoints answer a receipt query for a hash they never saw with a JSON-RPC error
    # instead of null; that is "never mined", not a failure to settle the round.
    from web3 import EthereumTesterProvider, Web3

    class ErrorForUnknownReceipts(EthereumTesterProvider):
        def make_request(self, method, params):
            if method == "eth_getTransactionReceipt":
                return {"jsonrpc": "2.0", "id": 1, "error": {"code": -32000, "message": message}}
            return super().make_request(method, params)

    w3, coordinator, node, state = chain
    with pytest.raises(InjectedCrash):
        _send_register(w3, coordinator, node, state, faults=raise_crash)
    stored = state.get(0, "register")
    endpoint = Web3(ErrorForUnknownReceipts(w3.provider.ethereum_tester))
    sender = DurableSender(endpoint, node, state, ErrorDecoder(coordinator.contract.abi))

    settled = sender.settle(0, "register", "round over")

    assert settled.status == StepStatus.SKIPPED
    assert settled.detail["reason"] == f"round over; its stored transaction {stored.tx_hash} was never mined"
