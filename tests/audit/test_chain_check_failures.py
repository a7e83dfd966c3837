"""Every chain-only audit check flags a history doctored the way a broken contract would allow.

The auditor is the backstop for the contract: if a coordinator let a seat in
outside its window, counted a late vote or committed one approval short, the
audit must say so. Each test takes round 1 of the shared simulated history
(four seats of Poisson(5) weight, 6666 bps of the weight commits), confirms the check passes on
it, changes the one record the check exists to judge, and asserts the check
now fails naming that record.
"""

from __future__ import annotations

import dataclasses

import pytest

from flare_chain.audit import FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.checks import (
    check_global_chain,
    check_proposer,
    check_quorum,
    check_seats,
    check_seed,
    check_votes,
    required_approvals,
    seat_weights,
)
from flare_chain.audit.history import History, RoundHistory
from flare_chain.committee import sortition
from flare_chain.ipfs.multiformats import cid_from_bytes


@pytest.fixture
def history(fresh) -> History:
    return fresh.history()


@pytest.fixture
def r(history: History) -> RoundHistory:
    round_1 = history.rounds[1]
    assert round_1.committed and len(round_1.seats) == 4
    assert {f.status for f in [*check_seats(history, round_1), *check_votes(history, round_1),
                               check_quorum(history, round_1), *check_proposer(history, round_1)]} == {PASS}
    return round_1


def _only(findings: list[Finding]) -> Finding:
    """The one finding of a check that judges a round with one proposal."""
    [finding] = findings
    return finding


def _seat_failures(history: History, r: RoundHistory) -> dict[str | None, str]:
    return {f.node: f.detail for f in check_seats(history, r) if f.status == FAIL}


# ---------------------------------------------------------------- seats


def test_a_seat_whose_output_draws_weight_zero_for_its_stake_fails(history, r) -> None:
    # Prepare: the seat holder's stake shrinks to 1 wei; its proof still verifies, the draw no longer wins
    node = r.seats[0].node
    history.registrations[node] = dataclasses.replace(history.registrations[node], stake=1)
    # Execute
    failures = _seat_failures(history, r)
    # Assert
    assert list(failures) == [node]
    assert "draws weight 0" in failures[node] and "stake 1 of" in failures[node]


def test_seats_drawn_against_a_far_larger_total_stake_draw_no_weight(history, r) -> None:
    # k = 1 and W = 2^95 (the contract keeps stakes under 2^96): a 1-ether stake wins about 2^-35 of the
    # output space, so none of the real outputs is in it
    r.opened = dataclasses.replace(r.opened, expected_committee_size=1, total_stake=2**95)
    failures = _seat_failures(history, r)
    assert sorted(failures) == sorted(s.node for s in r.seats)
    assert all("draws weight 0" in d and "k=1" in d for d in failures.values())


def test_a_seat_event_stating_another_weight_or_score_fails(history, r) -> None:
    first, second = r.seats[0], r.seats[1]
    r.seats[0] = dataclasses.replace(first, weight=first.weight + 1)
    r.seats[1] = dataclasses.replace(second, leader_score=second.leader_score ^ 1)
    failures = _seat_failures(history, r)
    assert failures[first.node] == f"SeatClaimed states weight {first.weight + 1}; the output draws {first.weight}"
    assert failures[second.node].startswith(f"SeatClaimed states leader score {second.leader_score ^ 1:#x}")


@pytest.mark.parametrize(("deadline", "offset", "in_window"), [
    ("submission_deadline", 0, False), ("submission_deadline", 1, True), ("claim_deadline", 0, True),
    ("claim_deadline", 1, False),
])
def test_a_seat_claimed_outside_the_claim_window_fails(history, r, deadline: str, offset: int,
                                                       in_window: bool) -> None:
    block = getattr(r.opened, deadline) + offset
    node = r.seats[1].node
    r.seats[1] = dataclasses.replace(r.seats[1], block_number=block)
    failures = _seat_failures(history, r)
    if in_window:
        assert failures == {}
    else:
        assert list(failures) == [node] and f"claimed in block {block}, outside the claim window" in failures[node]
        # and only failed: a late seat passed as well would read as a valid seat in the report
        assert [f.status for f in check_seats(history, r) if f.node == node] == [FAIL]


def test_a_seat_of_a_node_registered_for_later_rounds_fails(history, r) -> None:
    node = r.seats[2].node
    history.registrations[node] = dataclasses.replace(history.registrations[node], first_eligible_round=2)
    assert _seat_failures(history, r) == {node: "registered for rounds from 2 on"}


