"""Audit a flare-chain coordinator: rebuild every round from chain logs alone and check it.

    target = load_target("deployment.json")
    report = run_audit(Web3(HTTPProvider(url)), target, ContentSource(ContentStore(repo)))
    print(render_text(report)); report.ok

Modules: ``deployment`` (which contract), ``fetch`` (logs in block ranges with
retries and progress, calldata, receipts, blocks), ``history`` (rounds rebuilt
from events and public state), ``content`` (verified, cached IPFS access),
``checks`` (chain-only checks), ``reproduce`` (CIDs, manifests, gates and
aggregation re-run), ``findings``, ``runner`` and ``report`` (text, JSON, HTML).
Importing this package does not import torch; reproducing aggregates does.
"""

from flare_chain.audit.content import ContentSource, ObjectState
from flare_chain.audit.deployment import AuditTarget, load_target
from flare_chain.audit.findings import CHECKS, FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.history import History, RoundHistory, build_history
from flare_chain.audit.runner import AuditReport, RoundSummary, run_audit

__all__ = [
    "CHECKS",
    "FAIL",
    "PASS",
    "UNVERIFIABLE",
    "AuditReport",
    "AuditTarget",
    "ContentSource",
    "Finding",
    "History",
    "ObjectState",
    "RoundHistory",
    "RoundSummary",
    "build_history",
    "load_target",
    "run_audit",
]
