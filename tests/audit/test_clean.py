"""A clean history passes every check, and the auditor says what it checked."""

from __future__ import annotations

from flare_chain.audit import CHECKS, PASS


def test_clean_history_passes_every_check(fresh) -> None:
    fresh.fed.run_round()
    report = fresh.audit()
    assert report.ok, [f.line() for f in report.findings if f.status != PASS]
    assert [r.round_id for r in report.rounds] == [1, 2]
    assert {f.check for f in report.findings} == set(CHECKS)
    for r in report.rounds:
        assert r.status == "committed" and r.result == PASS
        assert len(r.accepted) == 4 and len(r.committee) == 4 and r.gas_used > 0