def test_a_failing_seat_gets_one_finding_and_the_others_still_pass(history, r) -> None:
    # The checks stop at a seat's first failure: no PASS for the same seat after its FAIL
    late, unread = r.seats[2].node, r.seats[3].node
    history.registrations[late] = dataclasses.replace(history.registrations[late], first_eligible_round=2)
    r.proofs[unread] = dataclasses.replace(r.proofs[unread], proof_words=None)
    findings = [(f.node, f.status) for f in check_seats(history, r)]
    assert sorted(findings) == sorted([(r.seats[0].node, PASS), (r.seats[1].node, PASS), (late, FAIL),
                                       (unread, FAIL)])


@pytest.mark.parametrize("read", [True, False])
def test_a_seat_whose_transaction_is_not_a_claim_seat_call_fails(history, r, read: bool) -> None:
    node = r.seats[0].node
    if read:  # the transaction was read, and it called something else
        r.proofs[node] = dataclasses.replace(r.proofs[node], function="vote", proof_words=None)
    else:
        del r.proofs[node]
    failures = _seat_failures(history, r)
    assert list(failures) == [node]
    assert failures[node] == (f"seat transaction {r.seats[0].tx_hash} is not a claimSeat call"
                              f" ({'vote' if read else 'not read'})")


def test_a_seat_of_an_unregistered_node_and_a_second_seat_fail(history, r) -> None:
    del history.registrations[r.seats[0].node]
    r.seats.append(r.seats[1])
    failures = [(f.node, f.detail) for f in check_seats(history, r) if f.status == FAIL]
    assert failures == [(r.seats[0].node, "holds a seat but never registered"),
                        (r.seats[1].node, "claimed a second seat in the same round")]


def test_a_seat_whose_claim_was_sent_by_another_account_fails(history, r) -> None:
    node, other = r.seats[0].node, r.seats[1].node
    r.proofs[node] = dataclasses.replace(r.proofs[node], sender=other)
    failures = _seat_failures(history, r)
    assert list(failures) == [node] and f"was sent by {other}" in failures[node]
    # the proof it carries is the node's own and verifies: the seat must not be passed as well as failed
    assert [f.status for f in check_seats(history, r) if f.node == node] == [FAIL]


# ---------------------------------------------------------------- votes


@pytest.mark.parametrize(("after_deadline", "late"), [(0, False), (1, True)])
def test_a_vote_after_the_vote_deadline_fails(history, r, after_deadline: int, late: bool) -> None:
    block = r.opened.vote_deadline + after_deadline
    voter = r.votes[0].voter
    r.votes[0] = dataclasses.replace(r.votes[0], block_number=block)
    failures = [(f.node, f.detail) for f in check_votes(history, r) if f.status == FAIL]
    if late:
        assert failures == [(voter, f"voted in block {block}, after the deadline {r.opened.vote_deadline}")]
    else:
        assert failures == []


def test_a_second_vote_from_one_member_fails(history, r) -> None:
    r.votes.append(r.votes[0])
    failures = [(f.node, f.detail) for f in check_votes(history, r) if f.status == FAIL]
    assert len(failures) == 1 and failures[0][0] == r.votes[0].voter and "voted twice" in failures[0][1]


# ---------------------------------------------------------------- quorum


def _approvals(r: RoundHistory) -> list[int]:
    return [i for i, v in enumerate(r.votes) if v.approve]


def _tally(history: History, r: RoundHistory) -> tuple[int, int, int]:
    """(approval weight, committee weight, weight needed) as the auditor recomputes them."""
    weights = seat_weights(history, r)
    total = sum(weights.values())
    approvals = sum(weights[r.votes[i].voter] for i in _approvals(r))
    return approvals, total, required_approvals(history.params.approval_threshold_bps, total)


def test_the_simulated_round_committed_with_exactly_the_required_weight(history, r) -> None:
    approvals, total, needed = _tally(history, r)
    last_weight = seat_weights(history, r)[r.votes[_approvals(r)[-1]].voter]
    assert approvals >= needed > approvals - last_weight  # the last approval is the one that committed
    assert (r.outcome.approval_weight, r.outcome.committee_weight) == (approvals, total)
    assert check_quorum(history, r).detail == f"weight {approvals} of {total} approved (needed {needed})"


def test_a_commit_one_approval_short_fails_the_quorum(history, r) -> None:
    # Prepare: the approval that reached the threshold turned into a rejection, the event agreeing
    approvals, total, needed = _tally(history, r)
    last = _approvals(r)[-1]
    short = approvals - seat_weights(history, r)[r.votes[last].voter]
    r.votes[last] = dataclasses.replace(r.votes[last], approve=False)
    r.outcome = dataclasses.replace(r.outcome, approval_weight=short)
    # Execute
    finding = check_quorum(history, r)
    # Assert
    assert finding.status == FAIL
    assert finding.detail == (f"committed with approval weight {short} of {total}; the threshold 6666 bps "
                              f"needs {needed}")


