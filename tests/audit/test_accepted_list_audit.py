"""The ``accepted-list`` check: a proposal's list lives in its aggregate's manifest, only its root on chain.

The contract keeps the root and count of the accepted list, not the list; the
auditor reads the list from the proposed bundle and must flag one that does not
hash to the root, has another length, names a node that never submitted, or
cannot be read at all (never a pass).
"""

from __future__ import annotations

import dataclasses

from eth_utils import keccak

from flare_chain.audit import FAIL, PASS, UNVERIFIABLE, ContentSource
from flare_chain.audit.reproduce import check_accepted_lists


def _round_1(fresh):
    history = fresh.history()
    r = history.rounds[1]
    assert r.committed and len(r.proposals) == 1
    return r


def test_the_committed_proposal_publishes_the_list_its_root_names(fresh) -> None:
    r = _round_1(fresh)
    [finding] = check_accepted_lists(ContentSource(fresh.fed.store), r)
    assert finding.status == PASS, finding
    accepted = r.proposals[0].accepted
    assert accepted is not None and len(accepted) == r.proposals[0].accepted_count == 4
    assert set(accepted) == {s.node for s in r.submissions}  # resolved in place, for reproduce and the summary


def test_a_root_that_is_not_the_published_list_fails(fresh) -> None:
    r = _round_1(fresh)
    r.proposals[0] = dataclasses.replace(r.proposals[0], accepted_root=keccak(text="another list"))
    [finding] = check_accepted_lists(ContentSource(fresh.fed.store), r)
    assert finding.status == FAIL and "not the list that was proposed" in finding.detail
    assert r.proposals[0].accepted is None  # left unresolved: reproduce then says it cannot judge


def test_a_count_that_is_not_the_list_length_fails(fresh) -> None:
    r = _round_1(fresh)
    r.proposals[0] = dataclasses.replace(r.proposals[0], accepted_count=3)
    [finding] = check_accepted_lists(ContentSource(fresh.fed.store), r)
    assert finding.status == FAIL and "names 4 node(s) but the proposal on chain says 3" in finding.detail


def test_a_listed_node_without_a_submission_fails(fresh) -> None:
    r = _round_1(fresh)
    dropped = r.submissions.pop(0)  # as if it had never submitted: the list still names it
    [finding] = check_accepted_lists(ContentSource(fresh.fed.store), r)
    assert finding.status == FAIL
    assert f"accepted list names {dropped.node}, which submitted nothing in round 1" in finding.detail


def test_a_proposed_bundle_nobody_can_fetch_is_unverifiable_not_a_pass(fresh, tmp_path) -> None:
    r = _round_1(fresh)
    empty = ContentSource(type(fresh.fed.store)(tmp_path / "empty-repo"))
    [finding] = check_accepted_lists(empty, r)
    assert finding.status == UNVERIFIABLE and "missing" in finding.detail
