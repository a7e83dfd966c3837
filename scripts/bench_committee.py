#!/usr/bin/env python3
"""Committee security, simulated and on chain: an attacker's weight, majority, lone commits and leads.

For attacker stake 10/20/30/40% split over 1, 10, 30 and 100 nodes, against honest
stake concentrated (4 nodes) or spread (100 nodes), draws many committees with the
contract's own seat-weight and leader-score maths (``flare_chain.committee.sortition``,
pinned bit for bit to ``VrfSortitionCommittee.sol`` by tests/contracts/test_seat_weights.py)
and reports the attacker's share of the weight, its share of leads, how often it holds a
majority of the weight and how often it could commit alone, next to the exact Poisson model
(``sortition.committee_risk``) with a 99% interval for the simulated frequency.

VRF outputs are drawn as uniform 256-bit values from a seeded generator: an honest ECVRF
output is indistinguishable from one, and the seat weight depends on the output only.

The second table is the owner who picks the opening block (``--grind`` blocks to choose
from), allied with the attacker. It knows its own keys, so for each block it could open in
it computes the attacker's weight on the seed that block would give, and opens in the best.
Under the old rule (seats drawn on the round seed, fixed by the opening block) that choice
is the draw; under the claim-seed rule the draw is on the round seed mixed with the hash of
the submission deadline block, unknown when the round opens, so the choice changes nothing.
A node's output is modelled as sha256(node ‖ seed), the VRF's role.

The third section (``--sections chain``) replays cells on the real contracts: FlareCoordinator
deployed on the in-process chain (random prevrandao), every node registered with its stake and a
secp256k1 key, rounds opened by the owner, and every node whose weight Python computes as > 0
claiming its seat with a real ECVRF proof (verified on chain). The shares are read back from the
chain (``SeatClaimed`` events and ``seatOf``), and every seated weight, leader score and output is
compared with ``sortition.seat_weight`` / ``sortition.leader_score``; the first zero-weight node of
each cell also claims, through ``CoordinatorClient.claim_seat``, and must be refused with
``CoordinatorNotSelected``. Any disagreement is printed and the script exits 1. Each cell gets a
verdict against the done criterion of issue 12 (weight and leader share within 10% of the stake
share, lone commits within the model's exact 99% range), marked undecided where the run is too
small to tell, and each stake share is pooled over its splits and layouts. Claims are sent as
raw transactions with a fixed gas limit (``bench_gas.RawSender``): the client's own path simulates
and estimates each call first, about 10x slower on eth-tester, and changes nothing on chain.

The fourth (``--sections owner-chain``) is the owner of the second table on the real contracts:
before each round it tries each of the next ``--grind`` opening blocks on a snapshot of the chain
(open, read the round seed, revert), opens in the one whose round seed would seat the attacker
heaviest under the old rule, and the seats are then claimed on the claim seed as usual. It prints
both shares per cell, and the seed the chain recorded must be the one the owner saw when it tried
that block.

    python scripts/bench_committee.py              # sim + owner tables, about a minute on 2 cores
    python scripts/bench_committee.py --rounds 2000 --k 20
    python scripts/bench_committee.py --sections chain --chain-rounds 3    # a small on-chain grid, minutes
    python scripts/bench_committee.py --sections chain --chain-rounds 50 --chain-splits 1,10,30,100
                                                   # the README's on-chain table, 40 minutes on 2 cores
    python scripts/bench_committee.py --lead-precision 0.04 # cells large enough to decide the leader share
    python scripts/bench_committee.py --sections owner-chain --chain-rounds 20 --chain-splits 1,10 \
        --chain-honest 100                         # the owner grinding the opening block, on chain
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import math
import random
import sys
from collections.abc import Container, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench_gas, next to this script

from bench_gas import RawSender
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak
from web3 import Web3

from flare_chain.chain import (
    CoordinatorClient,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
    in_process_chain,
    public_key_words,
)
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ChainError
from flare_chain.progress import progress

TOTAL_STAKE = 10**24
SHARES = (0.1, 0.2, 0.3, 0.4)
SPLITS = (1, 10, 30, 100)
HONEST_LAYOUTS = (("concentrated", 4), ("spread", 100))


def _stakes(total: int, parts: int) -> list[int]:
    """``total`` split into ``parts`` equal stakes (the last takes the remainder)."""
    each = total // parts
    return [each] * (parts - 1) + [total - each * (parts - 1)]


def simulate(share: float, attackers: int, honest: int, *, k: int, rounds: int, threshold_bps: int,
             rng: random.Random) -> ChainCell:
    """``rounds`` committees drawn with the contract's maths on uniform outputs, scored as the chain cells are."""
    bad_total = round(TOTAL_STAKE * share)
    stakes = [(True, s) for s in _stakes(bad_total, attackers)] + [
        (False, s) for s in _stakes(TOTAL_STAKE - bad_total, honest)]
    members = [f"{i:x}" for i in range(len(stakes))]  # hex names: leader_order breaks ties as it does addresses
    bad = {m for m, (is_bad, _) in zip(members, stakes, strict=True) if is_bad}
    min_committee = least_min_committee(threshold_bps)
    cell = ChainCell()
    for _ in range(rounds):
        seated: dict[str, tuple[int, int]] = {}
        for member, (_, stake) in zip(members, stakes, strict=True):
            output = rng.getrandbits(256)
            weight = sortition.seat_weight(output, k, stake, TOTAL_STAKE)
            if weight:
                seated[member] = (weight, sortition.leader_score(output, weight))
        score_committee(seated, bad, min_committee=min_committee, threshold_bps=threshold_bps, cell=cell)
    return cell