def test_an_approval_cast_after_the_commit_does_not_count_towards_it(history, r) -> None:
    last = _approvals(r)[-1]
    r.votes[last] = dataclasses.replace(r.votes[last], block_number=r.outcome.block_number + 1)
    finding = check_quorum(history, r)
    assert finding.status == FAIL and "committed with approval weight" in finding.detail


def test_an_approval_from_a_member_without_a_seat_does_not_count(history, r) -> None:
    last = _approvals(r)[-1]
    r.votes[last] = dataclasses.replace(r.votes[last], voter="0x" + "ee" * 20)
    finding = check_quorum(history, r)
    assert finding.status == FAIL and "committed with approval weight" in finding.detail


def test_a_commit_below_the_minimum_committee_fails_the_quorum(history, r) -> None:
    _, total, _ = _tally(history, r)
    history.params = dataclasses.replace(history.params, min_committee_size=total + 1)
    finding = check_quorum(history, r)
    assert finding.status == FAIL
    assert finding.detail == (f"committed with a committee of weight {total}, less than the minimum committee "
                              f"{total + 1}")


def test_a_commit_at_exactly_the_minimum_committee_passes(history, r) -> None:
    _, total, _ = _tally(history, r)
    history.params = dataclasses.replace(history.params, min_committee_size=total)
    assert check_quorum(history, r).status == PASS


