"""The auditor judges an accepted set by the committee's tolerance-band rule, not bit for bit."""

from __future__ import annotations

import pytest

from flare_chain.aggregation import ClientUpdate, GateSettings
from flare_chain.aggregation.anomaly import NormAnomalyGate
from flare_chain.aggregation.gates import GateContext
from flare_chain.audit import FAIL, PASS

NORM_ONLY = dict(direction=False, mutual_information=False, probe_loss=False, min_candidates=3)


def _leader_leaving_out_the_largest_norm(edge: dict[str, float]):
    """A leader whose machine put the largest |norm z| over the threshold: it leaves that update out."""

    def propose(fed, round_id, previous, passing):
        from flare_chain.committee.aggregate import build_aggregate

        updates = [ClientUpdate(u.submission.node, u.delta, u.submission.sample_count) for u in passing]
        decisions = NormAnomalyGate(3.5, min_candidates=3).assess(updates, GateContext(previous.tensors))
        top = max(decisions, key=lambda d: d.comparisons[0].value)
        edge.update(node=top.node, z=top.comparisons[0].value)  # type: ignore[arg-type]
        kept = [u for u in passing if u.submission.node != top.node]
        result = build_aggregate(fed.store, round_id, previous, kept, fed.model_dir, fed.params,
                                 max_sample_count=fed.coordinator.max_sample_count())
        return result.cid, result.accepted

    return propose


@pytest.mark.parametrize("widths_above, verdict", [(0.5, PASS), (2.0, FAIL)])
def test_auditor_accepts_an_exclusion_only_within_the_band(fresh, widths_above: float, verdict: str) -> None:
    edge: dict = {}
    fresh.fed.run_round(proposer=_leader_leaving_out_the_largest_norm(edge))
    width = GateSettings().bands.norm_z.width(1.0)
    # The threshold lies just above the update's |z| on the auditor's machine: strictly, the update passes.
    settings = GateSettings(**NORM_ONLY, norm_threshold=edge["z"] + widths_above * width)

    report = fresh.audit(gates=settings)

    found = [f for f in report.findings if f.round == 2 and f.check == "accepted-set"]
    assert {f.status for f in found} == {verdict}
    if verdict == PASS:
        assert "within tolerance" in found[0].detail and edge["node"] in found[0].detail
        assert {f.status for f in report.findings if f.round == 2 and f.check == "aggregate-cid"} == {PASS}
    else:
        assert [(f.node, f.detail) for f in found] == [
            (edge["node"], f"excludes {edge['node']}, whose update passes the gates")]
