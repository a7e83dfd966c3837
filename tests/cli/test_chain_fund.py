"""``flare-chain chain fund``: test ether on a local dev chain, and a clear refusal anywhere else."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from flare_chain.chain.devrpc import DevChainServer
from flare_chain.cli.main import main as cli_main
from flare_chain.node.keys import create_keystore


@pytest.fixture(scope="module")
def dev_chain() -> Iterator[DevChainServer]:
    with DevChainServer(port=0, accounts=2) as running:
        yield running


class _MainnetLike(BaseHTTPRequestHandler):
    """A JSON-RPC endpoint that looks like a production client: chain id 1, geth, no unlocked accounts."""

    answers: ClassVar[dict[str, object]] = {"eth_chainId": "0x1", "web3_clientVersion": "Geth/v1.14.0-stable/linux-amd64/go1.22",
               "eth_accounts": [], "net_version": "1"}
    sent: ClassVar[list[str]] = []

    def do_POST(self) -> None:
        request = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.sent.append(request["method"])
        result = self.answers.get(request["method"])
        body = {"jsonrpc": "2.0", "id": request["id"]}
        body.update({"result": result} if result is not None else {"error": {"code": -32601, "message": "no"}})
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_args: object) -> None:
        pass


def test_fund_pays_an_address_and_a_keystore_on_a_dev_chain(dev_chain, tmp_path: Path, capsys) -> None:
    w3 = Web3(HTTPProvider(dev_chain.url))
    direct = Account.from_key(keccak(text="fund cli direct")).address
    keystore = tmp_path / "node.json"
    from_keystore = create_keystore(keystore, "password-123", kdf_iterations=2)
    code = cli_main(["chain", "fund", direct, str(keystore), "--amount", "2.5", "--rpc", dev_chain.url])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert w3.eth.get_balance(direct) == w3.eth.get_balance(from_keystore) == 25 * 10**17
    assert f"{direct} funded with 2.5 ETH" in out and f"{from_keystore} funded with 2.5 ETH" in out


@pytest.mark.parametrize("amount", ["0", "-1", "ten"])
def test_fund_refuses_a_bad_amount_with_one_line(dev_chain, amount: str, capsys) -> None:
    address = Account.from_key(keccak(text="fund cli bad amount")).address
    assert cli_main(["chain", "fund", address, "--amount", amount, "--rpc", dev_chain.url]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--amount" in line
    assert Web3(HTTPProvider(dev_chain.url)).eth.get_balance(address) == 0


def test_fund_refuses_a_chain_that_is_not_a_dev_chain_and_sends_nothing(capsys) -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _MainnetLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _MainnetLike.sent.clear()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        address = Account.from_key(keccak(text="fund cli mainnet")).address
        assert cli_main(["chain", "fund", address, "--rpc", url]) == 2
    finally:
        server.shutdown()
        server.server_close()
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "chain id 1, client Geth/v1.14.0" in line and "is not a local development chain" in line
    assert not any(m.startswith("eth_send") for m in _MainnetLike.sent)


def test_chain_anvil_refuses_a_negative_block_time_and_a_missing_binary(tmp_path: Path, monkeypatch,
                                                                         capsys) -> None:
    assert cli_main(["chain", "anvil", "--block-time", "-1"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--block-time must be 0 or more seconds" in line
    monkeypatch.setenv("FLARE_ANVIL", str(tmp_path / "no-anvil-here"))
    assert cli_main(["chain", "anvil", "--port", "0"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "FLARE_ANVIL" in line and "not an executable file" in line
