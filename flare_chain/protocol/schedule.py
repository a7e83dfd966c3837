"""The round's timing rules, written once: which phase a block is in, whose turn it is, when a round is stuck.

``FlareCoordinator`` enforces these rules on-chain; everything off-chain that
must predict or check them — the node daemon deciding when to act, the owner's
driver finalizing stuck rounds, the in-process demo mining to the next phase,
the auditor judging a history — asks a :class:`RoundSchedule` instead of
re-deriving a deadline formula. A change to the round protocol is then one
change here plus the contract, and ``tests/protocol/test_schedule.py`` pins
this module to the contract's own answers.

All deadlines are absolute, inclusive block numbers, as in the contract. A
"block" argument is the block a transaction would be mined in (for a node
deciding now, the head + 1).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Protocol

from flare_chain.chain.records import RoundInfo, RoundStatus
from flare_chain.committee.sortition import PROPOSER_RANKS

__all__ = ["Deadlines", "Phase", "RoundSchedule", "ScheduleSource", "TimingParams"]


class Deadlines(Protocol):
    """Anything carrying a round's four deadlines (``RoundInfo`` from a view, ``RoundOpened`` from a log)."""

    @property
    def submission_deadline(self) -> int: ...
    @property
    def claim_deadline(self) -> int: ...
    @property
    def proposal_deadline(self) -> int: ...
    @property
    def vote_deadline(self) -> int: ...


class TimingParams(Protocol):
    """The coordinator's fixed timing parameters (``CoordinatorClient`` provides them)."""

    def leader_blocks(self) -> int: ...
    def min_committee_size(self) -> int: ...


class ScheduleSource(TimingParams, Protocol):
    """What a schedule is read from: the coordinator client's views (or a test double of them)."""

    def round_info(self, round_id: int) -> RoundInfo: ...


class Phase(Enum):
    """The window a block falls in; ``CLOSED`` is after the vote deadline."""

    SUBMISSION = "submission"
    CLAIM = "claim"
    PROPOSAL = "proposal"
    VOTE = "vote"
    CLOSED = "closed"


