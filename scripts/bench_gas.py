"""Gas of every FlareCoordinator call in a round, and of whole rounds by nodes and committee size.

Runs on an in-process eth-tester chain (py-evm), deploying the committed
artifact. Every figure is the ``gasUsed`` of a mined transaction receipt, so it
includes the 21,000 base and the calldata; the baseline, measured in the same
run, is a plain value transfer (21,000). Targets (issues 3 and 12): a seat claim,
proof verification and weight draw included, ≤ 120,000 gas for at least 99.9%
of claims; an update submission ≤ 60,000; proposal gas flat in the number of
accepted updates (the contract stores the list's hash, no per-entry storage).

Part 1, one round call by call: nodes register (equal stakes), the owner sets the
adapter and opens the round, every node submits, the selected nodes claim seats
(VRF proof verified on chain), the leader proposes the aggregate of every update,
members approve until the vote that commits. ``finalizeRound`` is measured on two
failing rounds: one whose committee stays empty (CommitteeTooSmall) and one whose
proposal gets no votes (VoteTimeout). Calls that vary (claims: hash-to-curve
tries; submissions: first vs later slot writes) show min/mean/max; the claim
figures pool every claim of the whole run.

Part 2, whole rounds: for nodes in (10, 50, 100) and expected committee size k
in (5, 10, 20), the gas of one round from ``openRound`` to the committing vote
(registration is a one-off and left out; it is in part 1), with the proposal's
own gas beside it (every node's update accepted).

    python scripts/bench_gas.py                    # a few minutes on 2 cores
    python scripts/bench_gas.py --nodes 10,50 --sizes 5,10 --reps 2
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from flare_chain.chain import (
    CoordinatorClient,
    ErrorDecoder,
    RoundStatus,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
    public_key_words,
)
from flare_chain.chain.transactions import send_transaction
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ChainError
from flare_chain.progress import progress
from flare_chain.protocol import accepted_root

__all__ = ["main"]

CLAIM_TARGET = 120_000
SUBMIT_TARGET = 60_000
STAKE_WEI = 10**18
THRESHOLD_BPS = 6667
DETAIL_NODES = 20
DETAIL_K = 10
DEFAULT_NODES = (10, 50, 100)
DEFAULT_SIZES = (5, 10, 20)
_GAS_LIMIT = 3_000_000


@dataclass
class GasLog:
    """Gas of every measured call, by label."""

    calls: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))

    def add(self, label: str, gas: int) -> int:
        self.calls[label].append(gas)
        return gas


@dataclass
class Federation:
    w3: Web3
    owner: LocalAccount
    nodes: list[LocalAccount]
    client: CoordinatorClient
    send: RawSender


class RawSender:
    """Sends contract calls as raw signed transactions with a fixed gas limit.

    The client's ``send_transaction`` simulates and estimates every call first (safe for
    operators, ~6x slower on eth-tester); the bench only needs each receipt's ``gasUsed``,
    which does not depend on the gas limit. A reverted call raises.
    """

    def __init__(self, w3: Web3, client: CoordinatorClient) -> None:
        self.w3, self.client = w3, client
        self.chain_id = int(w3.eth.chain_id)

    def __call__(self, account: LocalAccount, fn_name: str, *args: object, value_wei: int = 0) -> int:
        tx = {
            "to": self.client.address,
            "data": self.client.contract.encode_abi(fn_name, args=list(args)),
            "value": value_wei,
            "gas": _GAS_LIMIT,
            "nonce": int(self.w3.eth.get_transaction_count(account.address)),
            "chainId": self.chain_id,
            "maxFeePerGas": 10**11,
            "maxPriorityFeePerGas": 10**9,
        }
        tx_hash = self.w3.eth.send_raw_transaction(account.sign_transaction(tx).raw_transaction)
        receipt = self.w3.eth.get_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise ChainError(f"bench: {fn_name} from {account.address} reverted (tx {tx_hash.to_0x_hex()})")
        return int(receipt["gasUsed"])


def _cid(label: str) -> bytes:
    return b"\x01\x55\x12\x20" + keccak(text=label)


def baseline_transfer_gas(w3: Web3, sender: LocalAccount) -> int:
    """Gas of a plain value transfer on this chain (the 21,000 every transaction pays)."""
    result = send_transaction(
        w3, sender, to="0x" + "42" * 20, data=b"", label="transfer", decoder=ErrorDecoder([]), value_wei=1
    )
    return result.gas_used


def build_federation(n_nodes: int, log: GasLog, tag: str) -> Federation:
    """A fresh chain, a coordinator and ``n_nodes`` registered nodes of equal stake."""
    w3 = in_process_chain()
    owner = Account.from_key(keccak(text=f"bench gas owner {tag}"))
    nodes = [Account.from_key(keccak(text=f"bench gas node {tag} {i}")) for i in range(n_nodes)]
    fund_accounts(w3, [owner, *nodes], 10 * STAKE_WEI)
    client = deploy_coordinator(w3, owner, approval_threshold_bps=THRESHOLD_BPS, min_committee_size=2)
    send = RawSender(w3, client)
    for node in nodes:
        log.add("registerNode", send(node, "registerNode", list(public_key_words(node)), value_wei=STAKE_WEI))
    log.add("initializeGlobalAdapter", send(owner, "initializeGlobalAdapter", _cid(f"genesis {tag}")))
    return Federation(w3, owner, nodes, client, send)


def _to_block(w3: Web3, block: int) -> None:
    """Mine so that the next transaction lands in ``block``."""
    advance_blocks(w3, max(0, block - 1 - int(w3.eth.block_number)))


def _open(fed: Federation, phases: tuple[int, int, int, int], k: int, log: GasLog) -> int:
    log.add("openRound", fed.send(fed.owner, "openRound", *phases, k))
    return fed.client.current_round()


def _claims(fed: Federation, round_id: int, log: GasLog) -> dict[str, tuple[int, int]]:
    """Every node that draws weight claims its seat (proof verified on chain); member -> (weight, score)."""
    c = fed.client
    info = c.sortition_info(round_id)
    _to_block(fed.w3, c.round_info(round_id).submission_deadline + 1)
    alpha = sortition.vrf_alpha(int(fed.w3.eth.chain_id), c.address, round_id, c.claim_seed(round_id))
    seats: dict[str, tuple[int, int]] = {}
    for node in fed.nodes:
        proof = vrf.prove(bytes(node.key), alpha)
        output = vrf.proof_to_hash(proof)
        weight = sortition.seat_weight(output, info.expected_committee_size, STAKE_WEI, info.total_stake)
        if weight:
            p = vrf.compute_fast_verify_params(vrf.public_key(bytes(node.key)), proof, alpha)
            args = (list(p.proof_words()), list(p.u_point), list(p.v_components()), list(p.hash_roots))
            log.add("claimSeat", fed.send(node, "claimSeat", round_id, *args))
            seats[node.address] = (weight, sortition.leader_score(output, weight))
    return seats


def _propose(fed: Federation, round_id: int, seats: dict[str, tuple[int, int]], accepted: list[str],
             cid: bytes) -> int:
    _to_block(fed.w3, fed.client.round_info(round_id).claim_deadline + 1)
    order = sortition.leader_order({a: score for a, (_, score) in seats.items()})
    leader = next(x for x in fed.nodes if x.address == order[0])
    return fed.send(leader, "proposeAggregate", round_id, cid, accepted_root(accepted), len(accepted))


def run_round(fed: Federation, k: int, log: GasLog) -> tuple[int, int, int]:
    """One round until it commits (or fails for an empty committee); returns (total gas, seats, proposal gas)."""
    c, n = fed.client, len(fed.nodes)
    round_log = GasLog()
    # Every node gets a block for its submission and its claim.
    round_id = _open(fed, (n + 1, n + 1, 2 * n + 8, 2 * n + 8), k, round_log)
    for i, node in enumerate(fed.nodes):
        args = (round_id, _cid(f"update {round_id} {i}"), 100 + i, keccak(b"m%d" % i))
        round_log.add("submitUpdate", fed.send(node, "submitUpdate", *args))
    seats = _claims(fed, round_id, round_log)
    propose_gas = 0
    if not seats:  # an empty committee (probability e^-k): the round fails, nothing to commit
        _to_block(fed.w3, c.round_info(round_id).claim_deadline + 1)
        round_log.add("finalizeRound (CommitteeTooSmall)", fed.send(fed.owner, "finalizeRound", round_id))
    else:
        accepted = [node.address for node in fed.nodes]
        gas = propose_gas = _propose(fed, round_id, seats, accepted, _cid(f"aggregate {round_id}"))
        round_log.add(f"proposeAggregate ({n} accepted)", gas)
        by_address = {node.address: node for node in fed.nodes}
        committee_weight, approvals = sum(w for w, _ in seats.values()), 0
        for member, (weight, _) in seats.items():
            gas = fed.send(by_address[member], "vote", round_id, 0, True)
            approvals += weight
            if approvals * 10_000 >= THRESHOLD_BPS * committee_weight:
                round_log.add("vote (the one that commits)", gas)
                break
            round_log.add("vote", gas)
        if c.round_info(round_id).status is not RoundStatus.COMMITTED:
            raise ChainError(f"bench: round {round_id} did not commit after its votes")
    for name, values in round_log.calls.items():
        for gas in values:
            log.add(name, gas)
    return sum(sum(v) for v in round_log.calls.values()), len(seats), propose_gas


def failing_rounds(fed: Federation, log: GasLog) -> None:
    """finalizeRound on a round with no seats and on a proposal nobody voted on."""
    c, w3, n = fed.client, fed.w3, len(fed.nodes)
    round_id = _open(fed, (2, 3, 2, 2), DETAIL_K, GasLog())
    _to_block(w3, c.round_info(round_id).claim_deadline + 1)
    log.add("finalizeRound (CommitteeTooSmall)", fed.send(fed.owner, "finalizeRound", round_id))

    round_id = _open(fed, (2, n + 1, 4, 2), DETAIL_K, GasLog())
    fed.send(fed.nodes[0], "submitUpdate", round_id, _cid(f"lonely {round_id}"), 1, keccak(b"m"))
    seats = _claims(fed, round_id, GasLog())
    _propose(fed, round_id, seats, [fed.nodes[0].address], _cid(f"unvoted {round_id}"))
    _to_block(w3, c.round_info(round_id).vote_deadline + 1)
    log.add("finalizeRound (VoteTimeout)", fed.send(fed.owner, "finalizeRound", round_id))


def fallback_round(fed: Federation, log: GasLog) -> None:
    """A proposal voted down, then the next rank's proposal approved: the rejecting vote and the fallback's calls."""
    c, n = fed.client, len(fed.nodes)
    round_id = _open(fed, (2, n + 1, 4, n + 2), DETAIL_K, GasLog())
    fed.send(fed.nodes[0], "submitUpdate", round_id, _cid(f"fallback {round_id}"), 1, keccak(b"m"))
    seats = _claims(fed, round_id, GasLog())
    if len(seats) < 2:  # one member cannot fall back to anyone (probability about e^-k·k)
        return
    _propose(fed, round_id, seats, [fed.nodes[0].address], _cid(f"junk {round_id}"))
    by_address = {node.address: node for node in fed.nodes}
    for member in seats:
        gas = fed.send(by_address[member], "vote", round_id, 0, False)
        if c.round_info(round_id).status is not RoundStatus.PROPOSED:
            log.add("vote (the one that rejects: fallback)", gas)
            break
    order = sortition.leader_order({a: score for a, (_, score) in seats.items()})
    second = by_address[order[1]]
    log.add("proposeAggregate (fallback, 1 accepted)",
            fed.send(second, "proposeAggregate", round_id, _cid(f"good {round_id}"),
                     accepted_root([fed.nodes[0].address]), 1))
    for member in seats:
        fed.send(by_address[member], "vote", round_id, 1, True)
        if c.round_info(round_id).status is RoundStatus.COMMITTED:
            return
    raise ChainError(f"bench: the fallback proposal of round {round_id} did not commit")


def _row(name: str, values: Sequence[int], baseline: int, target: int | None = None) -> str:
    mean = statistics.mean(values)
    verdict = ""
    if target is not None:
        verdict = f"max {'≤' if max(values) <= target else '>'} {target:,}: {'OK' if max(values) <= target else 'MISSED'}"
    if len(set(values)) == 1:
        span = f"{values[0]:>10,} {'':>10} {'':>10}"
    else:
        span = f"{min(values):>10,} {mean:>10,.0f} {max(values):>10,}"
    return f"{name:<40} {len(values):>5} {span} {mean / baseline:>8.2f}x  {verdict}"


_ORDER = [
    "registerNode",
    "initializeGlobalAdapter",
    "openRound",
    "submitUpdate",
    "claimSeat",
    f"proposeAggregate ({DETAIL_NODES} accepted)",
    "vote",
    "vote (the one that commits)",
    "vote (the one that rejects: fallback)",
    "proposeAggregate (fallback, 1 accepted)",
    "finalizeRound (CommitteeTooSmall)",
    "finalizeRound (VoteTimeout)",
]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--nodes", default=",".join(map(str, DEFAULT_NODES)), help="node counts, comma-separated"
    )
    parser.add_argument(
        "--sizes", default=",".join(map(str, DEFAULT_SIZES)), help="expected committee sizes k"
    )
    parser.add_argument("--reps", type=int, default=1, help="rounds per (nodes, k) cell (default 1)")
    args = parser.parse_args(argv)
    node_counts = [int(x) for x in args.nodes.split(",") if x]
    sizes = [int(x) for x in args.sizes.split(",") if x]
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    # Part 1: one round, call by call.
    detail, claims = GasLog(), GasLog()
    fed = build_federation(DETAIL_NODES, detail, "detail")
    baseline = baseline_transfer_gas(fed.w3, fed.owner)
    run_round(fed, DETAIL_K, detail)
    failing_rounds(fed, detail)
    fallback_round(fed, detail)

    # Part 2: whole rounds by nodes × k.
    table: dict[tuple[int, int], list[tuple[int, int, int]]] = defaultdict(list)
    with progress("gas bench rounds", len(node_counts) * len(sizes) * args.reps, unit="round") as bar:
        for n in node_counts:
            fed_n = build_federation(n, GasLog(), f"grid {n}")
            for k in sizes:
                for _ in range(args.reps):
                    table[(n, k)].append(run_round(fed_n, k, claims))
                    bar.update(1, nodes=n, k=k)

    fork = type(fed.w3.provider.ethereum_tester.backend.chain.get_vm()).__name__
    print(f"\nFlareCoordinator gas on eth-tester (py-evm {fork}); every figure is a receipt's gasUsed.")
    print(f"Baseline in this run: plain value transfer = {baseline:,} gas.\n")
    print(f"One round, {DETAIL_NODES} nodes of equal stake, expected committee size k = {DETAIL_K}:")
    print(f"{'call':<40} {'n':>5} {'min':>10} {'mean':>10} {'max':>10} {'/base':>9}")
    pooled_claims = detail.calls["claimSeat"] + claims.calls["claimSeat"]
    pooled_submits = detail.calls["submitUpdate"] + claims.calls["submitUpdate"]
    for name in _ORDER:
        values = detail.calls.get(name)
        if name == "claimSeat":
            print(_row("claimSeat (all claims of the run)", pooled_claims, baseline, CLAIM_TARGET))
        elif name == "submitUpdate":
            print(_row("submitUpdate (all submissions of the run)", pooled_submits, baseline, SUBMIT_TARGET))
        elif values:
            print(_row(name, values, baseline))

    print("\nWhole round (openRound → submissions → seat claims → proposal → committing vote), total gas:")
    header = f"{'nodes':>6} {'k':>4} {'seats':>6} {'total gas':>12} {'gas/node':>10} {'/base':>8} {'proposal':>10}"
    print(header)
    for n in node_counts:
        for k in sizes:
            runs = table[(n, k)]
            total = statistics.mean(t for t, _, _ in runs)
            seats = statistics.mean(s for _, s, _ in runs)
            proposal = statistics.mean(p for _, _, p in runs)
            print(f"{n:>6} {k:>4} {seats:>6.1f} {total:>12,.0f} {total / n:>10,.0f} {total / baseline:>8.1f} "
                  f"{proposal:>10,.0f}")
    within = sum(g <= CLAIM_TARGET for g in pooled_claims) / len(pooled_claims)
    print(f"\nSeat claims within {CLAIM_TARGET:,}: {within:.2%} of {len(pooled_claims)} "
          f"(99th percentile {sorted(pooled_claims)[int(0.99 * (len(pooled_claims) - 1))]:,}).")
    claim_ok, submit_ok = within >= 0.999, max(pooled_submits) <= SUBMIT_TARGET
    print(
        f"\nTargets: seat claim ≤ {CLAIM_TARGET:,} (max {max(pooled_claims):,}, "
        f"{'met' if claim_ok else 'MISSED'}); submission ≤ {SUBMIT_TARGET:,} "
        f"(max {max(pooled_submits):,}, {'met' if submit_ok else 'MISSED'})."
    )
    return 0 if claim_ok and submit_ok else 1


if __name__ == "__main__":
    sys.exit(main())
