"""Send a node's transactions so that a crash can never make it send one twice.

``chain.transactions.send_transaction`` signs and broadcasts in one breath; a
daemon killed between the two cannot tell whether its vote left. Here the
signed bytes are written to the node's state first (``NodeState.record_signed``)
and only then broadcast. On restart the same bytes are re-broadcast (same hash,
same nonce), and before anything is sent at all the chain is asked whether the
effect is already there (``already_done``), so the worst a crash can cost is a
harmless "already known" from the RPC endpoint.

``faults`` is the daemon's fault-injection hook (``flare_chain.node.daemon``):
it is called at ``<step>:signed`` (stored, not broadcast) and ``<step>:sent``
(broadcast, not yet recorded).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from flare_chain.chain.revert import ErrorDecoder, revert_data_from_exception
from flare_chain.chain.transactions import DEFAULT_GAS_MARGIN, gas_limit, mined_revert_error, require_funds
from flare_chain.chain.transactions import _estimate_gas as estimate_gas  # shared simulation rules
from flare_chain.chain.transactions import _fee_fields as fee_fields
from flare_chain.chain.transactions import _simulate as simulate
from flare_chain.errors import ChainError
from flare_chain.node.state import NodeState, StepRecord, StepStatus

__all__ = ["DurableSender", "SendOutcome"]

log = logging.getLogger("flare_chain.node")


@dataclass(frozen=True)
class SendOutcome:
    """How a durable send ended: ``tx_hash`` is None when the chain already showed the effect."""

    tx_hash: str | None
    block_number: int | None
    gas_used: int
    resent: bool
    already_on_chain: bool


class DurableSender:
    """Sign, store, broadcast and confirm one transaction per (round, step) for ``account``."""

    def __init__(self, w3: Web3, account: LocalAccount, state: NodeState, decoder: ErrorDecoder, *,
                 faults: Callable[[str], None] = lambda point: None, gas_margin: float = DEFAULT_GAS_MARGIN,
                 receipt_timeout_s: float = 120.0) -> None:
        self.w3 = w3
        self.account = account
        self.state = state
        self.decoder = decoder
        self._faults = faults
        self._gas_margin = gas_margin
        self._receipt_timeout_s = receipt_timeout_s

    def send(self, round_id: int, step: str, *, to: str, data: str | bytes, already_done: Callable[[], bool],
             value_wei: int = 0, detail: dict[str, Any] | None = None, min_gas: int = 0) -> SendOutcome:
        """Make sure step ``step`` of ``round_id`` is on-chain exactly once; return how it got there.

        ``already_done`` asks the chain whether the effect exists (e.g.
        ``submissionHash != 0``); it is consulted before signing and before any
        re-broadcast. ``min_gas`` is a floor under the signed gas limit
        (:func:`~flare_chain.chain.transactions.gas_limit`). Reverts raise
        ChainError with the contract's error.
        """
        rec = self.state.get(round_id, step)
        if rec is not None and rec.status == StepStatus.DONE:
            return SendOutcome(rec.tx_hash, rec.detail.get("block"), int(rec.detail.get("gas_used", 0)),
                               resent=False, already_on_chain=False)
        if rec is not None and rec.raw_tx is not None and rec.tx_hash is not None:
            return self._resume(round_id, step, rec.raw_tx, rec.tx_hash, already_done)
        if already_done():
            self.state.record_done(round_id, step, {"found_on_chain": True})
            return SendOutcome(None, None, 0, resent=False, already_on_chain=True)
        self.state.record_intent(round_id, step, detail)
        tx: dict[str, Any] = {"from": self.account.address, "to": to, "data": data, "value": value_wei}
        require_funds(self.w3, self.account.address, value_wei=value_wei, label=step)
        simulate(self.w3, tx, step, self.decoder)
        estimate = estimate_gas(self.w3, tx, step, self.decoder)
        fees = fee_fields(self.w3)
        tx.update(nonce=self.w3.eth.get_transaction_count(self.account.address, "pending"),
                  chainId=self.w3.eth.chain_id, gas=gas_limit(estimate, self._gas_margin, min_gas), **fees)
        require_funds(self.w3, self.account.address, value_wei=value_wei, label=step, gas=tx["gas"], fees=fees)
        signed = self.account.sign_transaction(tx)
        tx_hash = HexBytes(signed.hash).to_0x_hex()
        self.state.record_signed(round_id, step, bytes(signed.raw_transaction), tx_hash, int(tx["nonce"]))
        self._faults(f"{step}:signed")
        self._broadcast(bytes(signed.raw_transaction), tx_hash, step)
        self._faults(f"{step}:sent")
        return self._confirm(round_id, step, tx_hash, resent=False)

    def settle(self, round_id: int, step: str, reason: str) -> StepRecord:
        """Close a step whose round is over and will never take its transaction.

        A stored transaction that was mined makes the step done (or failed, if
        it reverted); otherwise, at intent or with a transaction never mined, the
        step is skipped with ``reason``, so no row stays open after its round.
        """
        rec = self.state.get(round_id, step)
        if rec is not None and rec.status.is_final:
            return rec
        tx_hash = rec.tx_hash if rec is not None else None
        receipt = self._receipt(tx_hash) if tx_hash is not None else None
        if receipt is not None and receipt["status"] == 1:
            return self.state.record_done(round_id, step, {"block": int(receipt["blockNumber"]),
                                                           "gas_used": int(receipt["gasUsed"]), "tx_hash": tx_hash})
        if receipt is not None:
            return self.state.record_failed(round_id, step, f"transaction {tx_hash} mined in block "
                                            f"{receipt['blockNumber']} but reverted")
        if tx_hash is not None:
            reason = f"{reason}; its stored transaction {tx_hash} was never mined"
        return self.state.record_skipped(round_id, step, reason)

    def _resume(self, round_id: int, step: str, raw: bytes, tx_hash: str,
                already_done: Callable[[], bool]) -> SendOutcome:
        """A transaction was stored before a restart: find it mined, or re-send the same bytes."""
        if self._receipt(tx_hash) is None:
            if already_done():  # e.g. mined under another hash by an operator by hand
                self.state.record_done(round_id, step, {"found_on_chain": True})
                return SendOutcome(None, None, 0, resent=False, already_on_chain=True)
            log.info("round %d %s: re-broadcasting stored transaction %s", round_id, step, tx_hash)
            self._broadcast(raw, tx_hash, step)
            return self._confirm(round_id, step, tx_hash, resent=True)
        return self._confirm(round_id, step, tx_hash, resent=False)

    def _receipt(self, tx_hash: str) -> Any:
        try:
            return self.w3.eth.get_transaction_receipt(HexBytes(tx_hash))
        except Exception as exc:  # TransactionNotFound, or eth-tester's own "unknown transaction"
            if type(exc).__name__ in ("TransactionNotFound", "TransactionNotFoundError") or "not found" in str(
                    exc).lower() or "unknown" in str(exc).lower():
                return None
            raise

    def _broadcast(self, raw: bytes, tx_hash: str, step: str) -> None:
        try:
            self.w3.eth.send_raw_transaction(raw)
        except Exception as exc:
            text = str(exc).lower()
            if "already known" in text or "known transaction" in text or "already imported" in text:
                return  # the endpoint holds it already: exactly the bytes we mean to send
            if self._receipt(tx_hash) is not None:
                return  # mined before we asked again
            data = revert_data_from_exception(exc)
            if data is not None:
                raise self.decoder.chain_error(step, data, str(exc)) from exc
            raise ChainError(f"{step}: the node refused transaction {tx_hash} from {self.account.address}: {exc}; "
                             "it stays stored and is re-sent on the next attempt") from exc

    def _confirm(self, round_id: int, step: str, tx_hash: str, *, resent: bool) -> SendOutcome:
        receipt = self.w3.eth.wait_for_transaction_receipt(HexBytes(tx_hash), timeout=self._receipt_timeout_s)
        if receipt["status"] != 1:
            error = mined_revert_error(self.w3, tx_hash, receipt, step, self.decoder)
            self.state.record_failed(round_id, step, str(error))
            raise error
        block, gas = int(receipt["blockNumber"]), int(receipt["gasUsed"])
        self.state.record_done(round_id, step, {"block": block, "gas_used": gas, "tx_hash": tx_hash})
        return SendOutcome(tx_hash, block, gas, resent=resent, already_on_chain=False)
