"""Run an audit: read the chain, rebuild the history, run every check, summarise per round.

``run_audit`` is what ``flare-chain audit`` and the benchmark call. It times
each phase (logs, chain reads, chain checks, IPFS, reproduction) so slow
audits can be explained, and returns an ``AuditReport`` that the renderers in
``flare_chain.audit.report`` turn into a table, JSON or HTML.

Before reading a single log it binds the deployment file to the chain behind
the RPC endpoint (``chain.deployment.verify_binding``: the deployment
transaction, its block hash, the code hash): a twin chain with the same id and
address is refused with one IntegrityError naming the mismatch, and a block
range that starts past the chain head is refused too. A run that checked no
round is never a pass: its ``rounds`` finding is unverifiable.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from web3 import Web3

from flare_chain.audit.checks import chain_checks, cid_text, required_approvals, seat_weights
from flare_chain.audit.content import ContentSource
from flare_chain.audit.deployment import AuditTarget
from flare_chain.audit.fetch import DEFAULT_CHUNK_BLOCKS, ChainReader
from flare_chain.audit.findings import FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.history import History, RoundHistory, build_history
from flare_chain.audit.reproduce import (
    ModelLocator,
    RoundContent,
    check_accepted_lists,
    content_checks,
    reproduce_round,
)
from flare_chain.audit.spec import load_spec
from flare_chain.chain.artifacts import ContractArtifact, load_artifact
from flare_chain.chain.deployment import code_hash, verify_binding
from flare_chain.errors import ConfigError, IntegrityError
from flare_chain.progress import progress

if TYPE_CHECKING:  # torch-heavy; the audit imports them only to re-run gates
    from flare_chain.aggregation.pipeline import GateSettings
    from flare_chain.aggregation.privacy import PrivacyAccountant
    from flare_chain.protocol.spec import FederationSpec

__all__ = ["AuditReport", "RoundSummary", "check_deployment", "run_audit"]

log = logging.getLogger("flare_chain.audit")


@dataclass(frozen=True)
class RoundSummary:
    """One round at a glance, with the figures the reports plot."""

    round_id: int
    status: str
    result: str
    submitters: list[str]
    accepted: list[str]
    committee: list[str]
    approvals: int
    needed: int
    gas_used: int
    loss_before: float | None
    loss_after: float | None
    global_cid: str | None
    epsilon: dict[str, float] = field(default_factory=dict)
    """Under local DP: each submitter's ε (at the spec's δ) spent over its submissions up to this round."""


@dataclass
class AuditReport:
    """Everything an audit found; ``exit_status`` is 0 only when every check passed."""

    chain_id: int
    address: str
    from_block: int
    to_block: int
    rounds: list[RoundSummary]
    findings: list[Finding]
    timings_s: dict[str, float] = field(default_factory=dict)
    spec_cid: str | None = None
    """The federation spec the rounds were re-checked under (None: the coordinator names none)."""
    spec: dict[str, Any] | None = None
    """That spec's document, for the reports."""

    @property
    def failures(self) -> list[Finding]:
        return [f for f in self.findings if f.status == FAIL]

    @property
    def unverifiable(self) -> list[Finding]:
        return [f for f in self.findings if f.status == UNVERIFIABLE]

    @property
    def ok(self) -> bool:
        """Every check passed, and there was at least one: checking nothing is not a pass."""
        return bool(self.findings) and self.from_block <= self.to_block and not self.failures and (
            not self.unverifiable)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chain_id": self.chain_id,
            "address": self.address,
            "blocks": [self.from_block, self.to_block],
            "ok": self.ok,
            "counts": {s: sum(1 for f in self.findings if f.status == s) for s in (PASS, FAIL, UNVERIFIABLE)},
            "rounds": [asdict(r) for r in self.rounds],
            "findings": [f.to_dict() for f in self.findings],
            "timings_s": self.timings_s,
            "federation_spec": {"cid": self.spec_cid, "spec": self.spec},
        }


