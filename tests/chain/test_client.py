"""CoordinatorClient plumbing: local signing, event scans, dev-chain helpers, artifact loading."""

from __future__ import annotations

import subprocess
import sys

import pytest
from eth_utils import keccak, to_checksum_address

from flare_chain.chain import (
    CoordinatorClient,
    RoundStatus,
    advance_blocks,
    fund_accounts,
    in_process_chain,
    load_artifact,
    sort_addresses,
)
from flare_chain.errors import ChainError, ConfigError


def test_importing_the_chain_package_does_not_import_torch_or_the_compiler():
    code = "import sys, flare_chain.chain; print('torch' in sys.modules, 'solcx' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False False"


def test_missing_artifact_raises_ConfigError_naming_the_compile_command(tmp_path):
    with pytest.raises(ConfigError, match=r"compile_contracts\.py"):
        load_artifact("FlareCoordinator", tmp_path)


def test_sort_addresses_orders_numerically_and_checksums():
    a, b = "0x" + "0f" * 20, "0x" + "a0" * 20
    assert sort_addresses(["0x" + b[2:].upper(), a]) == [to_checksum_address(a), to_checksum_address(b)]
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        sort_addresses(["0x1234"])


def test_client_rejects_a_malformed_address(deployed):
    w3 = deployed[0]
    with pytest.raises(ConfigError, match="not an Ethereum address"):
        CoordinatorClient(w3, "0xnope")


def test_advance_blocks_mines_exactly_n_blocks():
    w3 = in_process_chain()
    start = w3.eth.block_number
    assert advance_blocks(w3, 7) == start + 7 == w3.eth.block_number
    assert advance_blocks(w3, 0) == start + 7
    with pytest.raises(ConfigError):
        advance_blocks(w3, -1)


def test_fund_accounts_transfers_the_amount(deployed):
    w3 = deployed[0]
    target = "0x" + "42" * 20
    fund_accounts(w3, [target], 12345)
    assert w3.eth.get_balance(target) == 12345


def test_event_readers_scan_in_chunks_from_the_deployment_block(deployed):
    w3, owner, nodes, coordinator = deployed
    for node in nodes:
        coordinator.register_node(node, 10**18)
    coordinator.initialize_global_adapter(owner, b"\x01\x02genesis")
    round_id, opened = coordinator.open_round(owner, 3, 3, 3, 3)
    results = [
        coordinator.submit_update(n, round_id, bytes([i]) * 36, 10, keccak(b"m")) for i, n in enumerate(nodes)
    ]
    small_chunks = CoordinatorClient(
        w3, coordinator.address, deployment_block=coordinator.deployment_block, log_chunk_blocks=2
    )

    subs = small_chunks.submissions(round_id)

    assert [s.node for s in subs] == [n.address for n in nodes]
    assert [s.tx_hash for s in subs] == [r.tx_hash for r in results]
    assert [s.block_number for s in subs] == [r.block_number for r in results]
    assert small_chunks.round_opened(round_id).block_number == opened.block_number
    assert len(small_chunks.registrations()) == 3
    assert small_chunks.proposal(round_id) is None and small_chunks.round_outcome(round_id) is None
    assert small_chunks.round_opened(round_id + 1) is None
    assert all(r.gas_used == r.receipt["gasUsed"] > 21_000 for r in results)


def test_view_of_round_never_opened_is_all_zero(deployed):
    info = deployed[3].round_info(999)
    assert info.status is RoundStatus.NONE and info.submission_deadline == 0 and info.seed == bytes(32)


def test_transaction_that_runs_out_of_gas_raises_ChainError(deployed):
    # Prepare: a client whose gas limit is under half the estimate, so the simulation passes but
    # the real transaction cannot finish.
    w3, owner, _, coordinator = deployed
    starved = CoordinatorClient(
        w3, coordinator.address, deployment_block=coordinator.deployment_block, gas_margin=0.45
    )

    # Execute / Assert
    with pytest.raises(ChainError, match="registerNode"):
        starved.register_node(owner, 10**18)
    assert not coordinator.is_registered(owner.address)
