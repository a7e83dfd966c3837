"""Local chains for tests, demos and the devnet: make one, fund accounts, move time.

``in_process_chain`` is eth-tester on py-evm: a whole chain inside the Python
process, no ports, mined one block per transaction. The helpers also work on
anvil (and other dev nodes with unlocked accounts), which the devnet uses.
"""

from __future__ import annotations

from collections.abc import Iterable

from eth_account.signers.local import LocalAccount
from web3 import Web3

from flare_chain.errors import ChainError, ConfigError

__all__ = ["DEV_CLIENT_PREFIXES", "advance_blocks", "fund_accounts", "fund_on_dev_chain", "in_process_chain",
           "is_dev_client"]

DEV_CLIENT_PREFIXES = ("anvil/", "flare-chain-devrpc/", "EthereumTester/", "HardhatNetwork/", "Ganache/")
"""``web3_clientVersion`` prefixes of local development chains, whose unlocked accounts hold public test ether."""


def in_process_chain(*, randao_secret: bytes | None = None) -> Web3:
    """A fresh in-process chain (eth-tester with the py-evm backend) and its ``Web3``.

    Its pre-funded accounts are unlocked (``w3.eth.accounts``); use
    ``fund_accounts`` to give locally generated keys ether. Each block's
    prevrandao is ``keccak256(secret ‖ number)`` with a secret drawn per chain
    (``randao_secret`` fixes it, for a test that needs the same draws every run),
    and blocks report it as their ``mixHash``, so round seeds cannot be computed
    before deployment and the auditor can check them (``chain.tester_backend``).
    """
    from eth_tester import EthereumTester
    from web3 import EthereumTesterProvider

    from flare_chain.chain.tester_backend import RandaoPyEVMBackend

    return Web3(EthereumTesterProvider(EthereumTester(RandaoPyEVMBackend(randao_secret=randao_secret))))


def fund_accounts(
    w3: Web3,
    accounts: Iterable[LocalAccount | str],
    amount_wei: int,
    *,
    funder: str | None = None,
) -> None:
    """Send ``amount_wei`` to each account from ``funder`` (default: the node's first unlocked account).

    For dev chains only (eth-tester, anvil): it relies on the node signing for an
    unlocked account.
    """
    if amount_wei <= 0:
        raise ConfigError(f"amount_wei must be positive, got {amount_wei}")
    source = funder or (w3.eth.accounts[0] if w3.eth.accounts else None)
    if source is None:
        raise ChainError(
            "the node exposes no unlocked account to fund from; pass funder= or fund accounts yourself"
        )
    for account in accounts:
        address = account if isinstance(account, str) else account.address
        tx_hash = w3.eth.send_transaction({"from": source, "to": address, "value": amount_wei})  # type: ignore[typeddict-item]
        receipt = w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ChainError(f"funding {address} from {source} failed (tx {tx_hash.to_0x_hex()})")


def is_dev_client(client_version: str) -> bool:
    """Whether a node's ``web3_clientVersion`` names a local development chain (anvil, the project's dev chain...)."""
    return client_version.startswith(DEV_CLIENT_PREFIXES)


def fund_on_dev_chain(w3: Web3, addresses: Iterable[str], amount_wei: int, *, where: str = "the chain") -> str:
    """Pay ``amount_wei`` to each address from a local dev chain's first prefunded account; returns that account.

    Refuses (ConfigError, nothing sent) any chain whose client is not a known
    development chain or that exposes no unlocked account: on a real network
    ether comes from a wallet, and this command must never look as if it could
    mint it.
    """
    try:
        client = str(w3.client_version)
    except Exception as exc:  # a node that hides its version is no dev chain we know
        client = f"unknown ({type(exc).__name__})"
    if not is_dev_client(client):
        raise ConfigError(f"{where} (chain id {w3.eth.chain_id}, client {client}) is not a local development chain; "
                          "`chain fund` only pays from a dev chain's prefunded accounts: send ether to the address "
                          "from a funded wallet instead")
    accounts = list(w3.eth.accounts)
    if not accounts:
        raise ConfigError(f"{where} ({client}) exposes no prefunded account to pay from; start it with its dev "
                          "accounts (anvil does by default; `flare-chain chain serve --accounts 10`)")
    fund_accounts(w3, list(addresses), amount_wei, funder=accounts[0])
    return str(accounts[0])


def advance_blocks(w3: Web3, n: int) -> int:
    """Mine ``n`` empty blocks (eth-tester, anvil or any node with ``evm_mine``); return the new head.

    Rounds have deadlines in blocks, so tests and demos use this to let phases end.
    """
    if n < 0:
        raise ConfigError(f"cannot advance a negative number of blocks ({n})")
    if n == 0:
        return int(w3.eth.block_number)
    tester = getattr(w3.provider, "ethereum_tester", None)
    if tester is not None:
        tester.mine_blocks(n)
        return int(w3.eth.block_number)
    start = int(w3.eth.block_number)
    if _rpc(w3, "anvil_mine", [hex(n)]) is not None:
        for _ in range(n):
            if (error := _rpc(w3, "evm_mine", [])) is not None:
                raise ChainError(
                    f"the node at {w3.provider} supports neither anvil_mine nor evm_mine: {error}"
                )
    head = int(w3.eth.block_number)
    if head < start + n:
        raise ChainError(f"asked to mine {n} blocks from {start} but the head is {head}")
    return head


def _rpc(w3: Web3, method: str, params: list[object]) -> str | None:
    """Call a dev-node RPC method; return None on success, the error text otherwise."""
    try:
        response = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    except Exception as exc:
        return str(exc)
    return str(response["error"]) if "error" in response else None
