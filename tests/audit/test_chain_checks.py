"""Chain-only checks on a real history whose records are then doctored, as a broken contract would allow."""

from __future__ import annotations

import dataclasses

from flare_chain.audit import FAIL, PASS, UNVERIFIABLE
from flare_chain.audit.checks import check_proposer, check_seats, check_seed, check_votes, required_approvals


def test_doctored_seeds_seats_votes_and_turns_are_each_named(fresh) -> None:
    history = fresh.history()
    r = history.rounds[1]
    assert {f.status for f in [check_seed(history, r), *check_seats(history, r), *check_votes(history, r),
                               *check_proposer(history, r)]} == {PASS}

    # a seed not derived from the opening block's prevrandao
    history.prevrandao[r.opened.block_number] = b"\x11" * 32
    assert check_seed(history, r).status == FAIL

    # a seat whose event output is not what its proof gives, and one under another node's key
    forged, stolen = r.seats[0], r.seats[1]
    r.seats[0] = dataclasses.replace(forged, output=b"\x00" * 31 + b"\x01")
    history.registrations[stolen.node] = dataclasses.replace(
        history.registrations[stolen.node], public_key=history.registrations[r.seats[2].node].public_key)
    bad = {f.node: f.detail for f in check_seats(history, r) if f.status == FAIL}
    assert set(bad) == {forged.node, stolen.node}
    assert "SeatClaimed says" in bad[forged.node] and "does not verify" in bad[stolen.node]

    # a vote from outside the committee, and a proposer out of its turn
    outsider = fresh.fed.owner.address
    r.votes.append(dataclasses.replace(r.votes[0], voter=outsider))
    assert [(f.node, f.status) for f in check_votes(history, r) if f.status == FAIL] == [(outsider, FAIL)]
    r.proposals[0] = dataclasses.replace(r.proposals[0], block_number=r.opened.claim_deadline)
    assert [f.status for f in check_proposer(history, r)] == [FAIL]


def test_required_approvals_follows_the_contract_rule() -> None:
    assert required_approvals(6666, 3) == 2
    assert required_approvals(6666, 6) == 4
    assert required_approvals(6667, 4) == 3
    assert required_approvals(10_000, 5) == 5


def test_seats_are_checked_on_the_claim_seed_from_the_deadline_block_hash(fresh) -> None:
    history = fresh.history()
    r = history.rounds[1]
    deadline = r.opened.submission_deadline
    assert "claim seed" in check_seed(history, r).detail
    assert {f.status for f in check_seats(history, r)} == {PASS}

    # another hash for the submission deadline block: every seat's proof is on another input
    history.block_hashes[deadline] = b"\x22" * 32
    assert {f.status for f in check_seats(history, r)} == {FAIL}

    # the block not read: nothing to check the proofs on, which is no pass
    del history.block_hashes[deadline]
    assert {f.status for f in check_seats(history, r)} == {UNVERIFIABLE}
