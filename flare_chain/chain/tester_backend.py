"""eth-tester backends: transaction lookups by index, and blocks that report the ``prevrandao`` used.

eth-tester finds a transaction (for a receipt, or each log ``eth_getLogs``
returns) by scanning every block from the head down, so the cost of a lookup
grows with the chain and reading a long history's logs grows with its square.
py-evm keeps a hash → (block, index) lookup for canonical transactions;
``IndexedPyEVMBackend`` uses it, with the same answers.


eth-tester runs a block's transactions against a pending header whose
``mixHash`` is 0, so every transaction sees ``block.prevrandao == 0`` and every
round seed on such a chain can be computed before the contract is deployed.
When it seals the block it then draws a fresh random ``mixHash`` for it, so
the value it reports is not the one the contract used either, and no seed can
be recomputed from it. Real clients (geth, anvil, reth) give each block a
prevrandao nobody knew before its parent was sealed and report the value the
EVM saw. ``RandaoPyEVMBackend`` does the same: each chain draws a secret at
start-up, block ``n``'s prevrandao is ``keccak256(secret ‖ n)`` (unknown to
anyone outside the process, different on every chain), the pending header
carries it while the block's transactions run, and the sealed block reports
it, so histories built on it can be audited like any other chain.

It also answers ``eth_estimateGas`` with a fixed generous limit instead of
py-evm's binary search (some twenty executions per transaction, which
dominated the time to generate long histories). The project's
``send_transaction`` runs every call with ``eth_call`` first and raises on a
revert, so nothing is lost; the receipts' ``gasUsed`` an audit reports does not
depend on the limit a transaction was sent with.
"""

from __future__ import annotations

import os
from typing import Any

from eth_utils import keccak
from web3 import Web3

__all__ = ["FIXED_GAS_ESTIMATE", "IndexedPyEVMBackend", "RandaoPyEVMBackend", "audit_ready_chain",
           "faithful_backend_class", "randao_for_block"]


FIXED_GAS_ESTIMATE = 8_000_000
"""What ``eth_estimateGas`` answers on this chain, without executing anything."""


