"""Read what the auditor needs from an Ethereum JSON-RPC endpoint, politely and resumably.

Logs are fetched with one ``eth_getLogs`` per block range for all the
contract's events at once, ranges halved when an endpoint refuses a wide one,
and every call retried with exponential backoff, so a long history read from
a public endpoint finishes or fails with a message naming the range. Progress
goes through ``flare_chain.progress``. Transactions, receipts and blocks are
memoised by hash or number: a history asks for the same ones many times.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eth_utils import event_abi_to_log_topic, to_checksum_address
from web3 import Web3

from flare_chain.errors import ChainError
from flare_chain.progress import progress

__all__ = ["DEFAULT_CHUNK_BLOCKS", "ChainReader", "EventLog"]

log = logging.getLogger("flare_chain.audit")

DEFAULT_CHUNK_BLOCKS = 5_000
"""Blocks per ``eth_getLogs`` call; public endpoints commonly cap ranges near 10k."""

T = TypeVar("T")


@dataclass(frozen=True)
class EventLog:
    """One decoded contract event with where it happened."""

    name: str
    args: dict[str, Any]
    block_number: int
    log_index: int
    tx_hash: str


class ChainReader:
    """Logs, transactions, receipts and blocks of one contract, with retries and caching.

    ``retries`` extra attempts per call, waiting ``backoff_s·2^i`` (capped at
    8 s) in between through ``sleep`` (tests pass a recorder).
    """

    def __init__(
        self,
        w3: Web3,
        address: str,
        abi: list[dict[str, Any]],
        *,
        chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
        retries: int = 4,
        backoff_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        show_progress: bool = True,
    ) -> None:
        self.w3 = w3
        self.address = to_checksum_address(address)
        self.chunk_blocks = max(1, chunk_blocks)
        self.retries = max(0, retries)
        self.backoff_s = backoff_s
        self.show_progress = show_progress
        self._sleep = sleep
        self._contract = w3.eth.contract(address=self.address, abi=abi)
        self._events = {
            event_abi_to_log_topic(item): item["name"]  # type: ignore[arg-type]
            for item in abi
            if item.get("type") == "event"
        }
        self._txs: dict[str, Any] = {}
        self._receipts: dict[str, Any] = {}
        self._blocks: dict[int, Any] = {}
        self.calls = 0

    def _retry(self, what: str, fn: Callable[[], T]) -> T:
        for attempt in range(self.retries + 1):
            self.calls += 1
            try:
                return fn()
            except Exception as exc:  # any transport or RPC failure: the endpoint is untrusted and flaky
                if attempt == self.retries:
                    raise ChainError(
                        f"{what} failed after {self.retries + 1} attempts against {self.w3.provider}: {exc}; "
                        "check the --rpc endpoint, or retry later"
                    ) from exc
                wait = min(self.backoff_s * 2**attempt, 8.0)
                log.warning("%s failed (%s); retrying in %.1f s", what, exc, wait)
                self._sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def head(self) -> int:
        return int(self._retry("eth_blockNumber", lambda: self.w3.eth.block_number))

    def chain_id(self) -> int:
        return int(self._retry("eth_chainId", lambda: self.w3.eth.chain_id))

    def _get_logs(self, start: int, end: int) -> list[Any]:
        params = {"address": self.address, "fromBlock": start, "toBlock": end}
        return list(self._retry(f"eth_getLogs blocks {start}..{end}",
                                lambda: self.w3.eth.get_logs(params)))  # type: ignore[arg-type]

    def events(self, from_block: int, to_block: int) -> list[EventLog]:
        """Every event of the contract in ``[from_block, to_block]``, decoded, in chain order.

        A range the endpoint refuses is halved until it goes through (down to
        one block); only then is the failure raised.
        """
        raw: list[Any] = []
        total = max(0, to_block - from_block + 1)
        with progress("audit: reading logs", total, unit="block", logger=log,
                      enabled=self.show_progress) as bar:
            start, size = from_block, self.chunk_blocks
            while start <= to_block:
                end = min(start + size - 1, to_block)
                try:
                    raw.extend(self._get_logs(start, end))
                except ChainError:
                    if size == 1:
                        raise
                    size = max(1, size // 2)
                    log.warning("narrowing log ranges to %d blocks", size)
                    continue
                bar.update(end - start + 1)
                start = end + 1
        decoded = [self._decode(entry) for entry in raw]
        return sorted((e for e in decoded if e is not None), key=lambda e: (e.block_number, e.log_index))

    def _decode(self, entry: Any) -> EventLog | None:
        topics = entry.get("topics") or []
        name = self._events.get(bytes(topics[0])) if topics else None
        if name is None:
            return None  # not one of ours (a proxy or library may emit others)
        event = getattr(self._contract.events, name)()
        data = event.process_log(entry)
        return EventLog(
            name=name,
            args=dict(data["args"]),
            block_number=int(entry["blockNumber"]),
            log_index=int(entry["logIndex"]),
            tx_hash=Web3.to_hex(entry["transactionHash"]),
        )

    def transaction(self, tx_hash: str) -> Any:
        """The transaction (sender, calldata) behind an event."""
        if tx_hash not in self._txs:
            self._txs[tx_hash] = self._retry(f"eth_getTransactionByHash {tx_hash}",
                                             lambda: self.w3.eth.get_transaction(tx_hash))  # type: ignore[arg-type]
        return self._txs[tx_hash]

    def decode_call(self, tx_hash: str) -> tuple[str, dict[str, Any]]:
        """``(function name, arguments)`` of the contract call in a transaction's calldata."""
        tx = self.transaction(tx_hash)
        fn, args = self._contract.decode_function_input(tx["input"])
        return str(fn.fn_name), dict(args)

    def gas_used(self, tx_hash: str) -> int:
        if tx_hash not in self._receipts:
            self._receipts[tx_hash] = self._retry(
                f"eth_getTransactionReceipt {tx_hash}",
                lambda: self.w3.eth.get_transaction_receipt(tx_hash),  # type: ignore[arg-type]
            )
        return int(self._receipts[tx_hash]["gasUsed"])

    def _block(self, block_number: int) -> Any:
        if block_number not in self._blocks:
            self._blocks[block_number] = self._retry(f"eth_getBlockByNumber {block_number}",
                                                     lambda: self.w3.eth.get_block(block_number))
        return self._blocks[block_number]

    def block_hash(self, block_number: int) -> bytes:
        """The hash of a block (what ``blockhash(block_number)`` gives a contract within 256 blocks)."""
        block = self._block(block_number)
        if block.get("hash") is None:
            raise ChainError(f"block {block_number} from {self.w3.provider} has no hash; is it mined?")
        return bytes(block["hash"])

    def prevrandao(self, block_number: int) -> bytes:
        """The ``block.prevrandao`` of a block: its header's ``prevRandao`` (post-merge ``mixHash``)."""
        block = self._block(block_number)
        value = block.get("prevRandao") or block.get("mixHash")
        if value is None:
            raise ChainError(f"block {block_number} from {self.w3.provider} has neither prevRandao nor mixHash")
        return bytes(value)

    def view(self, fn_name: str, *args: Any) -> Any:
        """A read-only call of the contract (public state the history needs)."""
        fn = getattr(self._contract.functions, fn_name)(*args)
        return self._retry(f"eth_call {fn_name}", fn.call)
