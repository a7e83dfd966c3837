"""The audit's terminal summary names the rules the rounds were held to before its verdict."""

from __future__ import annotations

from flare_chain.audit.findings import FAIL, PASS, Finding
from flare_chain.audit.report import render_text
from flare_chain.audit.runner import AuditReport


def _report(spec_finding: Finding) -> AuditReport:
    return AuditReport(chain_id=31337, address="0x" + "ab" * 20, from_block=0, to_block=9, rounds=[],
                       findings=[spec_finding])


def test_the_summary_opens_with_the_spec_and_its_aggregator_parameters() -> None:
    detail = "spec bafkspec (devnet: median): aggregator trimmed_mean (trim_fraction 0.25), codec v1, vote tolerance 0.005"
    text = render_text(_report(Finding("federation-spec", PASS, detail=detail)))
    first = text.splitlines()[0]
    assert first == "federation " + detail
    assert text.count("trim_fraction 0.25") == 1


def test_a_failed_spec_is_listed_once_with_the_failures_not_as_the_rules() -> None:
    text = render_text(_report(Finding("federation-spec", FAIL, detail="spec bafkspec leaves out gates.x")))
    assert not text.startswith("federation spec") and text.count("leaves out gates.x") == 1
    assert "NOT a pass" in text
