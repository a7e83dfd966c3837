"""Sign and send contract transactions from local accounts, with reverts explained.

Every transaction is simulated first (``eth_call``), so a call that would revert
raises a ``ChainError`` naming the contract's custom error before anything is
signed or paid for. Then: gas from ``eth_estimateGas`` with a margin, EIP-1559
fees from the latest block, local signing with an eth-account ``LocalAccount``,
``eth_sendRawTransaction`` and a wait for the receipt. This works the same on
eth-tester, anvil and any JSON-RPC node, because no account has to be unlocked
on the node.
"""

from __future__ import annotations

from typing import Any

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes
from web3 import Web3

from flare_chain.chain.records import TxResult
from flare_chain.chain.revert import ErrorDecoder, revert_data_from_exception
from flare_chain.errors import ChainError

__all__ = ["DEFAULT_GAS_MARGIN", "DEFAULT_RECEIPT_TIMEOUT_S", "call_view", "format_wei", "gas_limit",
           "mined_revert_error", "require_funds",
           "send_transaction"]

DEFAULT_GAS_MARGIN = 1.25
DEFAULT_RECEIPT_TIMEOUT_S = 120.0
_FALLBACK_PRIORITY_FEE_WEI = 1_000_000_000
_BASE_TX_GAS = 21_000


def _simulate(
    w3: Web3, tx: dict[str, Any], label: str, decoder: ErrorDecoder, block: Any = "pending"
) -> None:
    try:
        w3.eth.call(tx, block)  # type: ignore[arg-type]
    except Exception as exc:
        raise decoder.chain_error(label, revert_data_from_exception(exc), str(exc)) from exc


def _estimate_gas(w3: Web3, tx: dict[str, Any], label: str, decoder: ErrorDecoder) -> int:
    """Estimate against the pending block, where the transaction will actually run.

    Deadlines are block numbers, so estimating at ``latest`` (block.number = head,
    as anvil does by default) can revert for a call that is valid in the next
    block. eth-tester does not support ``pending`` here; it estimates in a child of
    the head anyway, so fall back to the default there.
    """
    try:
        return int(w3.eth.estimate_gas(tx, "pending"))  # type: ignore[arg-type]
    except Exception as exc:
        if (data := revert_data_from_exception(exc)) is not None:
            raise decoder.chain_error(label, data, str(exc)) from exc
    try:
        return int(w3.eth.estimate_gas(tx))  # type: ignore[arg-type]
    except Exception as exc:
        raise decoder.chain_error(label, revert_data_from_exception(exc), str(exc)) from exc


def gas_limit(estimate: int, margin: float, floor: int = 0) -> int:
    """The gas limit to sign: the estimate times ``margin``, and never below ``floor``.

    An estimate is taken against the state the node sees; a call whose path depends on
    what lands before it in the same block (the vote that reaches the threshold also
    commits the round) needs a floor that covers its longest path. Unused gas is not paid.
    """
    return max(int(estimate * margin), floor)


def mined_revert_error(w3: Web3, tx_hash: str, receipt: Any, label: str, decoder: ErrorDecoder) -> ChainError:
    """Why a mined transaction failed, in the operator's terms.

    Out of gas when it used its whole limit (nothing else consumes every unit); otherwise the
    call is replayed on the state its block left, which holds whatever beat it there (another
    member's vote that already committed the round), and the contract's error is decoded.
    """
    sent = w3.eth.get_transaction(HexBytes(tx_hash))
    block, used, limit = int(receipt["blockNumber"]), int(receipt["gasUsed"]), int(sent["gas"])
    where = f"{label} transaction {tx_hash} was mined in block {block} but failed"
    if used >= limit:
        return ChainError(f"{where}: it ran out of gas (all {limit} of its limit used): the call took a longer "
                          "path than its estimate (a transaction before it in the block changed the state); "
                          "send it again with a higher gas limit",
                          error_name="OutOfGas", error_args=(limit,))
    replay: dict[str, Any] = {"from": sent["from"], "to": sent["to"], "data": sent["input"], "value": sent["value"]}
    try:
        _simulate(w3, replay, label, decoder, block)
    except ChainError as exc:
        return ChainError(f"{where}: {exc}", error_name=exc.error_name, error_args=exc.error_args)
    return ChainError(f"{where} (gas used {used} of {limit}); replayed after its block it succeeds, so the state "
                      "changed under it: check the round's state")


def format_wei(wei: int) -> str:
    """An amount as an operator reads it: ether with up to 6 decimals, and the exact wei."""
    return f"{wei / 10**18:.6f}".rstrip("0").rstrip(".") + f" ETH ({wei} wei)"


