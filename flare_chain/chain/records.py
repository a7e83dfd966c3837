"""Typed values the chain client returns: round state, event records, transaction results.

Plain frozen dataclasses and enums, mirroring FlareCoordinator's enums and events
field by field, so node and audit code never handle raw web3 ``AttributeDict``s.
CIDs are raw binary CID bytes; addresses are checksummed strings; block numbers
and counts are ints.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any

__all__ = [
    "FailureReason",
    "NodeInfo",
    "NodeRegistration",
    "Proposal",
    "ProposalRejection",
    "RoundInfo",
    "RoundOpened",
    "RoundOutcome",
    "RoundStatus",
    "SeatClaim",
    "SortitionInfo",
    "Submission",
    "TxResult",
    "Vote",
]


class RoundStatus(IntEnum):
    """``FlareCoordinator.RoundStatus``; COMMITTED and FAILED are final."""

    NONE = 0
    OPEN = 1
    PROPOSED = 2
    COMMITTED = 3
    FAILED = 4

    @property
    def is_final(self) -> bool:
        return self in (RoundStatus.COMMITTED, RoundStatus.FAILED)


class FailureReason(IntEnum):
    """``FlareCoordinator.FailureReason``: why a round ended without a new global adapter."""

    REJECTED = 0
    NO_PROPOSAL = 1
    VOTE_TIMEOUT = 2
    COMMITTEE_TOO_SMALL = 3


@dataclass(frozen=True)
class TxResult:
    """A mined, successful transaction: what callers need to log it and sum gas."""

    tx_hash: str
    gas_used: int
    block_number: int
    receipt: Any


@dataclass(frozen=True)
class RoundInfo:
    """``roundInfo(round)``: the on-chain state of one round. Deadlines are inclusive block numbers.

    ``committee_size`` is the number of members seated so far and ``committee_weight``
    their total seat weight (both final after the claim deadline); ``approvals``
    and ``rejections`` are the seat weights voted each way on the current proposal.

    A rejected proposal reopens the round for the next rank (the contract's
    fallback): ``rejected_proposals`` counts them, ``turns_start`` is the first
    block of the current attempt's proposer turns, ``first_rank`` the lowest rank
    that may still propose, and the proposal and vote deadlines are the current
    attempt's. Before any rejection: 0, the block after the claim deadline, 0.
    """

    round_id: int
    status: RoundStatus
    seed: bytes
    submission_deadline: int
    claim_deadline: int
    proposal_deadline: int
    vote_deadline: int
    committee_size: int
    committee_weight: int
    submission_count: int
    approvals: int
    rejections: int
    proposal_hash: bytes
    turns_start: int = 0
    first_rank: int = 0
    rejected_proposals: int = 0

    def __post_init__(self) -> None:
        if self.turns_start == 0 and self.status != RoundStatus.NONE:  # a record built without the attempt fields
            object.__setattr__(self, "turns_start", self.claim_deadline + 1)


@dataclass(frozen=True)
class SortitionInfo:
    """``sortitionInfo(round)``: total eligible stake ``W``, expected size ``k``, eligible nodes, members seated, their weight."""

    round_id: int
    total_stake: int
    expected_committee_size: int
    eligible_nodes: int
    seats: int
    weight: int


@dataclass(frozen=True)
class NodeInfo:
    """``nodeInfo(node)``: stake (wei), first eligible round and VRF public key ``(x, y)``.

    All zero for an address that never registered.
    """

    node: str
    stake: int
    first_eligible_round: int
    public_key: tuple[int, int]

    @property
    def registered(self) -> bool:
        return self.first_eligible_round != 0


@dataclass(frozen=True)
class NodeRegistration:
    """``NodeRegistered``: stake, VRF public key ``(x, y)``; eligible from ``first_eligible_round`` on.

    ``exit_round`` (from a later ``NodeUnbonding``) is the first round it is no
    longer eligible for; 0 while it has not asked to unbond.
    """

    node: str
    stake: int
    public_key: tuple[int, int]
    first_eligible_round: int
    block_number: int
    tx_hash: str
    exit_round: int = 0


@dataclass(frozen=True)
class SeatClaim:
    """``SeatClaimed``: ``node`` proved VRF ``output``, which drew seat ``weight``; ``leader_score`` ranks it."""

    round_id: int
    node: str
    output: bytes
    weight: int
    leader_score: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class RoundOpened:
    """``RoundOpened``: the round's seed, starting global adapter, deadlines and sortition parameters."""

    round_id: int
    seed: bytes
    global_cid: bytes
    submission_deadline: int
    claim_deadline: int
    proposal_deadline: int
    vote_deadline: int
    expected_committee_size: int
    eligible_nodes: int
    total_stake: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Submission:
    """``UpdateSubmitted``: one node's update for one round."""

    round_id: int
    node: str
    cid: bytes
    sample_count: int
    manifest_hash: bytes
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Proposal:
    """``AggregateProposed``: the proposed global adapter, what it was built from, the proposer's rank.

    The chain keeps only the accepted list's root and length; the list itself
    is in the aggregate's manifest on IPFS. ``accepted`` is None until a reader
    fetched and checked it (``node.bundles.with_accepted_list``).
    """

    round_id: int
    proposer: str
    global_cid: bytes
    accepted_root: bytes
    accepted_count: int
    rank: int
    block_number: int
    tx_hash: str
    accepted: tuple[str, ...] | None = None


@dataclass(frozen=True)
class ProposalRejection:
    """``ProposalRejected``: the committee voted a proposal down and the round fell back to the next rank.

    Ranks from ``next_rank`` take turns from block ``turns_start``; the new
    proposal is due by ``proposal_deadline`` and voted on until ``vote_deadline``.
    Votes mined up to ``block_number`` were on the rejected proposal.
    """

    round_id: int
    rejected_rank: int
    next_rank: int
    turns_start: int
    proposal_deadline: int
    vote_deadline: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class Vote:
    """``VoteCast``: one committee member's vote on a round's proposal, cast with its seat ``weight``."""

    round_id: int
    voter: str
    approve: bool
    weight: int
    block_number: int
    tx_hash: str


@dataclass(frozen=True)
class RoundOutcome:
    """``RoundCommitted`` or ``RoundFailed``: how a round ended.

    ``global_cid``, ``approval_weight`` and ``committee_weight`` (seat weights)
    are set when committed; ``failure_reason`` when failed.
    """

    round_id: int
    committed: bool
    global_cid: bytes | None
    approval_weight: int | None
    committee_weight: int | None
    failure_reason: FailureReason | None
    block_number: int
    tx_hash: str