class _Clock:
    def __init__(self) -> None:
        self.totals: dict[str, float] = {}

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        began = time.perf_counter()
        try:
            yield
        finally:
            self.totals[name] = self.totals.get(name, 0.0) + time.perf_counter() - began


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(history: History, r: RoundHistory, findings: list[Finding], content: RoundContent) -> RoundSummary:
    statuses = {f.status for f in findings}
    result = FAIL if FAIL in statuses else UNVERIFIABLE if UNVERIFIABLE in statuses else PASS
    seats = sorted({s.node for s in r.seats}, key=str.lower)
    weights = seat_weights(history, r)
    metrics = [m.get("metrics", {}) for m in content.manifests.values()]
    return RoundSummary(
        round_id=r.round_id,
        status=r.status,
        result=result,
        submitters=sorted((s.node for s in r.submissions), key=str.lower),
        accepted=sorted(r.proposal.accepted or (), key=str.lower) if r.proposal and r.committed else [],
        committee=seats,
        approvals=sum(weights.get(v.voter, 0) for v in r.votes if v.approve),
        needed=required_approvals(history.params.approval_threshold_bps, sum(weights.values())),
        gas_used=r.gas_used,
        loss_before=_mean([float(m["val_loss_before"]) for m in metrics if "val_loss_before" in m]),
        loss_after=_mean([float(m["val_loss_after"]) for m in metrics if "val_loss_after" in m]),
        global_cid=cid_text(r.outcome.global_cid) if r.committed and r.outcome else None,
    )


class _PrivacyLedger:
    """ε per node under the spec's local DP: one Gaussian release per submission, composed by the accountant."""

    def __init__(self, spec: FederationSpec | None) -> None:
        self._accountant: PrivacyAccountant | None = None
        if spec is not None and spec.privacy.enabled:
            self._accountant = spec.privacy.accountant()

    def after(self, history: History, round_id: int) -> dict[str, float]:
        """Each node that submitted in ``round_id``: ε over all its submissions up to and including it."""
        if self._accountant is None:
            return {}
        counts: dict[str, int] = {}
        for rid in sorted(history.rounds):
            if rid > round_id:
                break
            for sub in history.rounds[rid].submissions:
                counts[sub.node] = counts.get(sub.node, 0) + 1
        submitters = {s.node for s in history.rounds[round_id].submissions}
        return {node: self._accountant.epsilon_after(counts[node]) for node in sorted(submitters, key=str.lower)}


def check_deployment(w3: Web3, target: AuditTarget, head: int) -> Finding:
    """Bind ``target`` to the chain behind ``w3``: IntegrityError on a mismatch, else the ``deployment`` finding.

    The finding passes when the file's deployment transaction and block hash
    are on this chain; it is unverifiable when the file records too little to
    tell this chain from a twin (same id, same address, other history).
    """
    name, source = "deployment", "the deployment file"
    if target.block > head:
        raise IntegrityError(f"{source} says the contract was deployed in block {target.block}, but the chain "
                             f"behind the RPC endpoint ends at block {head}: it is another chain with the same id "
                             "(e.g. a restarted or twin dev chain); point --rpc at the chain the contract was "
                             "deployed on")
    if target.deployment_tx is not None:
        found = verify_binding(w3, target.address, target.deployment_tx, target.block,
                               deployment_block_hash=target.block_hash, code_hash=target.code_hash, source=source)
        if target.block_hash is None:
            return Finding(name, UNVERIFIABLE, detail=(
                f"{source} records no hash for block {target.block}, so a twin chain whose deployment transaction "
                "is the same cannot be told apart; add \"deployment_block_hash\" from a source you trust, or "
                "redeploy with this release, which records it"))
        return Finding(name, PASS, detail=(f"transaction {found.deployment_tx} created {target.address} in block "
                                           f"{found.deployment_block} (hash {found.deployment_block_hash})"))
    code = bytes(w3.eth.get_code(Web3.to_checksum_address(target.address)))
    if not code:
        raise IntegrityError(f"{source} names {target.address}, but there is no contract there on this chain; "
                             "point --rpc at the chain the contract was deployed on")
    if target.code_hash is not None and code_hash(code) != target.code_hash:
        raise IntegrityError(f"the code at {target.address} hashes to {code_hash(code)}, {source} records "
                             f"{target.code_hash}: another contract")
    return Finding(name, UNVERIFIABLE, detail=(
        f"{source} names no deployment transaction and block hash, so this chain cannot be told from a twin with "
        "the same id and address; add \"deployment_tx\" and \"block_hash\", or audit with the file "
        "`flare-chain deploy` wrote"))


