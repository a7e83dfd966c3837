"""The auditor reads NodeUnbonding and flags a seat held in a round after its holder left W."""

from __future__ import annotations

import dataclasses

from flare_chain.audit import FAIL, PASS
from flare_chain.audit.checks import check_seats


def test_an_unbond_after_a_round_leaves_that_rounds_seats_valid(fresh) -> None:
    leaving = fresh.fed.nodes[0]
    fresh.fed.coordinator.request_unbond(leaving)

    history = fresh.history()

    assert history.registrations[leaving.address].exit_round == 2  # out of W from round 2 on
    assert {f.status for f in check_seats(history, history.rounds[1])} == {PASS}


def test_a_seat_in_a_round_its_holder_had_left_is_named(fresh) -> None:
    history = fresh.history()
    r = history.rounds[1]
    seated = r.seats[0].node
    history.registrations[seated] = dataclasses.replace(history.registrations[seated], exit_round=1)

    bad = {f.node: f.detail for f in check_seats(history, r) if f.status == FAIL}

    assert set(bad) == {seated}
    assert "unbond" in bad[seated]