def require_funds(w3: Web3, address: str, *, value_wei: int, label: str, gas: int | None = None,
                  fees: dict[str, int] | None = None) -> None:
    """Raise ChainError naming ``address`` and the amount it lacks when it cannot pay for ``label``.

    Called before simulating, with ``gas`` None (value plus the 21,000 gas
    every transaction costs: a lower bound, since an account that cannot pay
    even that makes the simulation fail with an unreadable revert), and again
    once gas and fees are known (value + gas × max fee). Without it a node
    sees the endpoint's generic refusal, or a simulation failure that reads
    like a bad argument.
    """
    fees = fees if fees is not None else _fee_fields(w3)
    price = int(fees.get("maxFeePerGas", fees.get("gasPrice", 0)))
    bound = gas is None
    gas = _BASE_TX_GAS if gas is None else gas
    need = value_wei + gas * price
    balance = int(w3.eth.get_balance(address))  # type: ignore[arg-type]
    if balance >= need:
        return
    parts = [f"{format_wei(value_wei)} value"] if value_wei else []
    parts.append(f"{'at least ' if bound else 'up to '}{gas} gas at {price} wei")
    raise ChainError(f"{label}: {address} holds {format_wei(balance)} but needs {'at least ' if bound else ''}"
                     f"{format_wei(need)} ({' + '.join(parts)}) on chain {w3.eth.chain_id}; send it at least "
                     f"{format_wei(need - balance)} (on a local dev chain: `flare-chain chain fund {address} "
                     "--rpc URL`)", error_name="InsufficientFunds", error_args=(address, need, balance))


def _fee_fields(w3: Web3) -> dict[str, int]:
    base_fee = w3.eth.get_block("latest").get("baseFeePerGas")
    if base_fee is None:  # pre-London chain
        return {"gasPrice": int(w3.eth.gas_price)}
    try:
        priority = int(w3.eth.max_priority_fee)
    except Exception:
        priority = _FALLBACK_PRIORITY_FEE_WEI
    return {"maxFeePerGas": 2 * int(base_fee) + priority, "maxPriorityFeePerGas": priority}


def send_transaction(
    w3: Web3,
    account: LocalAccount,
    *,
    to: str | None,
    data: str | bytes,
    label: str,
    decoder: ErrorDecoder,
    value_wei: int = 0,
    gas_margin: float = DEFAULT_GAS_MARGIN,
    min_gas: int = 0,
    receipt_timeout_s: float = DEFAULT_RECEIPT_TIMEOUT_S,
) -> TxResult:
    """Simulate, sign with ``account``, send and wait; return the mined result.

    ``to=None`` deploys ``data`` as contract creation code. ``label`` names the
    call in errors (e.g. ``"submitUpdate"``). ``min_gas`` is a floor under the
    gas limit (see :func:`gas_limit`). Raises ChainError when the
    simulation reverts (with the decoded custom error) or the mined receipt has
    status 0.
    """
    tx: dict[str, Any] = {"from": account.address, "data": data, "value": value_wei}
    if to is not None:
        tx["to"] = to
    require_funds(w3, account.address, value_wei=value_wei, label=label)
    _simulate(w3, tx, label, decoder)
    estimate = _estimate_gas(w3, tx, label, decoder)
    fees = _fee_fields(w3)
    tx.update(
        nonce=w3.eth.get_transaction_count(account.address, "pending"),
        chainId=w3.eth.chain_id,
        gas=gas_limit(estimate, gas_margin, min_gas),
        **fees,
    )
    require_funds(w3, account.address, value_wei=value_wei, label=label, gas=tx["gas"], fees=fees)
    signed = account.sign_transaction(tx)
    try:
        tx_hash = w3.eth.send_raw_transaction(signed.raw_transaction)
    except Exception as exc:
        data_bytes = revert_data_from_exception(exc)
        if data_bytes is not None:
            raise decoder.chain_error(label, data_bytes, str(exc)) from exc
        raise ChainError(f"{label}: the node refused the transaction from {account.address}: {exc}") from exc
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=receipt_timeout_s)
    if receipt["status"] != 1:
        raise mined_revert_error(w3, tx_hash.to_0x_hex(), receipt, label, decoder)
    return TxResult(
        tx_hash=tx_hash.to_0x_hex(),
        gas_used=int(receipt["gasUsed"]),
        block_number=int(receipt["blockNumber"]),
        receipt=receipt,
    )


def call_view(fn: Any, label: str, decoder: ErrorDecoder) -> Any:
    """Call a read-only contract function, turning reverts into ChainError."""
    try:
        return fn.call()
    except Exception as exc:
        raise decoder.chain_error(label, revert_data_from_exception(exc), str(exc)) from exc