def test_a_commit_with_approval_weight_exactly_the_threshold_passes(history, r) -> None:
    # The contract commits at a·10000 >= bps·K: an auditor that demanded one more unit of weight would
    # raise a false alarm on every round that commits with no weight to spare. Choose the threshold
    # the round's approvals meet exactly (K < 10000, so the floor leaves needed == approvals).
    approvals, total, _ = _tally(history, r)
    history.params = dataclasses.replace(history.params, approval_threshold_bps=approvals * 10_000 // total)
    needed = required_approvals(history.params.approval_threshold_bps, total)
    assert needed == approvals
    finding = check_quorum(history, r)
    assert finding.status == PASS
    assert finding.detail == f"weight {approvals} of {total} approved (needed {needed})"


def test_a_seat_claimed_after_the_commit_is_not_counted(history, r) -> None:
    # A heavy fifth seat after the commit: had it counted, the approvals would fall short
    late = dataclasses.replace(r.seats[0], node="0x" + "ee" * 20, block_number=r.outcome.block_number + 1)
    r.seats.append(late)
    history.registrations[late.node] = dataclasses.replace(history.registrations[r.seats[0].node],
                                                           node=late.node, stake=10**30)
    assert check_quorum(history, r).status == PASS


def test_an_approval_in_the_commit_block_counts_towards_it(history, r) -> None:
    last = _approvals(r)[-1]
    r.votes[last] = dataclasses.replace(r.votes[last], block_number=r.outcome.block_number)
    approvals, total, needed = _tally(history, r)
    assert check_quorum(history, r).detail == f"weight {approvals} of {total} approved (needed {needed})"


def test_a_commit_event_misreporting_its_weight_fails_the_quorum(history, r) -> None:
    approvals, total, _ = _tally(history, r)
    r.outcome = dataclasses.replace(r.outcome, approval_weight=total + 1)
    finding = check_quorum(history, r)
    assert finding.status == FAIL
    assert finding.detail == (f"RoundCommitted reports {total + 1}/{total}, the seats' outputs and the votes give "
                              f"{approvals}/{total}")


# ---------------------------------------------------------------- proposer


def test_a_proposal_whose_rank_is_not_the_one_the_outputs_give_fails(history, r) -> None:
    r.proposals[0] = dataclasses.replace(r.proposals[0], rank=r.proposals[0].rank + 1)
    [finding] = check_proposer(history, r)
    assert finding.status == FAIL and finding.detail == f"event says rank {r.proposals[0].rank}, outputs give 0"


def test_a_proposal_by_a_later_rank_before_its_turn_fails(history, r) -> None:
    # Prepare: the proposer's output swapped with the last-ranked member's (equal stakes, so the weights
    # swap with them), so the outputs rank it last (3), and the event agrees
    def scores() -> dict[str, int]:
        weights = seat_weights(history, r)
        return {s.node: sortition.leader_score(s.output, weights[s.node]) for s in r.seats}

    last = sortition.leader_order(scores())[-1]
    mine = next(i for i, s in enumerate(r.seats) if s.node == r.proposal.proposer)
    theirs = next(i for i, s in enumerate(r.seats) if s.node == last)
    r.seats[mine], r.seats[theirs] = (dataclasses.replace(r.seats[mine], output=r.seats[theirs].output),
                                      dataclasses.replace(r.seats[theirs], output=r.seats[mine].output))
    assert sortition.rank_of(scores(), r.proposal.proposer) == 3
    r.proposals[0] = dataclasses.replace(r.proposals[0], rank=3)
    # Execute
    [finding] = check_proposer(history, r)
    # Assert: rank 3's turn starts 3·leader_blocks after the leader's, and the proposal came before it
    turn = history.schedule(r.opened).proposer_turn(3)
    assert r.proposal.block_number < turn
    assert finding.status == FAIL and f"its turn is blocks {turn}.." in finding.detail


@pytest.mark.parametrize(("offset", "ok"), [(0, True), (1, False)])
def test_a_proposal_after_the_proposal_deadline_fails(history, r, offset: int, ok: bool) -> None:
    r.proposals[0] = dataclasses.replace(r.proposals[0], block_number=r.opened.proposal_deadline + offset)
    assert (_only(check_proposer(history, r)).status == PASS) is ok


def test_a_seat_claimed_in_the_proposal_block_makes_its_holder_a_proposer(history, r) -> None:
    mine = next(i for i, s in enumerate(r.seats) if s.node == r.proposal.proposer)
    r.seats[mine] = dataclasses.replace(r.seats[mine], block_number=r.proposal.block_number)
    assert _only(check_proposer(history, r)).detail != "proposed without a seat"
    r.seats[mine] = dataclasses.replace(r.seats[mine], block_number=r.proposal.block_number + 1)
    assert _only(check_proposer(history, r)).detail == "proposed without a seat"


def test_a_proposal_without_a_seat_and_a_second_proposal_fail(history, r) -> None:
    r.proposals.append(r.proposals[0])
    assert _only(check_proposer(history, r)).detail == "2 proposals but 0 rejection(s) in one round"
    r.proposals[:] = [dataclasses.replace(r.proposals[0], proposer="0x" + "ee" * 20)]
    assert _only(check_proposer(history, r)).detail == "proposed without a seat"


# ---------------------------------------------------------------- adapter chain


def test_a_round_opened_on_another_adapter_than_the_last_committed_fails(history, r) -> None:
    assert check_global_chain(history, r, r.opened.global_cid).status == PASS
    other = b"\x01\x55\x12\x20" + b"\x00" * 32
    finding = check_global_chain(history, r, other)
    # the finding names both adapters as CIDs an operator can fetch, not as "<none>" or raw bytes
    assert finding.status == FAIL
    assert finding.detail == (f"opened on {cid_from_bytes(r.opened.global_cid)} but the last committed adapter "
                              f"is {cid_from_bytes(other)}")
    assert cid_from_bytes(other).startswith("bafkrei")


def test_a_round_whose_total_stake_is_below_a_seats_stake_fails_the_seats_without_stopping_the_audit(
        history, r) -> None:
    # A coordinator that miscounted W (here 1 wei) makes the threshold formula meaningless; the seats must be
    # named, not the auditor stopped by the formula's own range check.
    r.opened = dataclasses.replace(r.opened, total_stake=1)
    failures = _seat_failures(history, r)
    assert sorted(failures) == sorted(s.node for s in r.seats)
    assert all("total stake 1" in d and "k=" in d for d in failures.values())


# ---------------------------------------------------------------- seed chain


def test_a_seed_whose_previous_round_is_outside_the_audited_range_is_unverifiable(history, r) -> None:
    # Round 2 audited without round 1 (a range starting after it), then with round 1 but no RoundOpened read
    round_2 = dataclasses.replace(r, round_id=2)
    del history.rounds[1]
    finding = check_seed(history, round_2)
    assert (finding.status, finding.detail) == (UNVERIFIABLE, "round 1's seed is outside the audited range")
    history.rounds[1] = dataclasses.replace(r, opened=None)
    assert check_seed(history, round_2).status == UNVERIFIABLE


def test_a_seed_chained_from_the_previous_round_is_checked_against_that_seed(history, r) -> None:
    # Round 2 opened in round 1's block with round 1's own seed: keccak(seed_1, prevrandao) != seed_1
    round_2 = dataclasses.replace(r, round_id=2)
    finding = check_seed(history, round_2)
    assert finding.status == FAIL and f"keccak256(seed_1 0x{r.opened.seed.hex()}" in finding.detail


def test_a_round_whose_previous_adapter_is_outside_the_audited_range_is_unverifiable_not_failed(history, r) -> None:
    # A range starting after the last commit knows no previous adapter; a round without its RoundOpened read has
    # no adapter to compare. Neither is a broken chain: each is unverifiable, and neither stops the audit.
    finding = check_global_chain(history, r, None)
    assert (finding.status, finding.detail) == (UNVERIFIABLE,
                                                "the previous global adapter is outside the audited range")
    previous = r.opened.global_cid
    r.opened = None
    assert check_global_chain(history, r, previous).status == UNVERIFIABLE