def _outputs(nodes: int, seed: bytes, tag: bytes) -> list[int]:
    """Each node's VRF output on ``seed`` (modelled: sha256(tag ‖ node ‖ seed), uniform and unpredictable)."""
    return [int.from_bytes(hashlib.sha256(tag + i.to_bytes(4, "big") + seed).digest(), "big") for i in range(nodes)]


def owner_grinds(share: float, attackers: int, honest: int, *, k: int, rounds: int, grind: int,
                 claim_seed_rule: bool, rng: random.Random) -> float:
    """The attacker's share of the seated weight when its ally, the owner, picks the opening block among ``grind``.

    Each candidate block gives a round seed; the owner evaluates its own nodes' weights on it and
    opens on the best. With ``claim_seed_rule`` the seats are then drawn on
    ``sortition.claim_seed(round_seed, deadline_block_hash)``, with a hash nobody knew at opening.
    """
    bad_total = round(TOTAL_STAKE * share)
    bad_stakes, good_stakes = _stakes(bad_total, attackers), _stakes(TOTAL_STAKE - bad_total, honest)

    def weights(stakes: list[int], seed: bytes, tag: bytes) -> int:
        return sum(sortition.seat_weight(out, k, stake, TOTAL_STAKE)
                   for out, stake in zip(_outputs(len(stakes), seed, tag), stakes, strict=True))

    bad_weight = all_weight = 0
    for _ in range(rounds):
        candidates = [rng.randbytes(32) for _ in range(grind)]  # the round seed of each block it could open in
        chosen = max(candidates, key=lambda seed: weights(bad_stakes, seed, b"attacker"))
        drawn_on = sortition.claim_seed(chosen, rng.randbytes(32)) if claim_seed_rule else chosen
        a, h = weights(bad_stakes, drawn_on, b"attacker"), weights(good_stakes, drawn_on, b"honest")
        bad_weight += a
        all_weight += a + h
    return bad_weight / max(all_weight, 1)


def _interval(p: float, n: int) -> float:
    """Half-width of a 99% normal interval for a frequency with probability ``p`` over ``n`` trials."""
    return 2.576 * math.sqrt(max(p * (1 - p), 1e-12) / n)


def rounds_for(share: float, args: argparse.Namespace) -> int:
    """Committees to draw for a cell at ``share``: ``--rounds``, or enough for ``--lead-precision``.

    The leader share is one Bernoulli(``share``) per committee, so its relative 99% half-width is
    2.576·√((1 − share)/(share·n)); a 10% stake needs six times the rounds of a 40% one.
    """
    if args.lead_precision is None:
        return int(args.rounds)
    needed = math.ceil((2.576 / args.lead_precision) ** 2 * (1 - share) / share)
    return max(int(args.rounds), needed)


def simulated_section(args: argparse.Namespace, rng: random.Random) -> dict[str, list[str]]:
    """The simulated grid: every split and honest layout, uniform outputs, the contract's maths in Python.

    Returns each criterion's verdicts over the cells (see :func:`judge_cell`).
    """
    min_committee = least_min_committee(args.threshold_bps)
    per_cell = f"{args.rounds} committees per cell" if args.lead_precision is None else (
        f"committees per cell sized for a 99% range of ±{args.lead_precision:.1%} on the leader share "
        f"({', '.join(f'{share:.0%}: {rounds_for(share, args)}' for share in SHARES)})")
    print(f"k = {args.k}, {per_cell}, threshold {args.threshold_bps} bps, minimum committee "
          f"weight {min_committee}; gap: measured/stake share − 1, ± the exact 99% range of that gap if the share "
          "were exact (weight: per unit of seated weight; leads: per committee); model: exact Poisson "
          "(sortition.committee_risk); alone: rounds it could commit alone, with the model's exact 99% range")
    print(f"{'honest':>6} {'stake':>5} {'split':>5} {'weight':>6} {'gap':>6} {'±':>5} {'':>4} "
          f"{'leads':>5} {'gap':>6} {'±':>5} {'':>4} {'majority':>8} {'model':>6} {'alone':>11} {'model':>8} "
          f"{'range':>9} {'':>3}")
    verdicts: dict[str, list[str]] = {"weight": [], "leads": [], "alone": []}
    cells = [(honest, share, split) for _, honest in HONEST_LAYOUTS for share in SHARES for split in SPLITS]
    with progress("simulated cells", len(cells), unit="cell") as bar:
        for honest, share, split in cells:
            cell = simulate(share, split, honest, k=args.k, rounds=rounds_for(share, args),
                            threshold_bps=args.threshold_bps, rng=rng)
            risk = sortition.committee_risk(args.k, share, threshold_bps=args.threshold_bps,
                                            min_committee=min_committee)
            judged = judge_cell(cell, share, risk.capture)
            for name, verdict in zip(verdicts, judged.verdicts, strict=True):
                verdicts[name].append(verdict)
            print(f"{honest:>6} {share:>5.0%} {split:>5} {judged.row(cell, risk.majority)}")
            bar.update(1, honest=honest, share=share, split=split)
    _print_verdict_counts(verdicts, len(cells))
    return verdicts


