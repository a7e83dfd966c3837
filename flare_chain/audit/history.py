"""The history of a coordinator, rebuilt from its events and public state only.

``build_history`` turns the decoded event stream into one ``RoundHistory`` per
round (opening, submissions, seats with the proofs read from the claim
transactions, proposal, votes, outcome, gas) plus the registrations and the
contract's fixed parameters. Nothing here trusts a node's word: every field
comes from a log, a transaction's calldata, a receipt or a view call.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace

from eth_abi import encode
from eth_utils import keccak, to_checksum_address
from web3.exceptions import Web3Exception

from flare_chain.audit.fetch import ChainReader, EventLog
from flare_chain.chain.records import (
    FailureReason,
    NodeRegistration,
    Proposal,
    ProposalRejection,
    RoundOpened,
    RoundOutcome,
    SeatClaim,
    Submission,
    Vote,
)
from flare_chain.committee import secp256k1, sortition
from flare_chain.protocol import RoundSchedule

__all__ = ["ContractParams", "History", "RoundHistory", "SeatProof", "build_history", "seed_zero"]


def seed_zero(chain_id: int, address: str) -> bytes:
    """``keccak256(abi.encode(chainid, address(this)))``, the contract's seed of round 0."""
    return keccak(encode(["uint256", "address"], [chain_id, to_checksum_address(address)]))


@dataclass(frozen=True)
class ContractParams:
    """The coordinator's constructor parameters, read through its views."""

    approval_threshold_bps: int
    min_committee_size: int
    leader_blocks: int
    max_sample_count: int


@dataclass(frozen=True)
class SeatProof:
    """What a ``claimSeat`` transaction carried: its sender, round argument and proof words."""

    sender: str
    function: str
    round_id: int | None
    proof_words: tuple[int, int, int, int] | None

    def proof_bytes(self) -> bytes | None:
        """The 81-byte ECVRF proof ``compressed(Gamma) ‖ c (16) ‖ s (32)`` the words encode."""
        if self.proof_words is None:
            return None
        gx, gy, c, s = self.proof_words
        if not (0 <= gx < 2**256 and 0 <= gy < 2**256 and 0 <= c < 2**128 and 0 <= s < 2**256):
            return None
        return secp256k1.compress((gx, gy)) + c.to_bytes(16, "big") + s.to_bytes(32, "big")


@dataclass
class RoundHistory:
    """Everything the chain says about one round."""

    round_id: int
    opened: RoundOpened | None = None
    submissions: list[Submission] = field(default_factory=list)
    seats: list[SeatClaim] = field(default_factory=list)
    proofs: dict[str, SeatProof] = field(default_factory=dict)
    proposals: list[Proposal] = field(default_factory=list)
    rejections: list[ProposalRejection] = field(default_factory=list)
    votes: list[Vote] = field(default_factory=list)
    outcome: RoundOutcome | None = None
    tx_hashes: list[str] = field(default_factory=list)
    gas_used: int = 0

    @property
    def proposal(self) -> Proposal | None:
        """The round's last proposal: the one it committed, or the one still (or last) voted on."""
        return self.proposals[-1] if self.proposals else None

    def attempt_votes(self, attempt: int) -> list[Vote]:
        """The votes on proposal ``attempt`` (0: the first): those mined after the rejection that
        opened the attempt and up to the one that closed it (a vote on a rejected proposal
        can only be mined before the next proposal, so blocks tell attempts apart)."""
        after = self.rejections[attempt - 1].block_number if 0 < attempt <= len(self.rejections) else -1
        until = self.rejections[attempt].block_number if attempt < len(self.rejections) else None
        return [v for v in self.votes if v.block_number > after and (until is None or v.block_number <= until)]

    @property
    def committed(self) -> bool:
        return self.outcome is not None and self.outcome.committed

    @property
    def status(self) -> str:
        if self.outcome is None:
            return "proposed" if self.proposals else "open"
        if self.outcome.committed:
            return "committed"
        reason = self.outcome.failure_reason
        return f"failed ({reason.name.lower()})" if reason is not None else "failed"


