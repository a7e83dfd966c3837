"""RoundSchedule on hand-made deadlines: phases, proposer turns and stuck rounds at their boundaries."""

from __future__ import annotations

import pytest

from flare_chain.chain.records import RoundStatus
from flare_chain.protocol import Phase, RoundSchedule

# submission ≤ 10, claims 11..16, proposals 17..24, votes ≤ 29; 3 blocks a proposer, 2 seats minimum.
SCHEDULE = RoundSchedule(submission_deadline=10, claim_deadline=16, proposal_deadline=24, vote_deadline=29,
                         leader_blocks=3, min_committee_size=2)


@pytest.mark.parametrize(("block", "phase"), [
    (1, Phase.SUBMISSION), (10, Phase.SUBMISSION), (11, Phase.CLAIM), (16, Phase.CLAIM),
    (17, Phase.PROPOSAL), (24, Phase.PROPOSAL), (25, Phase.VOTE), (29, Phase.VOTE), (30, Phase.CLOSED),
])
def test_phase_of_a_block_counts_deadlines_as_inclusive(block, phase):
    assert SCHEDULE.phase(block) is phase


def test_windows_open_and_close_on_their_deadlines():
    assert SCHEDULE.accepts_submission(10) and not SCHEDULE.accepts_submission(11)
    assert not SCHEDULE.accepts_claim(10) and SCHEDULE.accepts_claim(11)
    assert SCHEDULE.accepts_claim(16) and not SCHEDULE.accepts_claim(17)
    assert SCHEDULE.accepts_vote(29) and not SCHEDULE.accepts_vote(30)


def test_each_rank_waits_leader_blocks_after_the_one_before():
    assert [SCHEDULE.proposer_turn(rank) for rank in range(4)] == [17, 20, 23, 26]
    assert SCHEDULE.may_propose(0, 17) and not SCHEDULE.may_propose(1, 19) and SCHEDULE.may_propose(1, 20)
    # A turn lasts until the proposal deadline, and a rank whose turn starts after it never proposes.
    assert SCHEDULE.may_propose(0, 24) and not SCHEDULE.may_propose(0, 25)
    assert not any(SCHEDULE.may_propose(3, b) for b in range(1, 40))
    assert SCHEDULE.turns_in_window() == 3


def test_negative_rank_is_refused():
    with pytest.raises(ValueError, match="rank"):
        SCHEDULE.proposer_turn(-1)


@pytest.mark.parametrize(("status", "seats", "first"), [
    (RoundStatus.OPEN, 1, 17),  # too few seats: finalizable right after the claim deadline
    (RoundStatus.OPEN, 2, 25),  # a full committee that nobody proposed for: after the proposal deadline
    (RoundStatus.PROPOSED, 4, 30),  # no quorum by the vote deadline
    (RoundStatus.COMMITTED, 4, None),
    (RoundStatus.FAILED, 0, None),
    (RoundStatus.NONE, 0, None),
])
def test_a_round_is_stuck_from_the_block_finalize_would_succeed_in(status, seats, first):
    assert SCHEDULE.finalizable_from(status, seats) == first
    if first is not None:
        assert not SCHEDULE.is_stuck(status, seats, first - 1)
        assert SCHEDULE.is_stuck(status, seats, first)
    else:
        assert not SCHEDULE.is_stuck(status, seats, 10**9)


def test_boundaries_list_every_phase_start_and_turn_once_in_order():
    assert SCHEDULE.boundaries() == [11, 17, 20, 23, 25, 30]