def owner_section(args: argparse.Namespace, rng: random.Random) -> None:
    """The owner, allied with the attacker, grinding the opening block: old rule against the claim-seed rule."""
    print(f"\nthe owner, allied with the attacker, opens each round in the best of {args.grind} blocks "
          f"(honest stake spread over 100 nodes, {args.grind_rounds} rounds per cell): attacker's weight share")
    print(f"{'stake':>5} {'split':>5} {'round seed (old)':>17} {'claim seed (new)':>17}")
    for share in SHARES:
        for split in (1, 10):
            old, new = (owner_grinds(share, split, 100, k=args.k, rounds=args.grind_rounds, grind=args.grind,
                                     claim_seed_rule=rule, rng=rng) for rule in (False, True))
            print(f"{share:>5.0%} {split:>5} {old:>17.3f} {new:>17.3f}")


# -- on the in-process chain ----------------------------------------------------------------------

CHAIN_TOTAL_STAKE_WEI = 1000 * 10**18
"""All stake of an on-chain cell (attacker and honest together): 1000 ETH, so a 1/100 split stays above min stake."""
_GAS_FUNDS_WEI = 10**18  # each node's ether for its registration and claims, on top of its stake
_ADAPTER_CID = b"\x01\x55\x12\x20" + keccak(text="bench committee genesis adapter")
_MIN_CLAIM_BLOCKS = 3  # the contract's least claim window (phaseBounds)


def _mine_until(w3: Web3, block: int) -> None:
    """Mine empty blocks until the head is ``block`` (the next transaction lands in ``block + 1``)."""
    advance_blocks(w3, max(0, block - int(w3.eth.block_number)))


@dataclass
class ChainNode:
    account: LocalAccount
    attacker: bool
    stake: int


@dataclass
class ChainCell:
    """What one on-chain cell measured, every figure read from the chain (``SeatClaimed`` and ``seatOf``)."""

    rounds: int = 0
    committees: int = 0  # rounds whose seated weight reached the contract's minimum committee
    claims: int = 0
    zero_weight: int = 0  # node-rounds Python drew weight 0 for: no claim sent
    zero_sent: int = 0  # of those, sampled claims sent anyway (through the client)
    not_selected: int = 0  # of those, refused with CoordinatorNotSelected
    attacker_weight: int = 0
    weight: int = 0
    leads: int = 0
    majority: int = 0
    alone: int = 0
    ground_attacker_weight: int = 0  # owner grinding: the attacker's weight on the round seed it picked (old rule)
    ground_weight: int = 0  # and everyone's weight on that seed
    claim_gas: list[int] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)


@dataclass
class ChainFederation:
    w3: Web3
    client: CoordinatorClient
    send: RawSender
    owner: LocalAccount
    nodes: list[ChainNode]
    min_committee: int


def least_min_committee(threshold_bps: int) -> int:
    """The least minimum committee weight the contract accepts at ``threshold_bps``: one seat must not commit alone."""
    return sortition.BPS // threshold_bps + 1


def chain_federation(bad_stakes: Sequence[int], good_stakes: Sequence[int], *, threshold_bps: int,
                     tag: str) -> ChainFederation:
    """A fresh in-process chain with FlareCoordinator deployed and every node registered with its stake.

    Keys and the chain's prevrandao derive from ``tag``; block hashes still hold eth-tester's
    wall-clock timestamps, so each run draws different committees.
    The minimum committee is the least weight the contract accepts for ``threshold_bps`` (one
    seat must not commit alone).
    """
    w3 = in_process_chain(randao_secret=keccak(text=f"bench committee randao {tag}"))
    owner = Account.from_key(keccak(text=f"bench committee owner {tag}"))
    nodes = [ChainNode(Account.from_key(keccak(text=f"bench committee node {tag} {i}")), attacker, stake)
             for i, (attacker, stake) in enumerate([(True, s) for s in bad_stakes] + [(False, s) for s in good_stakes])]
    fund_accounts(w3, [owner], _GAS_FUNDS_WEI)
    for node in nodes:
        fund_accounts(w3, [node.account], node.stake + _GAS_FUNDS_WEI)
    min_committee = least_min_committee(threshold_bps)
    client = deploy_coordinator(w3, owner, approval_threshold_bps=threshold_bps, min_committee_size=min_committee)
    send = RawSender(w3, client)
    for node in nodes:
        send(node.account, "registerNode", list(public_key_words(node.account)), value_wei=node.stake)
    send(owner, "initializeGlobalAdapter", _ADAPTER_CID)
    return ChainFederation(w3, client, send, owner, nodes, min_committee)