@dataclass
class History:
    """A coordinator's registrations and rounds, as its events tell them."""

    chain_id: int
    address: str
    from_block: int
    to_block: int
    params: ContractParams
    seed0: bytes
    initial_cid: bytes | None
    registrations: dict[str, NodeRegistration]
    rounds: dict[int, RoundHistory]
    prevrandao: dict[int, bytes] = field(default_factory=dict)
    block_hashes: dict[int, bytes] = field(default_factory=dict)
    audited: list[int] = field(default_factory=list)

    def claim_seed(self, r: RoundHistory) -> bytes | None:
        """The seed ``r``'s seats and probe were drawn on (``sortition.claim_seed``); None if its
        submission deadline block was not read (not mined by the audited head)."""
        if r.opened is None:
            return None
        block_hash = self.block_hashes.get(r.opened.submission_deadline)
        return None if block_hash is None else sortition.claim_seed(r.opened.seed, block_hash)

    def round_ids(self) -> list[int]:
        """The rounds to check (``rounds`` of ``build_history``); the others are context only."""
        return list(self.audited)

    def schedule(self, opened: RoundOpened) -> RoundSchedule:
        """The timing rules of the round ``opened`` started, with this contract's fixed parameters."""
        return RoundSchedule.of(opened, leader_blocks=self.params.leader_blocks,
                                min_committee_size=self.params.min_committee_size)

    def attempt_schedule(self, opened: RoundOpened, rejection: ProposalRejection | None) -> RoundSchedule:
        """The timing of the proposal attempt that ``rejection`` opened (None: the round's first), as its
        event states it; ``check_fallback`` checks those figures against the first attempt's windows."""
        first = self.schedule(opened)
        if rejection is None:
            return first
        return replace(first, proposal_deadline=rejection.proposal_deadline, vote_deadline=rejection.vote_deadline,
                       turns_start=rejection.turns_start, first_rank=rejection.next_rank)


def _where(e: EventLog) -> dict[str, object]:
    return {"block_number": e.block_number, "tx_hash": e.tx_hash}


def _apply(rounds: dict[int, RoundHistory], e: EventLog) -> None:
    a = e.args
    r = rounds.setdefault(int(a["round"]), RoundHistory(int(a["round"])))
    if e.tx_hash not in r.tx_hashes:
        r.tx_hashes.append(e.tx_hash)
    if e.name == "RoundOpened":
        r.opened = RoundOpened(
            round_id=r.round_id, seed=bytes(a["seed"]), global_cid=bytes(a["globalCid"]),
            submission_deadline=a["submissionDeadline"], claim_deadline=a["claimDeadline"],
            proposal_deadline=a["proposalDeadline"], vote_deadline=a["voteDeadline"],
            expected_committee_size=a["expectedCommitteeSize"], eligible_nodes=a["eligibleNodes"],
            total_stake=a["totalStake"], **_where(e),  # type: ignore[arg-type]
        )
    elif e.name == "UpdateSubmitted":
        r.submissions.append(Submission(
            round_id=r.round_id, node=a["node"], cid=bytes(a["cid"]), sample_count=a["sampleCount"],
            manifest_hash=bytes(a["manifestHash"]), **_where(e),  # type: ignore[arg-type]
        ))
    elif e.name == "SeatClaimed":
        r.seats.append(SeatClaim(round_id=r.round_id, node=a["node"], output=bytes(a["output"]),
                                 weight=a["weight"], leader_score=a["leaderScore"],
                                 **_where(e)))  # type: ignore[arg-type]
    elif e.name == "AggregateProposed":
        r.proposals.append(Proposal(
            round_id=r.round_id, proposer=a["proposer"], global_cid=bytes(a["globalCid"]),
            accepted_root=bytes(a["acceptedRoot"]), accepted_count=int(a["acceptedCount"]), rank=a["rank"],
            **_where(e),  # type: ignore[arg-type]
        ))
    elif e.name == "ProposalRejected":
        r.rejections.append(ProposalRejection(
            round_id=r.round_id, rejected_rank=a["rejectedRank"], next_rank=a["nextRank"],
            turns_start=a["turnsStart"], proposal_deadline=a["proposalDeadline"], vote_deadline=a["voteDeadline"],
            **_where(e),  # type: ignore[arg-type]
        ))
    elif e.name == "VoteCast":
        r.votes.append(Vote(round_id=r.round_id, voter=a["voter"], approve=bool(a["approve"]),
                            weight=a["weight"], **_where(e)))  # type: ignore[arg-type]
    elif e.name == "RoundCommitted":
        r.outcome = RoundOutcome(round_id=r.round_id, committed=True, global_cid=bytes(a["globalCid"]),
                                 approval_weight=a["approvalWeight"], committee_weight=a["committeeWeight"],
                                 failure_reason=None, **_where(e))  # type: ignore[arg-type]
    elif e.name == "RoundFailed":
        r.outcome = RoundOutcome(round_id=r.round_id, committed=False, global_cid=None, approval_weight=None,
                                 committee_weight=None, failure_reason=FailureReason(a["reason"]),
                                 **_where(e))  # type: ignore[arg-type]


