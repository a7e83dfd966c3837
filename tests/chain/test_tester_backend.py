"""The in-process chain's prevrandao: unknown before the chain exists, new every block, reported as ``mixHash``."""

from __future__ import annotations

from eth_abi import encode
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from flare_chain.audit import PASS
from flare_chain.audit.checks import check_seed
from flare_chain.audit.fetch import ChainReader
from flare_chain.audit.history import build_history
from flare_chain.chain import advance_blocks, deploy_coordinator, fund_accounts, in_process_chain
from flare_chain.chain.artifacts import load_artifact
from flare_chain.chain.coordinator import CoordinatorClient
from flare_chain.chain.tester_backend import randao_for_block
from flare_chain.ipfs import cid_of_bytes, cid_to_bytes

OWNER = Account.from_key(keccak(text="randao tests owner"))
NODES = [Account.from_key(keccak(text=f"randao tests node {i}")) for i in range(3)]


def _deployed(w3: Web3) -> CoordinatorClient:
    """The same owner, nodes and deployment on any fresh chain: only the chain's prevrandao differs."""
    fund_accounts(w3, [OWNER, *NODES], 10**19)
    coordinator = deploy_coordinator(w3, OWNER, min_committee_size=2)
    for node in NODES:
        coordinator.register_node(node, 10**18)
    coordinator.initialize_global_adapter(OWNER, cid_to_bytes(cid_of_bytes(b"round-0 adapter")))
    return coordinator


def test_two_in_process_chains_draw_different_seeds_for_round_one() -> None:
    # Prepare: two chains on which everything the owner controls is identical
    first, second = _deployed(in_process_chain()), _deployed(in_process_chain())
    assert first.address == second.address
    # Execute
    seeds = []
    for coordinator in (first, second):
        round_id, _ = coordinator.open_round(OWNER, 5, 3, 5, 5, expected_committee_size=6)
        seeds.append(coordinator.round_info(round_id).seed)
    # Assert: same seed_0, yet round 1's seed differs, and neither is the all-zero-prevrandao seed
    seed_0 = keccak(encode(["uint256", "address"], [first.w3.eth.chain_id, first.address]))
    assert seeds[0] != seeds[1]
    assert keccak(encode(["bytes32", "bytes32"], [seed_0, b"\x00" * 32])) not in seeds


def test_each_block_reports_the_prevrandao_its_transactions_saw() -> None:
    secret = keccak(text="a fixed chain secret")
    w3 = in_process_chain(randao_secret=secret)
    coordinator = _deployed(w3)
    round_id, result = coordinator.open_round(OWNER, 5, 3, 5, 5, expected_committee_size=6)
    advance_blocks(w3, 3)
    head = w3.eth.block_number
    reported = [bytes(w3.eth.get_block(n)["mixHash"]) for n in range(1, head + 1)]
    # a value per block from the chain's secret, all distinct
    assert reported == [randao_for_block(secret, n) for n in range(1, head + 1)]
    assert len(set(reported)) == head
    # and the contract's seed used exactly the opening block's reported value
    opened_in = int(result.receipt["blockNumber"])
    seed_0 = keccak(encode(["uint256", "address"], [w3.eth.chain_id, coordinator.address]))
    expected = keccak(encode(["bytes32", "bytes32"], [seed_0, reported[opened_in - 1]]))
    assert coordinator.round_info(round_id).seed == expected


def test_the_audits_seed_chain_check_passes_on_an_in_process_chain() -> None:
    w3 = in_process_chain()
    coordinator = _deployed(w3)
    deployed_at = w3.eth.block_number
    # round 1 gets no seat claims and fails; round 2 chains its seed on round 1's
    round_1, _ = coordinator.open_round(OWNER, 2, 3, 2, 2, expected_committee_size=6)
    advance_blocks(w3, 8)
    coordinator.finalize_round(OWNER, round_1)
    coordinator.open_round(OWNER, 2, 3, 2, 2, expected_committee_size=6)
    reader = ChainReader(w3, coordinator.address, load_artifact("FlareCoordinator").abi, show_progress=False)
    head = w3.eth.block_number
    history = build_history(reader, reader.events(0, head), chain_id=w3.eth.chain_id, from_block=deployed_at,
                            to_block=head)
    findings = [check_seed(history, history.rounds[rid]) for rid in (1, 2)]
    assert [f.status for f in findings] == [PASS, PASS], [f.line() for f in findings]