def _weights_on(fed: ChainFederation, round_id: int, seed: bytes, k: int, total: int) -> tuple[int, int]:
    """(attacker, everyone) seat weight if seats were drawn on ``seed`` itself: the rule before the claim seed."""
    alpha = sortition.vrf_alpha(int(fed.w3.eth.chain_id), fed.client.address, round_id, seed)
    bad = everyone = 0
    for node in fed.nodes:
        weight = sortition.seat_weight(vrf.proof_to_hash(vrf.prove(bytes(node.account.key), alpha)), k, node.stake,
                                       total)
        everyone += weight
        bad += weight if node.attacker else 0
    return bad, everyone


def _open_round(fed: ChainFederation, claim_blocks: int, *, k: int, grind: int, cell: ChainCell) -> int:
    """Open the next round; with ``grind`` the owner first picks the best of that many opening blocks.

    The owner, allied with the attacker and building the chain's blocks, tries opening in each
    of the next ``grind`` blocks (snapshot, mine, open, read the round seed, revert) and opens in
    the one whose round seed would seat the attacker heaviest if seats were drawn on it: the best
    it can do, since the claim seed also mixes in a block hash that does not exist yet.
    """
    c, w3 = fed.client, fed.w3
    total = sum(node.stake for node in fed.nodes)
    best: tuple[int, int, int, bytes] | None = None  # (attacker weight, everyone, blocks to wait, seed)
    start = w3.testing.snapshot() if grind else None
    for wait in range(grind):  # one block further each time: try opening here, undo, mine one empty block
        attempt = w3.testing.snapshot()
        fed.send(fed.owner, "openRound", 1, claim_blocks, 1, 1, k)
        round_id = c.current_round()
        seed = c.round_info(round_id).seed
        w3.testing.revert(attempt)
        bad, everyone = _weights_on(fed, round_id, seed, k, total)
        if best is None or bad > best[0]:
            best = (bad, everyone, wait, seed)
        w3.testing.mine(1)
    if best is not None:
        w3.testing.revert(start)
        w3.testing.mine(best[2])
    fed.send(fed.owner, "openRound", 1, claim_blocks, 1, 1, k)
    round_id = c.current_round()
    if best is not None:
        cell.ground_attacker_weight += best[0]
        cell.ground_weight += best[1]
        if c.round_info(round_id).seed != best[3]:
            cell.mismatches.append(f"round {round_id}: opened in the block the owner picked, but the seed differs "
                                   "from the one it tried there")
    return round_id


def chain_round(fed: ChainFederation, *, k: int, threshold_bps: int, zero_claims: int, cell: ChainCell,
                grind: int = 0) -> None:
    """One round on chain: every node Python seats claims with its real proof; then compare and count.

    The first ``zero_claims`` nodes Python gives weight 0 claim anyway and must be refused. With
    ``grind``, the owner picks the opening block first (:func:`_open_round`).

    The round opens with the shortest phases the contract allows around a claim window long enough
    for every claim (one transaction per block), and fails for want of a proposal: only the seats
    matter here.
    """
    c, w3 = fed.client, fed.w3
    # A claim is one block; a round seats at most one claim per node, and a total weight above
    # 4k + 16 has probability below 10^-20 for k >= 5.
    claim_blocks = min(sortition.MAX_CLAIM_BLOCKS, max(_MIN_CLAIM_BLOCKS, min(len(fed.nodes), 4 * k + 16)))
    round_id = _open_round(fed, claim_blocks, k=k, grind=grind, cell=cell)
    _mine_until(w3, c.round_info(round_id).submission_deadline)  # the next block is the claim window's first
    total = sum(node.stake for node in fed.nodes)
    on_chain_total = c.sortition_info(round_id).total_stake
    if on_chain_total != total:
        cell.mismatches.append(f"round {round_id}: total stake {on_chain_total} on chain, {total} in Python")
    alpha = sortition.vrf_alpha(int(w3.eth.chain_id), c.address, round_id, c.claim_seed(round_id))

    expected: dict[str, tuple[int, int, bytes]] = {}  # address -> Python's (weight, leader score, output)
    zero_left = zero_claims
    for node in fed.nodes:
        key = bytes(node.account.key)
        proof = vrf.prove(key, alpha)
        output = vrf.proof_to_hash(proof)
        weight = sortition.seat_weight(output, k, node.stake, total)
        if weight == 0:
            cell.zero_weight += 1
            if zero_left > 0:
                zero_left -= 1
                _claim_expecting_refusal(fed, node, round_id, proof, cell)
            continue
        expected[node.account.address] = (weight, sortition.leader_score(output, weight), output)
        params = vrf.compute_fast_verify_params(vrf.public_key(key), proof, alpha)
        try:
            cell.claim_gas.append(fed.send(node.account, "claimSeat", round_id, list(params.proof_words()),
                                           list(params.u_point), list(params.v_components()),
                                           list(params.hash_roots)))
        except ChainError as exc:
            cell.mismatches.append(f"round {round_id}: {node.account.address} drew weight {weight} in Python "
                                   f"but its claim reverted: {exc}")
    cell.claims += len(expected)
    info = c.round_info(round_id)
    seated = _seat_events(fed, round_id, info.submission_deadline + 1, int(w3.eth.block_number))
    _compare_seats(fed, round_id, expected, seated, cell)
    _score_round(fed, seated, threshold_bps=threshold_bps, cell=cell)
    _mine_until(w3, c.round_info(round_id).proposal_deadline)  # no proposal came: the round fails
    fed.send(fed.owner, "finalizeRound", round_id)


