"""The in-process eth-tester chain served over HTTP JSON-RPC: a dev node with no node tools.

Where anvil is not installed, the devnet still needs a chain that several
processes (the owner's driver, one daemon per node) reach over an RPC URL.
``DevChainServer`` keeps one ``EthereumTester`` (py-evm) and answers the
JSON-RPC subset web3 clients use: chain id, blocks, balances, code, nonces,
``eth_call`` / ``eth_estimateGas`` (reverts come back as JSON-RPC error 3 with
the revert data, as geth and anvil send them), raw and unlocked transactions,
receipts, logs, fee data, and ``evm_mine`` / ``anvil_mine`` to move time.

Every transaction is mined in its own block at once; ``block_time_s`` adds an
empty block on that period, like ``anvil --block-time``. One lock serialises
every request, so concurrent clients see a consistent chain.

The pre-funded accounts come from the public development mnemonic anvil and
hardhat use ("test test … junk"), so both devnet chains fund from the same
well-known addresses. Never send real funds to them.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount

from flare_chain.chain.revert import revert_data_from_exception
from flare_chain.errors import ConfigError

__all__ = [
    "DEFAULT_DEV_ACCOUNTS",
    "DEV_MNEMONIC",
    "DevChainServer",
    "RpcError",
    "dev_accounts",
]

log = logging.getLogger(__name__)

DEV_MNEMONIC = "test test test test test test test test test test test junk"
"""The public development mnemonic (anvil's and hardhat's default): keys everyone knows."""
DEFAULT_DEV_ACCOUNTS = 10
_PRIORITY_FEE_WEI = 1_000_000_000
_MAX_BODY_BYTES = 8 * 2**20
_CAMEL = re.compile(r"_([a-z])")
_SNAKE = re.compile(r"(?<!^)(?=[A-Z])")
_NUMERIC_TX_FIELDS = frozenset(
    {"gas", "gas_price", "value", "nonce", "max_fee_per_gas", "max_priority_fee_per_gas", "chain_id", "type"}
)


def dev_accounts(count: int = DEFAULT_DEV_ACCOUNTS) -> list[LocalAccount]:
    """The first ``count`` accounts of ``DEV_MNEMONIC`` (path m/44'/60'/0'/0/i): devnet keys only."""
    if not 1 <= count <= 100:
        raise ConfigError(f"dev account count must be in [1, 100], got {count}")
    Account.enable_unaudited_hdwallet_features()
    return [Account.from_mnemonic(DEV_MNEMONIC, account_path=f"m/44'/60'/0'/0/{i}") for i in range(count)]


class RpcError(Exception):
    """A JSON-RPC error answer: ``code``, ``message`` and optional ``data`` (revert bytes as hex)."""

    def __init__(self, code: int, message: str, data: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.data = data

    def to_json(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.data is not None:
            error["data"] = self.data
        return error


# ---------------------------------------------------------------------------- formatting


def _to_rpc(value: Any, key: str = "") -> Any:
    """eth-tester's snake_case, int-valued objects as JSON-RPC's camelCase, hex-quantity ones."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            if k == "type" and v == "mined":  # eth-tester's log marker, not a field of the RPC
                out["removed"] = False
                continue
            name = "input" if k == "data" and "nonce" in value else _CAMEL.sub(lambda m: m.group(1).upper(), k)
            out[name] = _to_rpc(v, k)
        return out
    if isinstance(value, list | tuple):
        return [_to_rpc(v, key) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return "0x" + value.to_bytes(256, "big").hex() if key == "logs_bloom" else hex(value)
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if key == "to" and value == "":
        return None
    return value


def _quantity(value: Any, what: str) -> int:
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value, 16) if value.startswith(("0x", "0X")) else int(value)
        except ValueError:
            pass
    raise RpcError(-32602, f"invalid quantity for {what}: {value!r}")


def _tx_from_rpc(params: Any) -> dict[str, Any]:
    if not isinstance(params, dict):
        raise RpcError(-32602, f"expected a transaction object, got {params!r}")
    tx: dict[str, Any] = {}
    for key, value in params.items():
        name = "data" if key == "input" else _SNAKE.sub("_", key).lower()
        if value is None:
            continue
        tx[name] = _quantity(value, key) if name in _NUMERIC_TX_FIELDS else value
    return tx


# ---------------------------------------------------------------------------- the chain


class _Chain:
    """The RPC methods over one EthereumTester, each under the server's lock."""

    def __init__(self, accounts: int) -> None:
        from eth_tester import EthereumTester

        from flare_chain.chain.tester_backend import faithful_backend_class

        # Blocks report the prevrandao their transactions saw, so devnet histories can be audited.
        backend = faithful_backend_class().from_mnemonic(DEV_MNEMONIC, num_accounts=accounts, hd_path="m/44'/60'/0'/0")
        self.tester = EthereumTester(backend)
        self.lock = threading.RLock()
        self.chain_id = int(backend.chain.chain_id)

    def head(self) -> int:
        return int(self.tester.get_block_by_number("latest")["number"])

    def block_id(self, value: Any) -> int | str:
        if value in (None, "pending"):
            return "latest"  # every transaction is mined at once: pending == latest
        if value in ("latest", "earliest", "safe", "finalized"):
            return str(value)
        if isinstance(value, dict):  # EIP-1898 {"blockNumber": ...} / {"blockHash": ...}
            if "blockNumber" in value:
                return self.block_id(value["blockNumber"])
            return int(self.tester.get_block_by_hash(value["blockHash"])["number"])
        return _quantity(value, "block")

    def _number(self, value: Any) -> int:
        ident = self.block_id(value)
        if isinstance(ident, int):
            return ident
        return 0 if ident == "earliest" else self.head()

    def call_like(self, fn: Callable[..., Any], tx: Any, block: Any) -> Any:
        spec = _tx_from_rpc(tx)
        # eth-tester charges a call's gas to its sender, so a call without one (web3's
        # ``.call()``) runs as the first funded dev account, and an explicit sender's
        # gas is capped at what it can pay for.
        spec.setdefault("from", self.tester.get_accounts()[0])
        if "gas" not in spec:
            price = max(1, int(self.tester.get_block_by_number("latest").get("base_fee_per_gas") or 1))
            affordable = int(self.tester.get_balance(spec["from"])) // price
            spec["gas"] = max(21_000, min(affordable, int(self.tester.get_block_by_number("latest")["gas_limit"])))
        spec.pop("chain_id", None)
        spec.pop("nonce", None)
        spec.pop("type", None)
        try:
            return fn(spec, self.block_id(block))
        except Exception as exc:
            raise _revert_error(exc) from exc

    def fee_history(self, count: Any, newest: Any, percentiles: Any) -> dict[str, Any]:
        n = max(1, min(_quantity(count, "blockCount"), 1024))
        last = self._number(newest)
        first = max(0, last - n + 1)
        blocks = [self.tester.get_block_by_number(i) for i in range(first, last + 1)]
        base = [int(b.get("base_fee_per_gas") or 0) for b in blocks]
        return {
            "oldestBlock": hex(first),
            "baseFeePerGas": [hex(b) for b in [*base, base[-1]]],
            "gasUsedRatio": [int(b["gas_used"]) / max(1, int(b["gas_limit"])) for b in blocks],
            "reward": [[hex(_PRIORITY_FEE_WEI) for _ in (percentiles or [])] for _ in blocks],
        }

    def get_logs(self, spec: Any) -> list[dict[str, Any]]:
        if not isinstance(spec, dict):
            raise RpcError(-32602, f"eth_getLogs takes a filter object, got {spec!r}")
        if "blockHash" in spec:
            start = end = int(self.tester.get_block_by_hash(spec["blockHash"])["number"])
        else:
            start = self._number(spec.get("fromBlock", "latest"))
            end = self._number(spec.get("toBlock", "latest"))
        address = spec.get("address")
        logs = self.tester.get_logs(from_block=start, to_block=end, address=address, topics=spec.get("topics"))
        return _to_rpc(list(logs))

    def mine(self, n: int) -> list[str]:
        if not 0 < n <= 100_000:
            raise RpcError(-32602, f"can mine 1 to 100000 blocks at a time, asked for {n}")
        return list(self.tester.mine_blocks(n))

    def dispatch(self, method: str, params: list[Any]) -> Any:
        t = self.tester
        p = [*params, None, None, None]
        handlers: dict[str, Callable[[], Any]] = {
            "web3_clientVersion": lambda: "flare-chain-devrpc/eth-tester",
            "net_version": lambda: str(self.chain_id),
            "net_listening": lambda: True,
            "net_peerCount": lambda: "0x0",
            "eth_chainId": lambda: hex(self.chain_id),
            "eth_syncing": lambda: False,
            "eth_mining": lambda: True,
            "eth_accounts": lambda: list(t.get_accounts()),
            "eth_blockNumber": lambda: hex(self.head()),
            "eth_gasPrice": lambda: hex(int(t.get_block_by_number("latest").get("base_fee_per_gas") or 0)
                                        + _PRIORITY_FEE_WEI),
            "eth_maxPriorityFeePerGas": lambda: hex(_PRIORITY_FEE_WEI),
            "eth_feeHistory": lambda: self.fee_history(p[0], p[1], p[2]),
            "eth_getBalance": lambda: hex(t.get_balance(p[0], self.block_id(p[1]))),
            "eth_getCode": lambda: t.get_code(p[0], self.block_id(p[1])),
            "eth_getStorageAt": lambda: _to_rpc(t.get_storage_at(p[0], _quantity(p[1], "slot"),
                                                                 self.block_id(p[2]))),
            "eth_getTransactionCount": lambda: hex(t.get_nonce(p[0], self.block_id(p[1]))),
            "eth_getBlockByNumber": lambda: _maybe(lambda: t.get_block_by_number(self.block_id(p[0]), bool(p[1]))),
            "eth_getBlockByHash": lambda: _maybe(lambda: t.get_block_by_hash(p[0], bool(p[1]))),
            "eth_getTransactionByHash": lambda: _maybe(lambda: t.get_transaction_by_hash(p[0])),
            "eth_getTransactionReceipt": lambda: _receipt(t, p[0]),
            "eth_call": lambda: self.call_like(t.call, p[0], p[1]),
            "eth_estimateGas": lambda: hex(self.call_like(t.estimate_gas, p[0], p[1])),
            "eth_sendRawTransaction": lambda: _send(lambda: t.send_raw_transaction(p[0])),
            "eth_sendTransaction": lambda: _send(lambda: t.send_transaction(_tx_from_rpc(p[0]))),
            "eth_getLogs": lambda: self.get_logs(p[0]),
            "evm_mine": lambda: self.mine(1) and "0x0",
            "anvil_mine": lambda: self.mine(1 if p[0] is None else _quantity(p[0], "blocks")) and None,
            "hardhat_mine": lambda: self.mine(1 if p[0] is None else _quantity(p[0], "blocks")) and True,
        }
        handler = handlers.get(method)
        if handler is None:
            raise RpcError(-32601, f"method {method} is not supported by the flare-chain dev chain")
        with self.lock:
            return _to_rpc(handler())


def _maybe(fetch: Callable[[], Any]) -> Any:
    from eth_tester.exceptions import BlockNotFound, TransactionNotFound

    try:
        return fetch()
    except (BlockNotFound, TransactionNotFound):
        return None


def _receipt(tester: Any, tx_hash: Any) -> Any:
    receipt = _maybe(lambda: tester.get_transaction_receipt(tx_hash))
    if receipt is None or receipt.get("block_number") is None:
        return None
    return receipt


def _send(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except RpcError:
        raise
    except Exception as exc:  # a bad nonce, signature, balance or a revert while mining
        raise _revert_error(exc) from exc


def _revert_error(exc: Exception) -> RpcError:
    from eth_tester.exceptions import TransactionFailed

    if isinstance(exc, TransactionFailed):
        data = revert_data_from_exception(exc)
        text = " ".join(str(a) for a in exc.args)
        if data is None and text and not text.startswith(("Revert", "b'")):
            # eth-tester decoded an Error(string) reason: send it back encoded, as a node would.
            from eth_abi import encode

            data = bytes.fromhex("08c379a0") + encode(["string"], [text])
        return RpcError(3, f"execution reverted: {text}"[:500], "0x" + (data or b"").hex())
    return RpcError(-32000, f"{type(exc).__name__}: {exc}"[:500])


# ---------------------------------------------------------------------------- HTTP


@dataclass
class _Answer:
    status: int
    body: bytes


class DevChainServer:
    """An eth-tester chain on ``http://host:port`` (``port=0``: any free port); start, then stop.

        with DevChainServer(port=0) as server:
            w3 = Web3(HTTPProvider(server.url))

    ``accounts`` pre-funded dev accounts (``dev_accounts``); ``block_time_s`` > 0
    mines an empty block on that period besides one per transaction.
    """

    def __init__(
        self, host: str = "127.0.0.1", port: int = 8545, *, accounts: int = DEFAULT_DEV_ACCOUNTS,
        block_time_s: float = 0.0,
    ) -> None:
        if block_time_s < 0:
            raise ConfigError(f"block_time_s must not be negative, got {block_time_s}")
        self.chain = _Chain(accounts)
        self.accounts = dev_accounts(accounts)
        self.block_time_s = block_time_s
        chain = self.chain

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, fmt: str, *args: Any) -> None:
                log.debug("devrpc %s " + fmt, self.client_address[0], *args)

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length > _MAX_BODY_BYTES:
                    answer = _Answer(413, b'{"error":"request too large"}')
                else:
                    answer = _Answer(200, _handle_body(chain, self.rfile.read(length)))
                self.send_response(answer.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def do_GET(self) -> None:
                body = json.dumps({"chainId": chain.chain_id, "block": chain.head()}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        try:
            self._http = ThreadingHTTPServer((host, port), Handler)
        except OSError as exc:
            raise ConfigError(f"cannot listen on {host}:{port} for the dev chain: {exc.strerror}; "
                              "pick another --port (0 takes any free one)") from None
        self._http.daemon_threads = True
        self._threads: list[threading.Thread] = []
        self._stop = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host.decode() if isinstance(host, bytes) else host}:{port}"

    @property
    def chain_id(self) -> int:
        return self.chain.chain_id

    def start(self) -> DevChainServer:
        """Serve in background threads; returns self."""
        serve = threading.Thread(target=self._http.serve_forever, name="devrpc-http", daemon=True)
        serve.start()
        self._threads.append(serve)
        if self.block_time_s > 0:
            miner = threading.Thread(target=self._mine_periodically, name="devrpc-miner", daemon=True)
            miner.start()
            self._threads.append(miner)
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop`` (from a signal handler or another thread)."""
        if self.block_time_s > 0:
            miner = threading.Thread(target=self._mine_periodically, name="devrpc-miner", daemon=True)
            miner.start()
            self._threads.append(miner)
        self._http.serve_forever()

    def _mine_periodically(self) -> None:
        while not self._stop.wait(self.block_time_s):
            with self.chain.lock:
                self.chain.mine(1)

    def stop(self) -> None:
        """Stop serving and close the socket (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._http.shutdown()
        self._http.server_close()
        for thread in self._threads:
            thread.join(timeout=5)

    def __enter__(self) -> DevChainServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handle_body(chain: _Chain, body: bytes) -> bytes:
    try:
        request = json.loads(body)
    except ValueError:
        return json.dumps({"jsonrpc": "2.0", "id": None,
                           "error": {"code": -32700, "message": "parse error: body is not JSON"}}).encode()
    if isinstance(request, list):
        return json.dumps([_handle_one(chain, r) for r in request]).encode()
    return json.dumps(_handle_one(chain, request)).encode()


def _handle_one(chain: _Chain, request: Any) -> dict[str, Any]:
    if not isinstance(request, dict) or not isinstance(request.get("method"), str):
        return {"jsonrpc": "2.0", "id": None, "error": {"code": -32600, "message": "invalid request"}}
    rid = request.get("id")
    params = request.get("params") or []
    try:
        if not isinstance(params, list):
            raise RpcError(-32602, "params must be a list")
        return {"jsonrpc": "2.0", "id": rid, "result": chain.dispatch(request["method"], params)}
    except RpcError as exc:
        return {"jsonrpc": "2.0", "id": rid, "error": exc.to_json()}
    except Exception as exc:  # a bug or an input eth-tester refuses: answer, never drop the connection
        log.debug("devrpc %s failed", request["method"], exc_info=True)
        return {"jsonrpc": "2.0", "id": rid, "error": {"code": -32603, "message": f"{type(exc).__name__}: {exc}"[:500]}}
