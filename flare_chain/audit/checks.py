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
    "check_fallback",
    "check_global_chain",
    "check_proposer",
    "check_quorum",
    "check_seats",
    "check_seed",
    "check_votes",
    "cid_text",
    "required_approvals",
    "seat_weights",
]


def cid_text(cid: bytes | None) -> str:
    """A binary CID as text for messages (hex when it does not parse)."""
    if cid is None:
        return "<none>"
    try:
        return cid_from_bytes(cid)
    except (ConfigError, ValueError):
        return "0x" + bytes(cid).hex()


def required_approvals(threshold_bps: int, weight: int) -> int:
    """Least approval weight that commits: the least ``a`` with ``a·10000 ≥ bps·weight`` (the contract's rule)."""
    return -(-threshold_bps * weight // sortition.BPS)


def seat_weights(history: History, r: RoundHistory) -> dict[str, int]:
    """Each seat's weight as the auditor recomputes it from its output and the round's sortition.

    Not the weight the event states: a contract that miscounts weights must not
    be able to vouch for itself. A seat whose weight cannot be recomputed (no
    registration or no ``RoundOpened``) weighs 0 here; ``check_seats`` names it.
    """
    weights: dict[str, int] = {}
    for seat in r.seats:
        reg = history.registrations.get(seat.node)
        if r.opened is None or reg is None or seat.node in weights:
            continue
        try:
            weights[seat.node] = sortition.seat_weight(seat.output, r.opened.expected_committee_size, reg.stake,
                                                       r.opened.total_stake)
        except ConfigError:
            weights[seat.node] = 0
    return weights


def check_seed(history: History, r: RoundHistory) -> Finding:
    """seed_r against keccak256(abi.encode(seed_{r-1}, prevrandao)) of the opening block; names the claim seed.

    The claim seed (the round seed mixed with the submission deadline block's hash)
    is not stored on-chain: the seat proofs (``check_seats``) and the probe windows
    (``reproduce``) are checked against the value recomputed from the block hash.
    """
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
    claim = history.claim_seed(r)
    seats_drawn_on = (f"claim seed 0x{claim.hex()} with the hash of block {r.opened.submission_deadline}"
                      if claim is not None else f"block {r.opened.submission_deadline} (claim seed) not yet mined")
    return Finding(name, PASS, rid, detail=f"from prevrandao of block {r.opened.block_number}; {seats_drawn_on}")


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
    """Every seat: calldata proof verifies under the registered key, output matches, weight and leader score as drawn."""
    name, rid = "vrf-proof", r.round_id
    if r.opened is None:
        return [Finding(name, UNVERIFIABLE, rid, seat.node, "no RoundOpened event: seed unknown") for seat in r.seats]
    claim = history.claim_seed(r)
    if claim is None:
        return [Finding(name, UNVERIFIABLE, rid, seat.node,
                        f"the hash of block {r.opened.submission_deadline} (the claim seed) was not read")
                for seat in r.seats]
    alpha = sortition.vrf_alpha(history.chain_id, history.address, rid, claim)
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
            weight = sortition.seat_weight(beta, r.opened.expected_committee_size, reg.stake, r.opened.total_stake)
        except ConfigError as exc:  # a contract that miscounted W or k: name the seat, keep auditing
            fail(f"no seat weight for stake {reg.stake} of total stake {r.opened.total_stake}, "
                 f"k={r.opened.expected_committee_size}: {exc}")
            continue
        if weight == 0:
            fail(f"output 0x{beta.hex()} draws weight 0 (stake {reg.stake} of "
                 f"{r.opened.total_stake}, k={r.opened.expected_committee_size}): no seat")
            continue
        if seat.weight != weight:
            fail(f"SeatClaimed states weight {seat.weight}; the output draws {weight}")
            continue
        if seat.leader_score != sortition.leader_score(beta, weight):
            fail(f"SeatClaimed states leader score {seat.leader_score:#x}; output and weight give "
                 f"{sortition.leader_score(beta, weight):#x}")
            continue
        if not history.schedule(r.opened).accepts_claim(seat.block_number):
            fail(f"claimed in block {seat.block_number}, outside the claim window "
                 f"{r.opened.submission_deadline + 1}..{r.opened.claim_deadline}")
            continue
        findings.append(Finding(name, PASS, rid, node, f"output 0x{beta.hex()[:16]}… draws weight {weight}"))
    return findings


def check_votes(history: History, r: RoundHistory) -> list[Finding]:
    """Votes only from seated members, at most one each per proposal, no later than that proposal's vote deadline."""
    name, rid = "votes", r.round_id
    seated = {s.node for s in r.seats}
    findings: list[Finding] = []
    for attempt in range(len(r.rejections) + 1):
        rejection = r.rejections[attempt - 1] if attempt else None
        deadline = None if r.opened is None else history.attempt_schedule(r.opened, rejection).vote_deadline
        seen: set[str] = set()
        for v in r.attempt_votes(attempt):
            if v.voter not in seated:
                findings.append(Finding(name, FAIL, rid, v.voter, f"voted (tx {v.tx_hash}) without a seat"))
            elif v.voter in seen:
                findings.append(Finding(name, FAIL, rid, v.voter,
                                        f"voted twice on proposal {attempt + 1} (second in tx {v.tx_hash})"))
            elif deadline is not None and v.block_number > deadline:
                findings.append(Finding(name, FAIL, rid, v.voter,
                                        f"voted in block {v.block_number}, after the deadline {deadline}"))
            seen.add(v.voter)
    if not findings:
        findings.append(Finding(name, PASS, rid, detail=(
            f"{len(r.votes)} vote(s) on {max(1, len(r.proposals))} proposal(s) from {len(seated)} seat(s)")))
    return findings


def check_quorum(history: History, r: RoundHistory) -> Finding:
    """A commit needs ``ceil(bps·K/10000)`` approval weight from distinct seated members cast before it.

    ``K`` is the committee's weight; every weight is the auditor's own
    recomputation from the seat's VRF output (``seat_weights``).
    """
    name, rid = "quorum", r.round_id
    if not r.committed or r.outcome is None:
        return Finding(name, PASS, rid, detail=f"not committed ({r.status})")
    weights = seat_weights(history, r)
    seated = {s.node for s in r.seats if s.block_number <= r.outcome.block_number}
    committee_weight = sum(weights.get(node, 0) for node in seated)
    needed = required_approvals(history.params.approval_threshold_bps, committee_weight)
    last = r.attempt_votes(len(r.rejections))  # a commit counts the votes on the last proposal only
    approvers = {v.voter for v in last if v.approve and v.voter in seated and v.block_number <= r.outcome.block_number}
    approvals = sum(weights.get(node, 0) for node in approvers)
    if committee_weight < history.params.min_committee_size:
        return Finding(name, FAIL, rid, detail=(
            f"committed with a committee of weight {committee_weight}, less than the minimum committee "
            f"{history.params.min_committee_size}"))
    if approvals < needed:
        return Finding(name, FAIL, rid, detail=(
            f"committed with approval weight {approvals} of {committee_weight}; the threshold "
            f"{history.params.approval_threshold_bps} bps needs {needed}"))
    if r.outcome.approval_weight != approvals or r.outcome.committee_weight != committee_weight:
        return Finding(name, FAIL, rid, detail=(
            f"RoundCommitted reports {r.outcome.approval_weight}/{r.outcome.committee_weight}, the seats' "
            f"outputs and the votes give {approvals}/{committee_weight}"))
    return Finding(name, PASS, rid, detail=f"weight {approvals} of {committee_weight} approved (needed {needed})")


def check_proposer(history: History, r: RoundHistory) -> list[Finding]:
    """Each proposer was seated, its rank is the one the seats' outputs give and has a turn in its attempt, and
    it proposed in that turn. A round has one proposal per attempt: the first, and one after each rejection.
    The accepted lists (on IPFS, only their root on chain) are ``reproduce.check_accepted_lists``'."""
    name, rid = "proposer", r.round_id
    if not r.proposals:
        return [Finding(name, PASS, rid, detail="no proposal")]
    if len(r.proposals) > len(r.rejections) + 1:
        return [Finding(name, FAIL, rid, r.proposals[-1].proposer,
                        f"{len(r.proposals)} proposals but {len(r.rejections)} rejection(s) in one round")]
    if r.opened is None:
        return [Finding(name, UNVERIFIABLE, rid, r.proposals[0].proposer, "no RoundOpened event: deadlines unknown")]
    weights = seat_weights(history, r)
    findings: list[Finding] = []
    for attempt, proposal in enumerate(r.proposals):
        scores = {s.node: sortition.leader_score(s.output, max(1, weights.get(s.node, 0)))
                  for s in r.seats if s.block_number <= proposal.block_number}
        if proposal.proposer not in scores:
            findings.append(Finding(name, FAIL, rid, proposal.proposer, "proposed without a seat"))
            continue
        rank = sortition.rank_of(scores, proposal.proposer)
        schedule = history.attempt_schedule(r.opened, r.rejections[attempt - 1] if attempt else None)
        if rank != proposal.rank:
            findings.append(Finding(name, FAIL, rid, proposal.proposer,
                                    f"event says rank {proposal.rank}, outputs give {rank}"))
        elif not schedule.has_turn(rank):
            findings.append(Finding(name, FAIL, rid, proposal.proposer, (
                f"rank {rank} proposed proposal {attempt + 1}; only ranks {schedule.first_rank}.."
                f"{sortition.PROPOSER_RANKS - 1} had a turn")))
        elif not schedule.may_propose(rank, proposal.block_number):
            findings.append(Finding(name, FAIL, rid, proposal.proposer, (
                f"rank {rank} proposed in block {proposal.block_number}; its turn is blocks "
                f"{schedule.proposer_turn(rank)}..{schedule.proposal_deadline}")))
        else:
            findings.append(Finding(name, PASS, rid, proposal.proposer,
                                    f"rank {rank} in its turn (block {proposal.block_number}, proposal {attempt + 1})"))
    return findings


def check_fallback(history: History, r: RoundHistory) -> Finding:
    """Each rejection followed a vote that put the threshold out of reach, handed the round to the rank after
    the rejected proposer's, and opened windows as long as the first ones from the block after it."""
    name, rid = "fallback", r.round_id
    if not r.rejections:
        return Finding(name, PASS, rid, detail="no proposal rejected")
    if r.opened is None:
        return Finding(name, UNVERIFIABLE, rid, detail="no RoundOpened event: deadlines unknown")
    first = history.schedule(r.opened)
    proposal_blocks = first.proposal_deadline - first.claim_deadline
    voting_blocks = first.vote_deadline - first.proposal_deadline
    weights = seat_weights(history, r)
    committee_weight = sum(weights.get(s.node, 0) for s in r.seats)
    needed = required_approvals(history.params.approval_threshold_bps, committee_weight)
    for attempt, rejection in enumerate(r.rejections):
        if attempt >= len(r.proposals):
            return Finding(name, FAIL, rid, detail=f"rejection {attempt + 1} in block {rejection.block_number} "
                           "with no proposal to reject")
        proposal = r.proposals[attempt]
        against = sum(weights.get(v.voter, 0) for v in r.attempt_votes(attempt) if not v.approve)
        start = rejection.block_number + 1
        expected = (proposal.rank, proposal.rank + 1, start, start + proposal_blocks - 1,
                    start + proposal_blocks - 1 + voting_blocks)
        stated = (rejection.rejected_rank, rejection.next_rank, rejection.turns_start, rejection.proposal_deadline,
                  rejection.vote_deadline)
        if committee_weight - against >= needed:
            return Finding(name, FAIL, rid, proposal.proposer, (
                f"proposal {attempt + 1} rejected with {against} of {committee_weight} against; approval "
                f"{needed} was still reachable"))
        if stated != expected:
            return Finding(name, FAIL, rid, proposal.proposer, (
                f"rejection {attempt + 1} states (rank, next rank, turns from, proposal until, votes until) "
                f"{stated}; the rules give {expected}"))
        if rejection.next_rank >= sortition.PROPOSER_RANKS:
            return Finding(name, FAIL, rid, detail=f"fell back to rank {rejection.next_rank}, past the last "
                           f"proposer rank {sortition.PROPOSER_RANKS - 1}")
    return Finding(name, PASS, rid, detail=(
        f"{len(r.rejections)} rejected proposal(s), each handed to the next rank with fresh windows"))


def chain_checks(history: History, r: RoundHistory, previous_cid: bytes | None) -> list[Finding]:
    """All chain-only checks of one round."""
    return [
        check_seed(history, r),
        check_global_chain(history, r, previous_cid),
        *check_seats(history, r),
        *check_votes(history, r),
        check_quorum(history, r),
        *check_proposer(history, r),
        check_fallback(history, r),
    ]