def _claim_expecting_refusal(fed: ChainFederation, node: ChainNode, round_id: int, proof: bytes,
                             cell: ChainCell) -> None:
    """Claim with a proof Python gives weight 0, through the client; the contract must refuse it."""
    cell.zero_sent += 1
    try:
        fed.client.claim_seat(node.account, round_id, proof)
    except ChainError as exc:
        if exc.error_name == "CoordinatorNotSelected":
            cell.not_selected += 1
            return
        cell.mismatches.append(f"round {round_id}: {node.account.address} drew weight 0 in Python; its claim "
                               f"reverted with {exc.error_name}, not CoordinatorNotSelected")
        return
    cell.mismatches.append(f"round {round_id}: {node.account.address} drew weight 0 in Python but the contract "
                           "seated it")


def _seat_events(fed: ChainFederation, round_id: int, first_block: int, last_block: int
                 ) -> dict[str, tuple[int, int, bytes]]:
    """``SeatClaimed`` of ``round_id`` in its claim window: address -> (weight, leader score, output).

    The window's blocks only: ``CoordinatorClient.seats`` scans from deployment, which on eth-tester
    grows with every round of the cell.
    """
    logs = fed.client.contract.events.SeatClaimed().get_logs(
        argument_filters={"round": round_id}, from_block=first_block, to_block=last_block)
    return {log["args"]["node"]: (int(log["args"]["weight"]), int(log["args"]["leaderScore"]),
                                  bytes(log["args"]["output"])) for log in logs}


def _compare_seats(fed: ChainFederation, round_id: int, expected: dict[str, tuple[int, int, bytes]],
                   seated: dict[str, tuple[int, int, bytes]], cell: ChainCell) -> None:
    """Every seat on chain (``SeatClaimed`` and ``seatOf``) against Python's weight, leader score and output."""
    c = fed.client
    for address in sorted(set(expected) | set(seated)):
        want, got = expected.get(address), seated.get(address)
        if want is None or got is None:
            where = "on chain only" if want is None else "in Python only"
            cell.mismatches.append(f"round {round_id}: {address} seated {where}")
            continue
        stored = tuple(int(x) for x in c.contract.functions.seatOf(round_id, address).call())
        if got != want or stored != want[:2]:
            cell.mismatches.append(
                f"round {round_id}: {address} weight/score/output in SeatClaimed {got[0]}/{got[1]:#x}/"
                f"{got[2].hex()}, in seatOf {stored[0]}/{stored[1]:#x}, in Python {want[0]}/{want[1]:#x}/"
                f"{want[2].hex()}")
    on_chain_weight = c.sortition_info(round_id).weight
    if on_chain_weight != sum(w for w, _, _ in expected.values()):
        cell.mismatches.append(f"round {round_id}: committee weight {on_chain_weight} on chain, "
                               f"{sum(w for w, _, _ in expected.values())} in Python")


def score_committee(seated: Mapping[str, tuple[int, int]], attackers: Container[str], *,
                    min_committee: int, threshold_bps: int, cell: ChainCell) -> None:
    """Add one round's outcome to ``cell`` from its seats (member -> weight, leader score): the chain's rules.

    A round counts as a committee (for majority, lone commits and leads) when its seated weight reaches the
    contract's minimum committee, as ``sortition.committee_risk`` counts it.
    """
    bad = sum(weight for member, (weight, _) in seated.items() if member in attackers)
    total = sum(weight for weight, _ in seated.values())
    cell.rounds += 1
    cell.attacker_weight += bad
    cell.weight += total
    if total >= min_committee:  # what the model counts: a committee heavy enough to act
        cell.committees += 1
        cell.majority += bad > total - bad
        cell.alone += bad * sortition.BPS >= threshold_bps * total
        cell.leads += sortition.leader_order({m: score for m, (_, score) in seated.items()})[0] in attackers


def _score_round(fed: ChainFederation, seated: dict[str, tuple[int, int, bytes]], *, threshold_bps: int,
                 cell: ChainCell) -> None:
    """Add one round's outcome to ``cell``, from the seats the chain recorded (address -> weight, score, output)."""
    score_committee({a: (weight, score) for a, (weight, score, _) in seated.items()},
                    {node.account.address for node in fed.nodes if node.attacker},
                    min_committee=fed.min_committee, threshold_bps=threshold_bps, cell=cell)


