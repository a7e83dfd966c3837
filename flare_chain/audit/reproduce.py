"""Checks that need the bytes: CIDs, manifests, and re-running the committee's gates and aggregation.

The auditor calls the very functions a committee member runs
(``committee.aggregate.review_accepted_set`` and ``build_aggregate``, with
their default gate settings) on the submissions the chain lists, over a
local, verified copy of the objects: the accepted set is judged by the same
tolerance-band rule (:mod:`flare_chain.committee.verdict`), so a statistic
at its threshold that the auditor's CPU rounds the other way is no finding. An object that cannot be had makes the checks
that depend on it ``unverifiable``, never passed. Importing this module does
not import torch; running a reproduction does.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flare_chain.audit.checks import cid_text
from flare_chain.audit.content import ContentSource, ObjectState
from flare_chain.audit.findings import FAIL, PASS, UNVERIFIABLE, Finding
from flare_chain.audit.history import RoundHistory
from flare_chain.errors import FlareError, IntegrityError, StoreError, UpdateError

if TYPE_CHECKING:  # torch-heavy; the audit imports it only to re-run gates
    from flare_chain.protocol.spec import FederationSpec

__all__ = ["ModelLocator", "RoundContent", "content_checks", "reproduce_round"]

log = logging.getLogger("flare_chain.audit")

MANIFEST_FILE = "manifest.json"  # flare_chain.node.bundles.MANIFEST_FILE, kept here so no torch import


class ModelLocator:
    """Find the base model a global adapter names, by the fingerprint its manifest records.

    ``explicit`` (``--model-dir``) is tried first, then every model directory
    under ``search`` (default: the reference-model cache). Fingerprints are
    computed once per directory. When none matches and the manifest names the
    base model's CID, the model is fetched by that CID from ``source`` (every
    block verified, see :mod:`flare_chain.basemodel`) and used if its weights
    carry the recorded fingerprint.
    """

    def __init__(self, explicit: Path | None = None, search: list[Path] | None = None,
                 source: ContentSource | None = None, cache: Path | None = None) -> None:
        self.explicit = explicit
        self.search = search if search is not None else _default_search()
        self.source = source
        self.cache = cache
        self._prints: dict[Path, str] = {}

    def _fingerprint(self, path: Path) -> str | None:
        from flare_chain.lora.base import model_fingerprint

        if path not in self._prints:
            try:
                self._prints[path] = model_fingerprint(path)
            except (FlareError, OSError):
                self._prints[path] = ""
        return self._prints[path] or None

    def find(self, sha256: str, cid: str | None = None) -> Path | None:
        candidates = [self.explicit] if self.explicit is not None else []
        for root in self.search:
            if root.is_dir():
                candidates += sorted(p for p in root.iterdir() if p.is_dir())
        for path in candidates:
            if path is not None and self._fingerprint(path) == sha256:
                return path
        if cid is None or self.source is None:
            return None
        fetched = self._fetch(cid)
        return fetched if fetched is not None and self._fingerprint(fetched) == sha256 else None

    def _fetch(self, cid: str) -> Path | None:
        from flare_chain.basemodel import fetch_model

        assert self.source is not None
        getter = self.source.kubo.block_get if self.source.kubo is not None else self.source.store.get_block
        cache = self.cache or _default_search()[-1] / "base-models"
        try:
            return fetch_model(cid, getter, cache, source=self.source.where, show_progress=False)
        except FlareError as exc:
            log.warning("audit: base model %s could not be fetched: %s", cid, exc)
            return None


def _default_search() -> list[Path]:
    from flare_chain.lora.reference import default_cache_dir

    root = default_cache_dir()
    return [root / "models", root]


@dataclass
class RoundContent:
    """The objects of one round as the auditor found them."""

    submissions: dict[str, ObjectState] = field(default_factory=dict)
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)
    committed: ObjectState | None = None


def content_checks(source: ContentSource, r: RoundHistory) -> tuple[list[Finding], RoundContent]:
    """``cid-bytes`` and ``manifest-hash`` for every submission, and ``cid-bytes`` of the committed adapter."""
    import hashlib

    findings: list[Finding] = []
    content = RoundContent()
    rid = r.round_id
    for sub in r.submissions:
        state = source.check(sub.cid)
        content.submissions[sub.node] = state
        if state.state == "missing":
            findings.append(Finding("cid-bytes", UNVERIFIABLE, rid, sub.node, state.detail))
            findings.append(Finding("manifest-hash", UNVERIFIABLE, rid, sub.node, f"update {state.cid} is missing"))
            continue
        if state.state == "corrupt":
            findings.append(Finding("cid-bytes", FAIL, rid, sub.node, state.detail))
            findings.append(Finding("manifest-hash", UNVERIFIABLE, rid, sub.node,
                                    f"update {state.cid} has corrupt blocks"))
            continue
        findings.append(Finding("cid-bytes", PASS, rid, sub.node, f"{state.cid}: {state.blocks} block(s) verified"))
        try:
            manifest_bytes = source.store.cat(f"{state.cid}/{MANIFEST_FILE}")
        except FlareError as exc:
            findings.append(Finding("manifest-hash", FAIL, rid, sub.node, f"update {state.cid} has no manifest: {exc}"))
            continue
        digest = hashlib.sha256(manifest_bytes).digest()
        if digest != sub.manifest_hash:
            findings.append(Finding("manifest-hash", FAIL, rid, sub.node, (
                f"manifest of {state.cid} hashes to {digest.hex()}, the chain records {sub.manifest_hash.hex()}")))
            continue
        findings.append(Finding("manifest-hash", PASS, rid, sub.node, digest.hex()[:16] + "…"))
        try:
            content.manifests[sub.node] = json.loads(manifest_bytes)
        except ValueError:
            content.manifests[sub.node] = {}
    if r.committed and r.outcome is not None and r.outcome.global_cid is not None:
        state = source.check(r.outcome.global_cid)
        content.committed = state
        status = {"ok": PASS, "missing": UNVERIFIABLE}.get(state.state, FAIL)
        detail = f"committed adapter {state.cid}: {state.blocks} block(s) verified" if state.ok else state.detail
        findings.append(Finding("cid-bytes", status, rid, None, detail))
    return findings, content


def check_accepted_lists(source: ContentSource, r: RoundHistory) -> list[Finding]:
    """``accepted-list``: each proposal's list, read from its aggregate's manifest, is the one the chain names.

    The chain keeps a proposal's accepted root and count; the list is the
    ``accepted`` field of the manifest in the bundle the proposal's CID names.
    Each list must hash to the root, have the count's length and name only nodes
    that submitted in the round before the proposal. Resolved lists replace the
    round's proposals in ``r`` so the summary and ``reproduce_round`` use them.
    """

    from flare_chain.node.bundles import with_accepted_list

    name, rid = "accepted-list", r.round_id
    findings: list[Finding] = []
    for i, proposal in enumerate(r.proposals):
        state = source.check(proposal.global_cid)  # fetched (from Kubo, if that is the source) and verified
        if not state.ok:
            findings.append(Finding(name, UNVERIFIABLE if state.state == "missing" else FAIL, rid, proposal.proposer,
                                    f"the proposed adapter, which publishes the list, is {state.state}: "
                                    f"{state.detail}"))
            continue
        try:
            resolved = with_accepted_list(source.store, proposal)
        except IntegrityError as exc:
            findings.append(Finding(name, FAIL, rid, proposal.proposer, str(exc)))
            continue
        except StoreError as exc:
            findings.append(Finding(name, UNVERIFIABLE, rid, proposal.proposer,
                                    f"the proposed adapter {cid_text(proposal.global_cid)} cannot be fetched: {exc}"))
            continue
        assert resolved.accepted is not None
        r.proposals[i] = resolved
        submitted = {s.node.lower() for s in r.submissions if s.block_number <= proposal.block_number}
        strangers = [node for node in resolved.accepted if node.lower() not in submitted]
        if strangers:
            findings.append(Finding(name, FAIL, rid, proposal.proposer, (
                f"accepted list names {', '.join(strangers)}, which submitted nothing in round {rid} before the "
                "proposal")))
        else:
            findings.append(Finding(name, PASS, rid, proposal.proposer, (
                f"{len(resolved.accepted)} accepted, every one submitted; the list hashes to the proposal's root")))
    if not r.proposals:
        findings.append(Finding(name, PASS, rid, detail="no proposal"))
    return findings


def _params_from_config(config: dict[str, Any]) -> Any:
    from flare_chain.lora.params import LoraTrainParams

    return LoraTrainParams(rank=int(config["r"]), alpha=float(config["lora_alpha"]),
                           dropout=float(config.get("lora_dropout", 0.0)),
                           target_modules=tuple(config["target_modules"]))


def reproduce_round(
    source: ContentSource,
    r: RoundHistory,
    previous_cid: bytes | None,
    content: RoundContent,
    models: ModelLocator,
    spec: FederationSpec,
    max_sample_count: int,
    claim_seed: bytes | None,
    *,
    device: str = "cpu",
) -> list[Finding]:
    """``accepted-set`` and ``aggregate-cid``: re-run ``spec``'s gates and aggregator for a committed round.

    ``max_sample_count`` is the coordinator's cap, which clips each update's FedAvg weight;
    ``claim_seed`` the round's (``History.claim_seed``), which draws the probe windows.
    """
    rid = r.round_id
    proposal = r.proposal
    if not r.committed or proposal is None:
        detail = f"round {r.status}: no adapter was committed"
        return [Finding("accepted-set", PASS, rid, detail=detail), Finding("aggregate-cid", PASS, rid, detail=detail)]

    def both(status: str, detail: str) -> list[Finding]:
        return [Finding("accepted-set", status, rid, detail=detail),  # type: ignore[arg-type]
                Finding("aggregate-cid", status, rid, detail=detail)]  # type: ignore[arg-type]

    if previous_cid is None:
        return both(UNVERIFIABLE, "the adapter this round started from is outside the audited range")
    prev_state = source.check(previous_cid)
    if not prev_state.ok:
        return both(UNVERIFIABLE, f"previous global adapter {prev_state.cid} is {prev_state.state}: "
                                  f"{prev_state.detail}")

    from flare_chain.committee.aggregate import reproduce_aggregate, review_accepted_set
    from flare_chain.lora.peft_files import ADAPTER_CONFIG_FILE, adapter_config_dict
    from flare_chain.node.bundles import fetch_global_bundle

    previous = fetch_global_bundle(source.store, prev_state.cid)
    config = json.loads(source.store.cat(f"{prev_state.cid}/{ADAPTER_CONFIG_FILE}"))
    params = _params_from_config(config)
    written = adapter_config_dict(params, str(config.get("base_model_name_or_path")),
                                  fan_in_fan_out=bool(config.get("fan_in_fan_out", False)))
    if written != config:
        return both(UNVERIFIABLE, f"adapter_config.json of {prev_state.cid} has fields this version does not write")

    unavailable = sorted(n for n, s in content.submissions.items() if not s.ok)
    available = [s for s in r.submissions if content.submissions.get(s.node, None) is not None
                 and content.submissions[s.node].ok]
    model_dir = models.find(previous.manifest.base_model_sha256, previous.manifest.base_model_cid)
    if model_dir is None:  # without the model the MI filter cannot run, so neither check can be re-done
        return both(UNVERIFIABLE, f"base model {previous.manifest.base_model_sha256[:16]}… not found; "
                                  "pass --model-dir")
    if claim_seed is None:
        return both(UNVERIFIABLE, "the submission deadline block's hash (the claim seed, which draws the probe) "
                                  "was not read")
    if proposal.accepted is None:  # not resolved by check_accepted_lists (or a caller that skipped it)
        from flare_chain.node.bundles import with_accepted_list

        try:
            proposal = with_accepted_list(source.store, proposal)
        except FlareError as exc:
            return both(UNVERIFIABLE, f"the proposal's accepted list cannot be read from its manifest: {exc}")
    assert proposal.accepted is not None
    if previous.manifest.probe_cid is not None:  # the probe-loss gate reads it from source.store: pull it first
        probe_state = source.check(previous.manifest.probe_cid)
        if not probe_state.ok:
            return both(UNVERIFIABLE, f"the committee's gates cannot be re-run: probe corpus {probe_state.cid} is "
                                      f"{probe_state.state}: {probe_state.detail}")
    # The committee's gates, MI filter included (probe from the round's claim seed), when the base model is here.
    accepted = list(proposal.accepted)
    try:
        verdict, chosen = review_accepted_set(source.store, rid, available, previous, accepted, model_dir=model_dir,
                                              params=params, probe_seed=claim_seed,
                                              device=device, gates=spec.gates, privacy=spec.privacy,
                                              max_sample_count=max_sample_count)
    except (StoreError, UpdateError) as exc:  # only round-wide inputs raise: the probe corpus
        return both(UNVERIFIABLE, f"the committee's gates cannot be re-run: {exc}")
    findings: list[Finding] = []
    if unavailable:
        findings.append(Finding("accepted-set", UNVERIFIABLE, rid, detail=(
            f"update(s) of {', '.join(unavailable)} could not be fetched intact, so the gates cannot be re-run")))
    elif not verdict.defensible:
        findings += [Finding("accepted-set", FAIL, rid, node, detail)
                     for node, detail in verdict.disputes]
    else:
        findings.append(Finding("accepted-set", PASS, rid, detail=(
            f"{len(accepted)} accepted: {verdict.summary()}")))

    by_node = {u.submission.node: u for u in chosen}
    missing = [n for n in accepted if n not in by_node]
    if missing:
        status = UNVERIFIABLE
        findings.append(Finding("aggregate-cid", status, rid, detail=(
            f"accepted update(s) of {', '.join(missing)} cannot be decoded or failed the gates; "
            "their aggregate cannot be rebuilt")))
        return findings
    if model_dir is None:
        findings.append(Finding("aggregate-cid", UNVERIFIABLE, rid, detail=(
            f"base model {previous.manifest.base_model_sha256[:16]}… not found; pass --model-dir")))
        return findings
    updates = [by_node[n] for n in accepted]
    proposed = cid_text(proposal.global_cid)
    rebuilt, mismatch = reproduce_aggregate(source.store, rid, previous, updates, model_dir, params,
                                            proposed_cid=proposed, aggregator=spec.aggregator.build(),
                                            max_sample_count=max_sample_count)
    if mismatch is not None:
        findings.append(Finding("aggregate-cid", FAIL, rid, proposal.proposer, (
            f"rebuilding the round from its {len(updates)} accepted update(s): {mismatch}")))
    elif rebuilt.cid != proposed:
        findings.append(Finding("aggregate-cid", PASS, rid, detail=(
            f"reproduced {proposed} within the spec's exact_lora tolerance (adapter and carried residual; "
            f"the rebuild here is {rebuilt.cid})")))
    else:
        findings.append(Finding("aggregate-cid", PASS, rid, detail=f"reproduced {proposed}"))
    return findings