def run_audit(
    w3: Web3,
    target: AuditTarget,
    source: ContentSource,
    *,
    rounds: range | None = None,
    model_dir: Path | None = None,
    model_search: list[Path] | None = None,
    artifact: ContractArtifact | None = None,
    chunk_blocks: int = DEFAULT_CHUNK_BLOCKS,
    show_progress: bool = True,
    reproduce: bool = True,
    device: str = "cpu",
    gates: GateSettings | None = None,
) -> AuditReport:
    """Audit the coordinator ``target`` from its deployment block to the chain head.

    ``rounds`` limits which rounds are checked (registrations are always read
    in full). ``reproduce=False`` skips re-running gates and aggregation (the
    two checks then read ``unverifiable``). ``device`` is where the gates' model runs go; rounds are re-run
    under the federation spec the coordinator names; ``gates`` (None: the spec's) replaces its gate settings,
    to ask what other settings would have decided.
    """
    clock = _Clock()
    reader = ChainReader(w3, target.address, (artifact or load_artifact("FlareCoordinator")).abi,
                         chunk_blocks=chunk_blocks, show_progress=show_progress)
    with clock.phase("logs"):
        chain_id = reader.chain_id()
        if chain_id != target.chain_id:
            raise ConfigError(f"the RPC endpoint serves chain {chain_id}, the deployment file says {target.chain_id}; "
                              "point --rpc at the right chain")
        head = reader.head()
        bound = check_deployment(w3, target, head)
        events = reader.events(target.block, head)
    with clock.phase("chain reads"):
        history = build_history(reader, events, chain_id=chain_id, from_block=target.block, to_block=head,
                                rounds=rounds)
    log.info("audit: %d event(s), %d round(s), %d registered node(s) in blocks %d..%d", len(events),
             len(history.rounds), len(history.registrations), target.block, head)
    models = ModelLocator(model_dir, model_search, source=source)
    abi = (artifact or load_artifact("FlareCoordinator")).abi
    with clock.phase("ipfs"):
        spec_finding, spec, spec_cid = load_spec(w3, target.address, abi, source, head)
    findings: list[Finding] = [bound, spec_finding]
    summaries: list[RoundSummary] = []
    ids = history.round_ids()
    previous: bytes | None = history.initial_cid
    for rid in sorted(history.rounds):  # the adapter left by the rounds before the audited range
        if ids and rid >= ids[0]:
            break
        before = history.rounds[rid]
        if before.committed and before.outcome is not None:
            previous = before.outcome.global_cid
    spent = _PrivacyLedger(spec)
    with progress("audit: checking rounds", len(ids), unit="round", logger=log, enabled=show_progress) as bar:
        for rid in ids:
            r = history.rounds[rid]
            with clock.phase("chain checks"):
                round_findings = chain_checks(history, r, previous)
            start = previous if previous is not None else (r.opened.global_cid if r.opened else None)
            with clock.phase("ipfs"):
                more, content = content_checks(source, r)
                more += check_accepted_lists(source, r)  # resolves each proposal's list for what follows
            round_findings += more
            with clock.phase("reproduce"):
                if reproduce and spec is not None:
                    rules = spec if gates is None else spec.model_copy(update={"gates": gates})
                    round_findings += reproduce_round(source, r, start, content, models, rules,
                                                      history.params.max_sample_count, history.claim_seed(r),
                                                      device=device)
                elif reproduce:
                    round_findings += [Finding(c, UNVERIFIABLE, rid, detail="the federation spec is unavailable")
                                       for c in ("accepted-set", "aggregate-cid")]
                else:
                    round_findings += [Finding(c, UNVERIFIABLE, rid, detail="reproduction skipped")
                                       for c in ("accepted-set", "aggregate-cid")]
            findings += round_findings
            summaries.append(replace(_summary(history, r, round_findings, content), epsilon=spent.after(history, rid)))
            if r.committed and r.outcome is not None:
                previous = r.outcome.global_cid
            elif previous is None and r.opened is not None:
                previous = r.opened.global_cid
            bad = sum(1 for f in round_findings if f.status == FAIL)
            bar.update(1, findings=bad)
    findings.append(Finding("rounds", PASS, detail=f"{len(ids)} round(s) checked in blocks {target.block}..{head}")
                    if ids else Finding("rounds", UNVERIFIABLE, detail=(
                        f"no round{' in the --rounds range' if rounds is not None else ''} in blocks "
                        f"{target.block}..{head}: nothing was checked, which is not a pass")))
    return AuditReport(chain_id=chain_id, address=target.address, from_block=target.block, to_block=head,
                       rounds=summaries, findings=findings, timings_s=clock.totals, spec_cid=spec_cid,
                       spec=spec.document() if spec is not None else None)