def run_chain_cell(share: float, attackers: int, honest: int, *, k: int, rounds: int, threshold_bps: int,
                   zero_claims: int, tag: str, grind: int = 0) -> tuple[ChainCell, int]:
    """``rounds`` rounds on a fresh chain for one cell; returns what they measured and the minimum committee."""
    bad_total = round(CHAIN_TOTAL_STAKE_WEI * share)
    fed = chain_federation(_stakes(bad_total, attackers), _stakes(CHAIN_TOTAL_STAKE_WEI - bad_total, honest),
                           threshold_bps=threshold_bps, tag=tag)
    cell = ChainCell()
    for _ in range(rounds):
        chain_round(fed, k=k, threshold_bps=threshold_bps, zero_claims=max(0, zero_claims - cell.zero_sent),
                    cell=cell, grind=grind)
    return cell, fed.min_committee


def _add_counts(pool: ChainCell, cell: ChainCell) -> None:
    """Add ``cell``'s round counts to ``pool`` (the counts only; claims, gas and mismatches are summed apart)."""
    pool.rounds += cell.rounds
    pool.committees += cell.committees
    pool.attacker_weight += cell.attacker_weight
    pool.weight += cell.weight
    pool.leads += cell.leads
    pool.majority += cell.majority
    pool.alone += cell.alone


def _binomial_range(p: float, n: int, level: float = 0.99) -> tuple[int, int]:
    """The central ``level`` range of Binomial(``n``, ``p``) counts: less than ``(1 − level)/2`` lies on either side.

    Exact, where a normal interval fails for rare events: lone commits at p ≈ 10^-3 over 20
    rounds happen once with probability 2.4%, which a normal 99% interval (±0.02) calls impossible.
    """
    if n <= 0 or p <= 0:
        return 0, 0
    if p >= 1:
        return n, n
    tail = (1 - level) / 2
    log_p, log_q = math.log(p), math.log1p(-p)
    pmf = [math.exp(math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q)
           for i in range(n + 1)]
    lo, below = 0, 0.0
    while below + pmf[lo] <= tail:
        below += pmf[lo]
        lo += 1
    hi, above = n, 0.0
    while above + pmf[hi] <= tail:
        above += pmf[hi]
        hi -= 1
    return lo, hi


def _relative_gap(hits: int, trials: int, share: float) -> tuple[float, float]:
    """``hits / trials / share − 1``, and the relative half-width (wider side) of the exact 99% range of
    ``hits / trials`` when each of ``trials`` lands on the attacker with probability ``share``."""
    lo, hi = _binomial_range(share, trials)
    trials = max(trials, 1)
    return hits / trials / share - 1, max(share - lo / trials, hi / trials - share) / share


def _verdict(gap: float, half_width: float, bound: float = 0.10) -> str:
    """``ok``: within ``bound``, with its 99% interval inside; ``ok?``: within, but the run is too small to
    decide; ``off?``: outside, but within noise of the bound; ``OFF``: outside beyond noise."""
    if abs(gap) <= bound:
        return "ok" if abs(gap) + half_width <= bound else "ok?"
    return "off?" if abs(gap) - half_width <= bound else "OFF"


@dataclass(frozen=True)
class JudgedCell:
    """One cell's figures against the done criterion of issue 12, with each verdict (``weight, leads, alone``)."""

    weight_share: float
    weight_gap: float
    weight_half_width: float
    lead_share: float
    lead_gap: float
    lead_half_width: float
    alone_range: tuple[int, int]
    alone_capture: float
    verdicts: tuple[str, str, str]

    def row(self, cell: ChainCell, majority_model: float) -> str:
        """The cell's columns from ``weight`` on, as both tables print them."""
        v = self.verdicts
        lo, hi = self.alone_range
        return (f"{self.weight_share:>6.3f} {self.weight_gap:>+6.1%} {self.weight_half_width:>5.0%} {v[0]:>4} "
                f"{self.lead_share:>5.3f} {self.lead_gap:>+6.1%} {self.lead_half_width:>5.0%} {v[1]:>4} "
                f"{cell.majority / max(cell.rounds, 1):>8.3f} {majority_model:>6.3f} "
                f"{f'{cell.alone}/{cell.rounds}':>11} {self.alone_capture:>8.2e} {f'{lo}-{hi}':>9} {v[2]:>3}")


def judge_cell(cell: ChainCell, share: float, capture: float) -> JudgedCell:
    """Weight share per seated unit, leads per committee, lone commits per round against the model's range."""
    w_gap, w_hw = _relative_gap(cell.attacker_weight, cell.weight, share)
    l_gap, l_hw = _relative_gap(cell.leads, cell.committees, share)
    lo, hi = _binomial_range(capture, cell.rounds)
    return JudgedCell(
        weight_share=cell.attacker_weight / max(cell.weight, 1), weight_gap=w_gap, weight_half_width=w_hw,
        lead_share=cell.leads / max(cell.committees, 1), lead_gap=l_gap, lead_half_width=l_hw, alone_range=(lo, hi),
        verdicts=(_verdict(w_gap, w_hw), _verdict(l_gap, l_hw), "ok" if lo <= cell.alone <= hi else "OFF"),
        alone_capture=capture)