def _fixed_gas_estimate(state: Any, transaction: Any) -> int:
    """A generous fixed limit: the project's ``send_transaction`` has already run the call (``eth_call``)
    and raised on a revert, so estimating would only execute it again (py-evm's binary search: ~20 times)."""
    return min(FIXED_GAS_ESTIMATE, int(state.gas_limit) // 3)


def _indexed_backend_class() -> type:
    from eth.exceptions import TransactionNotFound
    from eth_tester import PyEVMBackend
    from eth_tester.backends.pyevm import main as pyevm_main

    def find(chain: Any, transaction_hash: bytes) -> tuple[Any, Any, int]:
        pending = chain.get_block()
        for index, transaction in enumerate(pending.transactions):
            if transaction.hash == transaction_hash:
                return pending, transaction, index
        try:
            number, index = chain.chaindb.get_transaction_index(transaction_hash)
        except TransactionNotFound:
            return pyevm_main._get_transaction_by_hash(chain, transaction_hash)  # raises eth-tester's error
        block = chain.get_canonical_block_by_number(number)
        if index >= len(block.transactions) or block.transactions[index].hash != transaction_hash:  # a stale lookup after a revert: scan as eth-tester does
            return pyevm_main._get_transaction_by_hash(chain, transaction_hash)
        return block, block.transactions[index], index

    class IndexedPyEVMBackend(PyEVMBackend):  # type: ignore[misc]
        """``PyEVMBackend`` with transaction lookups by py-evm's index instead of a scan of every block."""

        def get_transaction_by_hash(self, transaction_hash: bytes) -> Any:
            block, transaction, index = find(self.chain, transaction_hash)
            is_pending = block.number == self.chain.get_block().number
            return pyevm_main.serialize_transaction(block, transaction, index, is_pending)

        def get_transaction_receipt(self, transaction_hash: bytes) -> Any:
            block, transaction, index = find(self.chain, transaction_hash)
            is_pending = block.number == self.chain.get_block().number
            return pyevm_main.serialize_transaction_receipt(
                block, block.get_receipts(self.chain.chaindb), transaction, index, is_pending,
                self.chain.get_vm(),
            )

    return IndexedPyEVMBackend


IndexedPyEVMBackend: type = _indexed_backend_class()


RANDAO_SECRET_BYTES = 32
"""Length of a chain's prevrandao secret."""


def randao_for_block(secret: bytes, block_number: int) -> bytes:
    """The prevrandao of block ``block_number`` on the chain drawn with ``secret``: keccak256(secret ‖ number)."""
    return keccak(secret + block_number.to_bytes(32, "big"))


def _randao_backend_class() -> type:
    from eth.vm.forks import PragueVM
    from eth.vm.forks.cancun import get_total_blob_gas

    class RandaoPyEVMBackend(IndexedPyEVMBackend):  # type: ignore[misc,valid-type]
        """``IndexedPyEVMBackend`` whose blocks have an unpredictable prevrandao, reported as their ``mixHash``.

        ``randao_secret`` fixes the chain's secret (reproducible draws for a test that
        needs them); by default each chain draws its own from ``os.urandom``.
        """

        def __init__(self, *args: Any, randao_secret: bytes | None = None, **kwargs: Any) -> None:
            if randao_secret is not None and len(randao_secret) != RANDAO_SECRET_BYTES:
                from flare_chain.errors import ConfigError

                raise ConfigError(f"randao_secret must be {RANDAO_SECRET_BYTES} bytes, got {len(randao_secret)}")
            self._randao_secret = randao_secret if randao_secret is not None else os.urandom(RANDAO_SECRET_BYTES)
            super().__init__(*args, **kwargs)

        def _arm_pending_header(self) -> None:
            # The pending header is rebuilt from its parent (mix_hash 0) after every seal, revert and reset.
            header = self.chain.header
            self.chain.header = header.copy(mix_hash=randao_for_block(self._randao_secret, header.block_number))

        def reset_to_genesis(self, *args: Any, **kwargs: Any) -> None:
            super().reset_to_genesis(*args, **kwargs)
            self._arm_pending_header()

        def revert_to_snapshot(self, snapshot: Any) -> None:
            super().revert_to_snapshot(snapshot)
            self._arm_pending_header()

        def mine_blocks(self, num_blocks: int = 1, coinbase: Any = b"\x00" * 20) -> tuple[bytes, ...]:
            hashes = []
            for _ in range(num_blocks):
                # seal with the value the block's transactions saw, not a fresh random one
                kwargs: dict[str, Any] = {"coinbase": coinbase, "mix_hash": self.chain.header.mix_hash}
                if isinstance(self.chain.get_vm(), PragueVM):
                    kwargs["blob_gas_used"] = sum(
                        get_total_blob_gas(tx) for tx in self.chain.get_block().transactions
                    )
                block = self.chain.mine_block(**kwargs)
                self._arm_pending_header()
                hashes.append(block.hash)
            return tuple(hashes)

    return RandaoPyEVMBackend


RandaoPyEVMBackend: type = _randao_backend_class()


def faithful_backend_class() -> type[Any]:
    """The backend class whose blocks have an unpredictable prevrandao and report it (``RandaoPyEVMBackend``).

    Drop-in where a ``PyEVMBackend`` is built (``cls()``, ``cls.from_mnemonic(...)``), e.g. by a dev
    RPC server whose histories should be auditable.
    """
    return RandaoPyEVMBackend


def _fast_estimates(backend: Any) -> Any:
    # Set on the chain's class (made for this backend alone), so it survives snapshot reverts,
    # which rebuild the chain object from the same class.
    type(backend.chain).gas_estimator = staticmethod(_fixed_gas_estimate)
    backend.chain.gas_estimator = _fixed_gas_estimate  # the instance got the default at init
    return backend


def audit_ready_chain(*, randao_secret: bytes | None = None) -> Web3:
    """A fresh ``in_process_chain()`` that also answers ``eth_estimateGas`` without executing (long histories)."""
    from eth_tester import EthereumTester
    from web3 import EthereumTesterProvider

    backend = _fast_estimates(RandaoPyEVMBackend(randao_secret=randao_secret))
    return Web3(EthereumTesterProvider(EthereumTester(backend)))
