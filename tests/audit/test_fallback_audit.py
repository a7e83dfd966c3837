"""The audit follows a round whose first proposal was rejected and whose fallback committed."""

from __future__ import annotations

import dataclasses

from flare_chain.audit import FAIL, PASS
from flare_chain.audit.checks import check_fallback, check_proposer, check_quorum, check_votes
from flare_chain.committee import sortition


def _round_with_a_fallback(fresh) -> int:
    """Round 2: every member votes the leader's proposal down, then approves rank 1's."""
    fed = fresh.fed
    round_id = fed.run_round(approvals=[0, len(fed.nodes)])
    info = fed.coordinator.round_info(round_id)
    assert (info.status.name, info.rejected_proposals) == ("COMMITTED", 1)
    return round_id


def test_a_committed_fallback_round_passes_every_check(fresh, failing_keys) -> None:
    round_id = _round_with_a_fallback(fresh)
    report = fresh.audit()
    assert failing_keys(report) == set()
    fallback = [f for f in report.findings if f.check == "fallback" and f.round == round_id]
    assert [(f.status, f.detail) for f in fallback] == [
        (PASS, "1 rejected proposal(s), each handed to the next rank with fresh windows")]
    proposers = [f for f in report.findings if f.check == "proposer" and f.round == round_id]
    assert [f.status for f in proposers] == [PASS, PASS]
    assert "proposal 2" in proposers[1].detail


def test_the_quorum_counts_only_the_votes_on_the_committed_proposal(fresh) -> None:
    round_id = _round_with_a_fallback(fresh)
    history = fresh.history()
    r = history.rounds[round_id]
    assert check_quorum(history, r).status == PASS
    # Were the rejected proposal's votes counted, every member would have voted twice and its "no"
    # votes would stand; moved past the rejection they read as second votes on the committed proposal.
    first = r.attempt_votes(0)
    r.votes[:] = [dataclasses.replace(v, block_number=r.rejections[0].block_number + 1) for v in first] + \
        r.attempt_votes(1)
    assert any("voted twice on proposal 2" in f.detail for f in check_votes(history, r) if f.status == FAIL)


def test_a_rejection_that_skips_a_rank_or_stretches_the_windows_fails(fresh) -> None:
    round_id = _round_with_a_fallback(fresh)
    history = fresh.history()
    r = history.rounds[round_id]
    honest = r.rejections[0]
    r.rejections[0] = dataclasses.replace(honest, next_rank=2)
    finding = check_fallback(history, r)
    assert finding.status == FAIL and "the rules give" in finding.detail
    r.rejections[0] = dataclasses.replace(honest, vote_deadline=honest.vote_deadline + 100)
    assert check_fallback(history, r).status == FAIL
    r.rejections[0] = honest
    assert check_fallback(history, r).status == PASS


def test_a_rejection_while_approval_was_still_reachable_fails(fresh) -> None:
    round_id = _round_with_a_fallback(fresh)
    history = fresh.history()
    r = history.rounds[round_id]
    r.votes[:] = r.attempt_votes(1)  # the first proposal "rejected" without a single vote against it
    finding = check_fallback(history, r)
    assert finding.status == FAIL and "was still reachable" in finding.detail


def test_a_second_proposal_by_the_rejected_rank_fails(fresh) -> None:
    round_id = _round_with_a_fallback(fresh)
    history = fresh.history()
    r = history.rounds[round_id]
    r.proposals[1] = dataclasses.replace(r.proposals[1], proposer=r.proposals[0].proposer, rank=0)
    findings = check_proposer(history, r)
    assert findings[0].status == PASS
    assert findings[1].status == FAIL and "only ranks 1..3 had a turn" in findings[1].detail


def test_a_fallback_past_the_last_proposer_rank_fails(fresh) -> None:
    # A contract that let the last rank's rejection hand the round to a rank no seat can hold: the rejection's
    # own fields follow the rules (next = rejected + 1, fresh windows), so only the rank bound catches it.
    round_id = _round_with_a_fallback(fresh)
    history = fresh.history()
    r = history.rounds[round_id]
    last = sortition.PROPOSER_RANKS - 1
    r.proposals[0] = dataclasses.replace(r.proposals[0], rank=last)
    r.rejections[0] = dataclasses.replace(r.rejections[0], rejected_rank=last, next_rank=last + 1)
    finding = check_fallback(history, r)
    assert finding.status == FAIL
    assert finding.detail == f"fell back to rank {last + 1}, past the last proposer rank {last}"