def _print_verdict_counts(verdicts: dict[str, list[str]], cells: int) -> None:
    print(f"\nverdicts (ok: within 10% and its 99% interval too; ok?: within 10%, run too small to decide; "
          f"off?: outside 10%, within noise; OFF: outside beyond noise) over {cells} cells:")
    for name, values in verdicts.items():
        counts = ", ".join(f"{v} {values.count(v)}" for v in ("ok", "ok?", "off?", "OFF") if values.count(v))
        print(f"  {name:>6}: {counts}")


def chain_section(args: argparse.Namespace) -> int:
    """Run the on-chain grid, print its table and checks; return the number of chain/Python mismatches."""
    shares = [float(x) for x in args.chain_shares.split(",") if x]
    splits = [int(x) for x in args.chain_splits.split(",") if x]
    layouts = [int(x) for x in args.chain_honest.split(",") if x]
    print(f"\nOn chain: FlareCoordinator on the in-process chain, k = {args.k}, {args.chain_rounds} rounds per "
          f"cell, threshold {args.threshold_bps} bps; every Python-seated node claims with a real ECVRF proof.")
    print("Read from SeatClaimed/seatOf. gap: measured/stake share − 1, ± the exact 99% range of that gap if the "
          "share were exact (weight: per unit of seated weight; leads: per committee). model: "
          "sortition.committee_risk; alone: rounds it could commit alone, with the model's exact 99% range.")
    print(f"{'honest':>6} {'stake':>5} {'split':>5} {'claims':>6} {'weight':>6} {'gap':>6} {'±':>5} {'':>4} "
          f"{'leads':>5} {'gap':>6} {'±':>5} {'':>4} {'majority':>8} {'model':>6} {'alone':>11} {'model':>8} "
          f"{'range':>9} {'':>3}")
    mismatches: list[str] = []
    verdicts: dict[str, list[str]] = {"weight": [], "leads": [], "alone": []}
    claim_gas: list[int] = []
    zero_weight = zero_sent = not_selected = claims = 0
    pooled = {share: ChainCell() for share in shares}  # every split and layout of a share, summed
    cells = [(h, s, a) for h in layouts for s in shares for a in splits]
    with progress("on-chain cells", len(cells), unit="cell") as bar:
        for honest, share, split in cells:
            tag = f"{args.seed} {honest} {share} {split}"
            cell, min_committee = run_chain_cell(share, split, honest, k=args.k, rounds=args.chain_rounds,
                                                 threshold_bps=args.threshold_bps, zero_claims=args.zero_claims,
                                                 tag=tag)
            risk = sortition.committee_risk(args.k, share, threshold_bps=args.threshold_bps,
                                            min_committee=min_committee)
            judged = judge_cell(cell, share, risk.capture)
            for name, verdict in zip(verdicts, judged.verdicts, strict=True):
                verdicts[name].append(verdict)
            print(f"{honest:>6} {share:>5.0%} {split:>5} {cell.claims:>6} {judged.row(cell, risk.majority)}")
            mismatches += [f"[honest {honest}, {share:.0%} over {split}] {m}" for m in cell.mismatches]
            claim_gas += cell.claim_gas
            zero_weight += cell.zero_weight
            not_selected += cell.not_selected
            zero_sent += cell.zero_sent
            claims += cell.claims
            _add_counts(pooled[share], cell)
            bar.update(1, honest=honest, share=share, split=split)
    n = len(cells)
    print(f"\npooled over the {len(splits) * len(layouts)} splits and layouts of each stake share (splitting "
          "should change nothing, so the pool tests the share with more draws):")
    print(f"{'stake':>5} {'units':>6} {'weight':>6} {'gap':>6} {'±':>5} {'':>4} {'leads':>5} {'gap':>6} {'±':>5} "
          f"{'':>4} {'majority':>8} {'model':>6} {'alone':>11} {'model':>8} {'range':>9} {'':>3}")
    for share, pool in pooled.items():
        risk = sortition.committee_risk(args.k, share, threshold_bps=args.threshold_bps,
                                        min_committee=least_min_committee(args.threshold_bps))
        print(f"{share:>5.0%} {pool.weight:>6} {judge_cell(pool, share, risk.capture).row(pool, risk.majority)}")
    _print_verdict_counts(verdicts, n)
    print(f"seat claims: {claims} (max gas {max(claim_gas, default=0):,}); zero-weight node-rounds, no claim "
          f"sent: {zero_weight}, of which {zero_sent} claimed anyway and {not_selected} were refused with "
          "CoordinatorNotSelected")
    print(f"chain vs Python (total stake, seated set, every weight, leader score and output, committee "
          f"weight): {len(mismatches)} mismatches")
    for line in mismatches[:20]:
        print(f"  MISMATCH {line}")
    if len(mismatches) > 20:
        print(f"  ... and {len(mismatches) - 20} more")
    return len(mismatches)


