"""The eth-tester chain served over HTTP JSON-RPC: what web3 clients and the coordinator client need."""

from __future__ import annotations

import json
import threading
import time
import urllib.request

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from flare_chain.chain import advance_blocks, fund_accounts
from flare_chain.chain.devrpc import DevChainServer, dev_accounts
from flare_chain.errors import ChainError, ConfigError
from flare_chain.ipfs import cid_of_bytes, cid_to_bytes


@pytest.fixture(scope="module")
def server():
    with DevChainServer(port=0, accounts=3) as running:
        yield running


@pytest.fixture(scope="module")
def w3(server: DevChainServer) -> Web3:
    return Web3(HTTPProvider(server.url))


def _raw(url: str, payload: object) -> object:
    request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_dev_accounts_are_the_public_mnemonic_and_funded(server: DevChainServer, w3: Web3) -> None:
    # anvil's first dev account, a published constant: both devnet chains fund from it
    assert server.accounts[0].address == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    assert w3.eth.accounts == [a.address for a in dev_accounts(3)]
    assert all(w3.eth.get_balance(a) > 10**21 for a in w3.eth.accounts)


def test_basic_queries_answer_in_rpc_format(server: DevChainServer, w3: Web3) -> None:
    assert w3.eth.chain_id == server.chain_id
    assert w3.net.version == str(server.chain_id)
    block = w3.eth.get_block("latest")
    assert block["number"] == w3.eth.block_number and block["baseFeePerGas"] > 0
    assert w3.eth.gas_price > 0 and w3.eth.max_priority_fee > 0
    history = w3.eth.fee_history(1, "latest", [50])
    assert len(history["baseFeePerGas"]) == 2 and len(history["reward"]) == 1


def test_each_transaction_mines_a_block_and_evm_mine_advances(w3: Web3) -> None:
    stranger = Account.from_key(keccak(text="devchain stranger"))
    start = w3.eth.block_number
    fund_accounts(w3, [stranger], 10**18)
    assert w3.eth.block_number == start + 1
    assert w3.eth.get_balance(stranger.address) == 10**18
    assert advance_blocks(w3, 4) == start + 5
    assert _raw(str(w3.provider.endpoint_uri), {"jsonrpc": "2.0", "id": 1, "method": "evm_mine"})["result"] == "0x0"


def test_unknown_method_and_bad_json_get_json_rpc_errors(server: DevChainServer) -> None:
    answer = _raw(server.url, {"jsonrpc": "2.0", "id": 7, "method": "debug_traceTransaction", "params": []})
    assert answer["id"] == 7 and answer["error"]["code"] == -32601
    request = urllib.request.Request(server.url, data=b"{not json", headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert json.loads(response.read())["error"]["code"] == -32700
    batch = _raw(server.url, [{"jsonrpc": "2.0", "id": i, "method": "eth_blockNumber"} for i in range(3)])
    assert [a["id"] for a in batch] == [0, 1, 2]


def test_coordinator_round_trip_over_http(w3: Web3) -> None:
    from flare_chain.chain import deploy_coordinator

    owner, node, other = (Account.from_key(keccak(text=f"devchain {who}")) for who in ("owner", "node", "other"))
    fund_accounts(w3, [owner, node, other], 10**20)
    coordinator = deploy_coordinator(w3, owner)
    coordinator.register_node(node, 10**18)
    coordinator.register_node(other, 10**18)  # a round opens with at least the minimum committee (2) of nodes
    assert coordinator.is_registered(node.address)
    with pytest.raises(ChainError) as err:  # a revert travels back as JSON-RPC error data and is decoded
        coordinator.register_node(node, 10**18)
    assert err.value.error_name == "CoordinatorAlreadyRegistered"
    coordinator.initialize_global_adapter(owner, cid_to_bytes(cid_of_bytes(b"round 0 adapter")))
    round_id, _ = coordinator.open_round(owner, 20, 5, 5, 5, expected_committee_size=3)
    cid = cid_to_bytes(cid_of_bytes(b"an update"))
    coordinator.submit_update(node, round_id, cid, 10, bytes(32))
    (submission,) = coordinator.submissions(round_id)
    assert (submission.node, submission.cid, submission.sample_count) == (node.address, cid, 10)
    assert coordinator.round_info(round_id).submission_count == 1


def test_concurrent_clients_see_one_consistent_chain(server: DevChainServer, w3: Web3) -> None:
    senders = [Account.from_key(keccak(text=f"devchain concurrent {i}")) for i in range(4)]
    fund_accounts(w3, senders, 10**18)
    start = w3.eth.block_number
    errors: list[Exception] = []

    def send(account) -> None:
        client = Web3(HTTPProvider(server.url))
        try:
            for _ in range(3):
                nonce = client.eth.get_transaction_count(account.address)
                signed = account.sign_transaction({"to": account.address, "value": 1, "gas": 21000, "nonce": nonce,
                                                   "chainId": server.chain_id, "maxFeePerGas": 10**10,
                                                   "maxPriorityFeePerGas": 10**9})
                client.eth.wait_for_transaction_receipt(client.eth.send_raw_transaction(signed.raw_transaction))
        except Exception as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(a,)) for a in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert w3.eth.block_number == start + 12


def test_block_time_mines_empty_blocks() -> None:
    with DevChainServer(port=0, accounts=1, block_time_s=0.05) as server:
        w3 = Web3(HTTPProvider(server.url))
        start = w3.eth.block_number
        deadline = time.monotonic() + 5
        while w3.eth.block_number < start + 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert w3.eth.block_number >= start + 3


def test_taken_port_is_a_clear_config_error(server: DevChainServer) -> None:
    port = int(server.url.rsplit(":", 1)[1])
    with pytest.raises(ConfigError, match="--port"):
        DevChainServer(port=port, accounts=1)


def test_cli_chain_serve_prints_accounts_and_stops_on_sigterm() -> None:
    import signal
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-m", "flare_chain.cli.main", "chain", "serve", "--port", "0",
                                "--accounts", "2"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = process.stdout.readline()  # type: ignore[union-attr]
        assert "listening on http://127.0.0.1:" in first
        url = first.split("listening on ")[1].strip()
        lines = [process.stdout.readline() for _ in range(3)]  # type: ignore[union-attr]
        assert "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266" in lines[1]
        assert Web3(HTTPProvider(url)).eth.get_balance("0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266") > 0
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