def _seat_proof(reader: ChainReader, seat: SeatClaim) -> SeatProof:
    tx = reader.transaction(seat.tx_hash)
    sender = to_checksum_address(tx["from"])
    try:
        fn, args = reader.decode_call(seat.tx_hash)
    except (ValueError, Web3Exception):  # calldata that is not a call of this ABI
        return SeatProof(sender=sender, function="<undecodable>", round_id=None, proof_words=None)
    if fn != "claimSeat":
        return SeatProof(sender=sender, function=fn, round_id=None, proof_words=None)
    words = tuple(int(w) for w in args["proof"])
    return SeatProof(sender=sender, function=fn, round_id=int(args["round"]),
                     proof_words=words)  # type: ignore[arg-type]


def build_history(
    reader: ChainReader,
    events: Iterable[EventLog],
    *,
    chain_id: int,
    from_block: int,
    to_block: int,
    rounds: range | None = None,
) -> History:
    """Group ``events`` into rounds; read proofs, gas and prevrandao for ``rounds`` (default: all).

    Every round's events are kept, so checks of a round can look at the one
    before it (its seed, the adapter it left) even when only a range is audited.
    """
    registrations: dict[str, NodeRegistration] = {}
    by_round: dict[int, RoundHistory] = {}
    initial: bytes | None = None
    for e in events:
        if e.name == "NodeRegistered":
            a = e.args
            registrations[a["node"]] = NodeRegistration(
                node=a["node"], stake=a["stake"], public_key=(a["publicKeyX"], a["publicKeyY"]),
                first_eligible_round=a["firstEligibleRound"], **_where(e),  # type: ignore[arg-type]
            )
        elif e.name == "NodeUnbonding" and e.args["node"] in registrations:
            registrations[e.args["node"]] = replace(registrations[e.args["node"]], exit_round=e.args["exitRound"])
        elif e.name == "GlobalAdapterInitialized":
            initial = bytes(e.args["cid"])
        elif "round" in e.args:
            _apply(by_round, e)
    params = ContractParams(
        approval_threshold_bps=int(reader.view("approvalThresholdBps")),
        min_committee_size=int(reader.view("minCommitteeSize")),
        leader_blocks=int(reader.view("leaderBlocks")),
        max_sample_count=int(reader.view("maxSampleCount")),
    )
    history = History(chain_id=chain_id, address=reader.address, from_block=from_block, to_block=to_block,
                      params=params, seed0=seed_zero(chain_id, reader.address), initial_cid=initial,
                      registrations=registrations, rounds=by_round)
    history.audited = sorted(rid for rid in by_round if rounds is None or rid in rounds)
    for rid in history.audited:
        r = by_round[rid]
        for seat in r.seats:
            r.proofs[seat.node] = _seat_proof(reader, seat)
        r.gas_used = sum(reader.gas_used(h) for h in r.tx_hashes)
        if r.opened is not None:
            history.prevrandao[r.opened.block_number] = reader.prevrandao(r.opened.block_number)
            if r.opened.submission_deadline <= to_block:
                deadline = r.opened.submission_deadline
                history.block_hashes[deadline] = reader.block_hash(deadline)
    return history