def owner_chain_section(args: argparse.Namespace) -> int:
    """The owner grinding the opening block on the real contracts; returns the number of chain/Python mismatches."""
    shares = [float(x) for x in args.chain_shares.split(",") if x]
    splits = [int(x) for x in args.chain_splits.split(",") if x]
    layouts = [int(x) for x in args.chain_honest.split(",") if x]
    print(f"\nOn chain, the owner allied with the attacker opens each round in the best of {args.grind} blocks "
          f"(tried with snapshots: open, read the seed, revert), k = {args.k}, {args.chain_rounds} rounds per cell. "
          "round seed: the attacker's weight share had seats been drawn on the seed it picked (the old rule); "
          "claim seed: its share of the seats claimed on chain, with gap and verdict as above.")
    print(f"{'honest':>6} {'stake':>5} {'split':>5} {'round seed':>10} {'claim seed':>10} {'gap':>6} {'±':>5} {'':>4}")
    mismatches: list[str] = []
    verdicts: list[str] = []
    cells = [(h, s, a) for h in layouts for s in shares for a in splits]
    with progress("owner-grinding cells", len(cells), unit="cell") as bar:
        for honest, share, split in cells:
            cell, _ = run_chain_cell(share, split, honest, k=args.k, rounds=args.chain_rounds,
                                     threshold_bps=args.threshold_bps, zero_claims=0,
                                     tag=f"{args.seed} owner {honest} {share} {split}", grind=args.grind)
            gap, half_width = _relative_gap(cell.attacker_weight, cell.weight, share)
            verdicts.append(_verdict(gap, half_width))
            print(f"{honest:>6} {share:>5.0%} {split:>5} {cell.ground_attacker_weight / max(cell.ground_weight, 1):>10.3f} "
                  f"{cell.attacker_weight / max(cell.weight, 1):>10.3f} {gap:>+6.1%} {half_width:>5.0%} "
                  f"{verdicts[-1]:>4}")
            mismatches += [f"[owner, honest {honest}, {share:.0%} over {split}] {m}" for m in cell.mismatches]
            bar.update(1, honest=honest, share=share, split=split)
    counts = ", ".join(f"{v} {verdicts.count(v)}" for v in ("ok", "ok?", "off?", "OFF") if verdicts.count(v))
    print(f"claim-seed weight share verdicts over {len(cells)} cells: {counts}")
    print(f"chain vs Python (seated set, weights, scores, outputs, the picked seed): {len(mismatches)} mismatches")
    for line in mismatches[:20]:
        print(f"  MISMATCH {line}")
    return len(mismatches)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", default="sim,owner",
                        help="comma-separated: sim (simulated grid), owner (opening-block grinding), chain "
                             "(the real contracts; minutes), owner-chain (the owner grinding the opening block on "
                             "the real contracts; minutes); default sim,owner")
    parser.add_argument("--k", type=int, default=20, help="expected committee size (default 20)")
    parser.add_argument("--rounds", type=int, default=400, help="committees drawn per cell (default 400)")
    parser.add_argument("--lead-precision", type=float, default=None,
                        help="size each simulated cell for this relative 99%% half-width on the leader share "
                             "(e.g. 0.04: 37,000 committees at 10%% stake, 6,000 at 40%%); default: --rounds")
    parser.add_argument("--threshold-bps", type=int, default=6666)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--grind", type=int, default=10,
                        help="blocks the owner may choose the opening block from (default 10; 0 skips the table)")
    parser.add_argument("--grind-rounds", type=int, default=300, help="rounds per cell of the owner table")
    parser.add_argument("--chain-rounds", type=int, default=10, help="rounds per on-chain cell (default 10)")
    parser.add_argument("--chain-shares", default="0.1,0.2,0.3,0.4", help="attacker stake shares on chain")
    parser.add_argument("--chain-splits", default="1,10,30", help="attacker node counts on chain")
    parser.add_argument("--chain-honest", default="4,100", help="honest node counts on chain")
    parser.add_argument("--zero-claims", type=int, default=1,
                        help="zero-weight draws per on-chain cell that claim anyway, to show the refusal (default 1)")
    args = parser.parse_args(argv)
    sections = {x.strip() for x in args.sections.split(",") if x.strip()}
    if unknown := sections - {"sim", "owner", "chain", "owner-chain"}:
        parser.error(f"unknown section(s) {', '.join(sorted(unknown))}; choose from sim, owner, chain, owner-chain")
    if not 0 < args.threshold_bps <= sortition.BPS:
        parser.error(f"--threshold-bps must be in (0, {sortition.BPS}], got {args.threshold_bps}")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    rng = random.Random(args.seed)
    if "sim" in sections:
        simulated_section(args, rng)
    if "owner" in sections and args.grind > 0:
        owner_section(args, rng)
    failed = "chain" in sections and chain_section(args) > 0
    if "owner-chain" in sections and args.grind > 0 and owner_chain_section(args) > 0:
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