@dataclass(frozen=True)
class RoundSchedule:
    """One round's deadlines plus the contract's fixed timing parameters.

    ``leader_blocks`` is how long each proposer in rank order has before the
    next may step in; ``min_committee_size`` the committee weight below which
    the round can only fail. Both are the coordinator's immutable constructor values.

    ``turns_start`` and ``first_rank`` are the current proposal attempt's: the
    first block of its proposer turns and the lowest rank that may propose in it.
    The first attempt starts the block after the claim deadline at rank 0; a
    rejected proposal reopens the round with turns from the block after the
    rejecting vote, starting at the rejected rank + 1, and the proposal and vote
    deadlines move with it (``RoundInfo`` carries the current ones).
    """

    submission_deadline: int
    claim_deadline: int
    proposal_deadline: int
    vote_deadline: int
    leader_blocks: int
    min_committee_size: int
    turns_start: int = 0
    first_rank: int = 0

    def __post_init__(self) -> None:
        if self.turns_start == 0:
            object.__setattr__(self, "turns_start", self.claim_deadline + 1)

    @classmethod
    def of(cls, deadlines: Deadlines, *, leader_blocks: int, min_committee_size: int) -> RoundSchedule:
        """The schedule of the round whose deadlines ``deadlines`` carries.

        A ``RoundInfo`` also carries the current proposal attempt (after a
        rejection); anything else (a ``RoundOpened`` log) describes the first.
        """
        turns_start, first_rank = 0, 0
        if isinstance(deadlines, RoundInfo):
            turns_start, first_rank = deadlines.turns_start, deadlines.first_rank
        return cls(
            submission_deadline=int(deadlines.submission_deadline),
            claim_deadline=int(deadlines.claim_deadline),
            proposal_deadline=int(deadlines.proposal_deadline),
            vote_deadline=int(deadlines.vote_deadline),
            leader_blocks=int(leader_blocks),
            min_committee_size=int(min_committee_size),
            turns_start=int(turns_start),
            first_rank=int(first_rank),
        )

    @classmethod
    def for_round(cls, deadlines: Deadlines, params: TimingParams) -> RoundSchedule:
        """The schedule of a round whose deadlines the caller already read, with the contract's parameters."""
        return cls.of(deadlines, leader_blocks=params.leader_blocks(), min_committee_size=params.min_committee_size())

    @classmethod
    def read(cls, source: ScheduleSource, round_id: int) -> RoundSchedule:
        """The schedule of ``round_id`` as the chain states it (its ``roundInfo`` and the fixed parameters)."""
        return cls.for_round(source.round_info(round_id), source)

    # ------------------------------------------------------------ phases

    def phase(self, block: int) -> Phase:
        """The window that a transaction mined in ``block`` falls in."""
        if block <= self.submission_deadline:
            return Phase.SUBMISSION
        if block <= self.claim_deadline:
            return Phase.CLAIM
        if block <= self.proposal_deadline:
            return Phase.PROPOSAL
        if block <= self.vote_deadline:
            return Phase.VOTE
        return Phase.CLOSED

    def accepts_submission(self, block: int) -> bool:
        """``submitUpdate`` is in time in ``block`` (up to the submission deadline, inclusive)."""
        return block <= self.submission_deadline

    def accepts_claim(self, block: int) -> bool:
        """``claimSeat`` is in its window in ``block``: after the submission deadline, up to the claim deadline."""
        return self.submission_deadline < block <= self.claim_deadline

    def accepts_vote(self, block: int) -> bool:
        """A vote mined in ``block`` is in time (the round must also be PROPOSED)."""
        return block <= self.vote_deadline

    # ------------------------------------------------------------ proposer turns

    def has_turn(self, rank: int) -> bool:
        """Rank ``rank`` may still propose in this attempt: at least ``first_rank``, below ``PROPOSER_RANKS``."""
        return self.first_rank <= rank < PROPOSER_RANKS

    def proposer_turn(self, rank: int) -> int:
        """First block in which the member of proposer rank ``rank`` (0 = leader) may propose in this attempt.

        The attempt's first rank may propose from ``turns_start`` (the block
        after the claim deadline, or after the vote that rejected the last
        proposal); each later rank ``leader_blocks`` blocks after the one
        before, so a silent proposer is replaced. A turn lasts until the
        proposal deadline. Ranks without a turn (``has_turn``) never propose.
        """
        if not self.has_turn(rank):
            raise ValueError(f"proposer rank {rank} has no turn: ranks {self.first_rank}..{PROPOSER_RANKS - 1} "
                             "propose in this attempt")
        return self.turns_start + (rank - self.first_rank) * self.leader_blocks

    def may_propose(self, rank: int, block: int) -> bool:
        """Rank ``rank`` may propose in ``block``: it has a turn, the turn has come and the window is open."""
        return self.has_turn(rank) and self.proposer_turn(rank) <= block <= self.proposal_deadline

    def turns_in_window(self) -> int:
        """How many ranks get a turn before this attempt's proposal deadline (at most ``PROPOSER_RANKS``)."""
        if self.proposal_deadline < self.turns_start:
            return 0
        fitting = (self.proposal_deadline - self.turns_start) // self.leader_blocks + 1
        return min(fitting, PROPOSER_RANKS - self.first_rank)

    # ------------------------------------------------------------ stuck rounds

    def finalizable_from(self, status: RoundStatus, committee_weight: int) -> int | None:
        """First block in which ``finalizeRound`` fails the round; None when the round is already final.

        OPEN with a committee weighing less than ``min_committee_size``: after
        the claim deadline (seats cannot grow after it). OPEN otherwise: after the
        proposal deadline. PROPOSED: after the vote deadline. A round never
        opened (NONE) cannot be finalized either.
        """
        if status == RoundStatus.OPEN:
            if committee_weight < self.min_committee_size:
                return self.claim_deadline + 1
            return self.proposal_deadline + 1
        if status == RoundStatus.PROPOSED:
            return self.vote_deadline + 1
        return None

    def is_stuck(self, status: RoundStatus, committee_weight: int, block: int) -> bool:
        """``finalizeRound`` mined in ``block`` would end the round (it can no longer commit)."""
        first = self.finalizable_from(status, committee_weight)
        return first is not None and block >= first

    def boundaries(self, max_ranks: int = 8) -> list[int]:
        """Every block where something new becomes possible: each phase's first block and each proposer turn.

        For callers that fast-forward a chain (the in-process demo and tests):
        mining to the block before the next boundary skips only idle blocks.
        """
        marks = {self.submission_deadline + 1, self.claim_deadline + 1, self.proposal_deadline + 1,
                 self.vote_deadline + 1}
        ranks = range(self.first_rank, self.first_rank + min(max_ranks, self.turns_in_window()))
        marks.update(self.proposer_turn(rank) for rank in ranks)
        return sorted(marks)
