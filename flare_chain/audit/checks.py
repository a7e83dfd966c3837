"""Checks that need only the chain: seeds, seats, votes, quorum, proposer turn, adapter chain.

Each function takes the rebuilt ``History`` (and a round) and returns the
findings of one check, a pass included, so a report can show what was checked
and not only what failed. They read no network: the history already holds the
events, calldata and block fields they compare.
"""

from __future__ import annotations

from eth_abi import encode
from eth_utils import keccak

from flare_chain.audit.findings import FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.history import History, RoundHistory
from flare_chain.committee import sortition, vrf
from flare_chain.errors import ConfigError, IntegrityError
from flare_chain.ipfs import cid_from_bytes

__all__ = [
    "chain_checks",
    "check_global_chain",
    "check_proposer",
    "check_quorum",
    "check_seats",
    "check_seed",
    "check_votes",
    "cid_text",
    "required_approvals",
]


def cid_text(cid: bytes | None) -> str:
    """A binary CID as text for messages (hex when it does not parse)."""
    if cid is None:
        return "<none>"
    try:
        return cid_from_bytes(cid)
    except (ConfigError, ValueError):
        return "0x" + bytes(cid).hex()


def required_approvals(threshold_bps: int, seats: int) -> int:
    """Fewest approvals that commit: the least ``a`` with ``a·10000 ≥ bps·seats`` (the contract's rule)."""
    return -(-threshold_bps * seats // sortition.BPS)


def check_seed(history: History, r: RoundHistory) -> Finding:
    """seed_r against keccak256(abi.encode(seed_{r-1}, prevrandao)) of the opening block."""
    name, rid = "seed-chain", r.round_id
    if r.opened is None:
        return Finding(name, UNVERIFIABLE, rid, detail="no RoundOpened event in the audited blocks")
    if rid == 1:
        previous: bytes | None = history.seed0
    else:
        before = history.rounds.get(rid - 1)
        previous = before.opened.seed if before is not None and before.opened is not None else None
    if previous is None:
        return Finding(name, UNVERIFIABLE, rid, detail=f"round {rid - 1}'s seed is outside the audited range")
    randao = history.prevrandao.get(r.opened.block_number)
    if randao is None:
        return Finding(name, UNVERIFIABLE, rid, detail=f"block {r.opened.block_number} was not read")
    expected = keccak(encode(["bytes32", "bytes32"], [previous, randao]))
    if expected != r.opened.seed:
        return Finding(name, FAIL, rid, detail=(
            f"seed 0x{r.opened.seed.hex()} is not keccak256(seed_{rid - 1} 0x{previous.hex()}, prevrandao "
            f"0x{randao.hex()} of block {r.opened.block_number}) = 0x{expected.hex()}"))
    return Finding(name, PASS, rid, detail=f"from prevrandao of block {r.opened.block_number}")


def check_global_chain(history: History, r: RoundHistory, previous_cid: bytes | None) -> Finding:
    """The round opened on the adapter the last committed round (or the initialisation) left."""
    name, rid = "global-chain", r.round_id
    if r.opened is None or previous_cid is None:
        return Finding(name, UNVERIFIABLE, rid, detail="the previous global adapter is outside the audited range")
    if r.opened.global_cid != previous_cid:
        return Finding(name, FAIL, rid, detail=(
            f"opened on {cid_text(r.opened.global_cid)} but the last committed adapter is {cid_text(previous_cid)}"))
    return Finding(name, PASS, rid, detail=cid_text(previous_cid))


def check_seats(history: History, r: RoundHistory) -> list[Finding]:
    """Every seat: calldata proof verifies under the registered key, output matches, under threshold."""
    name, rid = "vrf-proof", r.round_id
    if r.opened is None:
        return [Finding(name, UNVERIFIABLE, rid, seat.node, "no RoundOpened event: seed unknown") for seat in r.seats]
    alpha = sortition.vrf_alpha(history.chain_id, history.address, rid, r.opened.seed)
    findings: list[Finding] = []
    seen: set[str] = set()
    for seat in r.seats:
        node = seat.node

        def fail(detail: str, node: str = node) -> None:
            findings.append(Finding(name, FAIL, rid, node, detail))

        reg = history.registrations.get(node)
        proof_info = r.proofs.get(node)
        if node in seen:
            fail("claimed a second seat in the same round")
            continue
        seen.add(node)
        if reg is None:
            fail("holds a seat but never registered")
            continue
        if reg.first_eligible_round > rid:
            fail(f"registered for rounds from {reg.first_eligible_round} on")
            continue
        if reg.exit_round and rid >= reg.exit_round:
            fail(f"asked to unbond before round {rid} opened (out of W from round {reg.exit_round} on)")
            continue
        if proof_info is None or proof_info.proof_words is None:
            fail(f"seat transaction {seat.tx_hash} is not a claimSeat call"
                 f" ({proof_info.function if proof_info else 'not read'})")
            continue
        if proof_info.sender != node or proof_info.round_id != rid:
            fail(f"claimSeat in {seat.tx_hash} was sent by {proof_info.sender} for round {proof_info.round_id}")
            continue
        proof = proof_info.proof_bytes()
        x, y = reg.public_key
        key = b"\x04" + x.to_bytes(32, "big") + y.to_bytes(32, "big")
        try:
            if proof is None:
                raise vrf.InvalidProof("proof words are out of range")
            beta = vrf.verify(key, proof, alpha)
        except (IntegrityError, ConfigError) as exc:
            fail(f"VRF proof in {seat.tx_hash} does not verify: {exc}")
            continue
        if beta != seat.output:
            fail(f"proof gives output 0x{beta.hex()} but SeatClaimed says 0x{seat.output.hex()}")
            continue
        try:
            bound = sortition.threshold(r.opened.expected_committee_size, reg.stake, r.opened.total_stake)
        except ConfigError as exc:  # a contract that miscounted W or k: name the seat, keep auditing
            fail(f"no sortition threshold for stake {reg.stake} of total stake {r.opened.total_stake}, "
                 f"k={r.opened.expected_committee_size}: {exc}")
            continue
        if not 0 < int.from_bytes(beta, "big") < bound:
            fail(f"output 0x{beta.hex()} is not under the threshold {bound:#x} (stake {reg.stake} of "
                 f"{r.opened.total_stake}, k={r.opened.expected_committee_size})")
            continue
        if not history.schedule(r.opened).accepts_claim(seat.block_number):
            fail(f"claimed in block {seat.block_number}, outside the claim window "
                 f"{r.opened.submission_deadline + 1}..{r.opened.claim_deadline}")
            continue
        findings.append(Finding(name, PASS, rid, node, f"output 0x{beta.hex()[:16]}… under threshold"))
    return findings


def check_votes(r: RoundHistory) -> list[Finding]:
    """Votes only from seated members, at most one each, no later than the vote deadline."""
    name, rid = "votes", r.round_id
    seated = {s.node for s in r.seats}
    findings: list[Finding] = []
    seen: set[str] = set()
    for v in r.votes:
        if v.voter not in seated:
            findings.append(Finding(name, FAIL, rid, v.voter, f"voted (tx {v.tx_hash}) without a seat"))
        elif v.voter in seen:
            findings.append(Finding(name, FAIL, rid, v.voter, f"voted twice (second in tx {v.tx_hash})"))
        elif r.opened is not None and v.block_number > r.opened.vote_deadline:
            findings.append(Finding(name, FAIL, rid, v.voter,
                                    f"voted in block {v.block_number}, after the deadline {r.opened.vote_deadline}"))
        seen.add(v.voter)
    if not findings:
        findings.append(Finding(name, PASS, rid, detail=f"{len(r.votes)} vote(s) from {len(seated)} seat(s)"))
    return findings


def check_quorum(history: History, r: RoundHistory) -> Finding:
    """A commit needs ``ceil(bps·seats/10000)`` distinct seated approvals cast before it."""
    name, rid = "quorum", r.round_id
    if not r.committed or r.outcome is None:
        return Finding(name, PASS, rid, detail=f"not committed ({r.status})")
    seats = len({s.node for s in r.seats if s.block_number <= r.outcome.block_number})
    needed = required_approvals(history.params.approval_threshold_bps, seats)
    seated = {s.node for s in r.seats}
    approvals = len({v.voter for v in r.votes
                     if v.approve and v.voter in seated and v.block_number <= r.outcome.block_number})
    if seats < history.params.min_committee_size:
        return Finding(name, FAIL, rid, detail=(
            f"committed with {seats} seat(s), fewer than the minimum committee {history.params.min_committee_size}"))
    if approvals < needed:
        return Finding(name, FAIL, rid, detail=(
            f"committed with {approvals} approval(s) of {seats} seat(s); the threshold "
            f"{history.params.approval_threshold_bps} bps needs {needed}"))
    if r.outcome.approvals != approvals or r.outcome.committee_size != seats:
        return Finding(name, FAIL, rid, detail=(
            f"RoundCommitted reports {r.outcome.approvals}/{r.outcome.committee_size}, the events show "
            f"{approvals}/{seats}"))
    return Finding(name, PASS, rid, detail=f"{approvals} of {seats} approved (needed {needed})")


def check_proposer(history: History, r: RoundHistory) -> Finding:
    """The proposer was seated, its rank is the one its output gives, and it proposed in its turn."""
    name, rid = "proposer", r.round_id
    proposal = r.proposal
    if proposal is None:
        return Finding(name, PASS, rid, detail="no proposal")
    if len(r.proposals) > 1:
        return Finding(name, FAIL, rid, proposal.proposer, f"{len(r.proposals)} proposals in one round")
    outputs = {s.node: s.output for s in r.seats if s.block_number <= proposal.block_number}
    if proposal.proposer not in outputs:
        return Finding(name, FAIL, rid, proposal.proposer, "proposed without a seat")
    rank = sortition.rank_of(outputs, proposal.proposer)
    if rank != proposal.rank:
        return Finding(name, FAIL, rid, proposal.proposer, f"event says rank {proposal.rank}, outputs give {rank}")
    if r.opened is None:
        return Finding(name, UNVERIFIABLE, rid, proposal.proposer, "no RoundOpened event: deadlines unknown")
    schedule = history.schedule(r.opened)
    if not schedule.may_propose(rank, proposal.block_number):
        return Finding(name, FAIL, rid, proposal.proposer, (
            f"rank {rank} proposed in block {proposal.block_number}; its turn is blocks "
            f"{schedule.proposer_turn(rank)}..{schedule.proposal_deadline}"))
    return Finding(name, PASS, rid, proposal.proposer, f"rank {rank} in its turn (block {proposal.block_number})")


def chain_checks(history: History, r: RoundHistory, previous_cid: bytes | None) -> list[Finding]:
    """All chain-only checks of one round."""
    return [
        check_seed(history, r),
        check_global_chain(history, r, previous_cid),
        *check_seats(history, r),
        *check_votes(r),
        check_quorum(history, r),
        check_proposer(history, r),
    ]
