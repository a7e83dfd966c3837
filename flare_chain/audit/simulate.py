"""Generate real, auditable histories on an in-process chain: for the auditor's tests and benchmark.

Everything is real except the training: the compiled coordinator on an
eth-tester chain that reports its prevrandao (``chain.tester_backend``), nodes
registered with stake and keys, update bundles (small random deltas shaped
like the global adapter, with manifests) pinned to an embedded store and
submitted, seats claimed with real VRF proofs, the leader's aggregate built by
``committee.aggregate`` and pinned, and committee votes. Hooks let a caller
make one step dishonest, which is how the tests produce tampered histories.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak

from flare_chain.audit.deployment import AuditTarget
from flare_chain.chain import (
    CoordinatorClient,
    RoundStatus,
    Submission,
    advance_blocks,
    deploy_coordinator,
    fund_accounts,
)
from flare_chain.chain.artifacts import ContractArtifact
from flare_chain.chain.coordinator import DEFAULT_MAX_SAMPLE_COUNT
from flare_chain.chain.deployment import find_deployment_tx, read_binding
from flare_chain.chain.revert import ErrorDecoder
from flare_chain.chain.tester_backend import audit_ready_chain
from flare_chain.chain.transactions import send_transaction
from flare_chain.committee import sortition, vrf
from flare_chain.committee.aggregate import CheckedUpdate, build_aggregate, check_submissions
from flare_chain.errors import ChainError
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.lora.adapter import initial_adapter
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.probe_corpus import reference_probe_texts
from flare_chain.node.bundles import (
    GlobalAdapter,
    fetch_global_bundle,
    pin_global_bundle,
    pin_probe_corpus,
    pin_update_bundle,
)
from flare_chain.node.participant import initial_global_manifest
from flare_chain.protocol import RoundSchedule
from flare_chain.protocol.spec import FederationSpec, pin_spec

__all__ = ["Proposer", "SimulatedFederation", "simulate"]

STAKE_WEI = 10**18
Proposer = Callable[["SimulatedFederation", int, GlobalAdapter, list[CheckedUpdate]], tuple[str, Sequence[str]]]
"""``(fed, round, previous, passing updates) -> (adapter CID, accepted nodes)``: what the leader proposes."""


@dataclass
class SimulatedFederation:
    """A live in-process federation whose rounds are driven step by step."""

    coordinator: CoordinatorClient
    owner: LocalAccount
    nodes: list[LocalAccount]
    store: ContentStore
    model_dir: Path
    params: LoraTrainParams
    initial_cid: str
    expected_committee_size: int
    delta_scale: float = 1e-3
    round_cids: dict[int, dict[str, str]] = field(default_factory=dict)
    spec: FederationSpec = field(default_factory=FederationSpec)
    """The rules the honest members follow (fixed on-chain when ``simulate`` was given one)."""

    @property
    def target(self) -> AuditTarget:
        """What a deployment file would say about this federation's coordinator, binding included."""
        w3, address, block = self.coordinator.w3, self.coordinator.address, self.coordinator.deployment_block
        binding = read_binding(w3, address, find_deployment_tx(w3, address, block))
        return AuditTarget(chain_id=int(w3.eth.chain_id), address=address, block=block,
                           deployment_tx=binding.deployment_tx, block_hash=binding.deployment_block_hash,
                           code_hash=binding.code_hash)

    def honest_proposal(self, round_id: int, previous: GlobalAdapter,
                        passing: list[CheckedUpdate]) -> tuple[str, list[str]]:
        result = build_aggregate(self.store, round_id, previous, passing, self.model_dir, self.params,
                                 aggregator=self.spec.aggregator.build(),
                                 max_sample_count=self.coordinator.max_sample_count())
        return result.cid, result.accepted

    def _delta(self, round_id: int, index: int, shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
        gen = torch.Generator().manual_seed(round_id * 1009 + index)
        return {k: torch.randn(shape, generator=gen) * self.delta_scale for k, shape in sorted(shapes.items())}

    def run_round(
        self,
        *,
        bad_manifest_hash: Sequence[int] = (),
        proposer: Proposer | None = None,
        approvals: int | Sequence[int] | None = None,
        phase_blocks: int = 2,
    ) -> int:
        """One whole round; returns its id.

        ``bad_manifest_hash``: indexes of nodes that submit a hash not of their
        manifest. ``proposer`` replaces the honest leader. ``approvals``: how
        many members (in proposing order) vote yes; the rest vote no (default:
        all yes); a sequence gives the count for each proposal in turn (a
        rejected one falls back to the next rank), its last entry for the rest.
        """
        c, w3 = self.coordinator, self.coordinator.w3
        round_id, _ = c.open_round(self.owner, len(self.nodes) + phase_blocks, len(self.nodes) + phase_blocks,
                                   phase_blocks + 2, len(self.nodes) + phase_blocks,
                                   expected_committee_size=self.expected_committee_size)
        previous = fetch_global_bundle(self.store, self._current_cid())
        chain_id = int(w3.eth.chain_id)
        cids: dict[str, str] = {}
        submissions: list[Submission] = []
        for i, node in enumerate(self.nodes):
            delta = self._delta(round_id, i, previous.shapes)
            loss = 3.0 - 0.05 * round_id
            manifest = Manifest(
                kind="delta", base_model_id=previous.manifest.base_model_id,
                base_model_sha256=previous.manifest.base_model_sha256,
                base_model_cid=previous.manifest.base_model_cid, rank=previous.manifest.rank,
                alpha=previous.manifest.alpha, target_modules=list(previous.manifest.target_modules),
                sample_count=100 + i, shapes=tensor_shapes(delta),
                metrics={"val_loss_before": loss + 0.01 * i, "val_loss_after": loss - 0.1 + 0.01 * i},
                round=round_id, node=node.address,
            )
            cid, digest = pin_update_bundle(self.store, delta, manifest)
            if i in bad_manifest_hash:
                digest = keccak(digest)
            tx = c.submit_update(node, round_id, cid_to_bytes(cid), manifest.sample_count, digest)
            cids[node.address] = cid
            # What the UpdateSubmitted event says; kept here so generating a history scans no logs.
            submissions.append(Submission(round_id=round_id, node=node.address, cid=cid_to_bytes(cid),
                                          sample_count=manifest.sample_count, manifest_hash=digest,
                                          block_number=tx.block_number, tx_hash=tx.tx_hash))
        self.round_cids[round_id] = cids
        info = c.round_info(round_id)
        advance_blocks(w3, max(0, info.submission_deadline + 1 - int(w3.eth.block_number)))
        claim_seed = c.claim_seed(round_id)
        alpha = sortition.vrf_alpha(chain_id, c.address, round_id, claim_seed)
        total = STAKE_WEI * len(self.nodes)
        scores: dict[str, int] = {}
        for node in self.nodes:
            proof = vrf.prove(bytes(node.key), alpha)
            output = vrf.proof_to_hash(proof)
            weight = sortition.seat_weight(output, self.expected_committee_size, STAKE_WEI, total)
            if weight:
                c.claim_seat(node, round_id, proof)
                scores[node.address] = sortition.leader_score(output, weight)
        advance_blocks(w3, max(0, info.claim_deadline + 1 - int(w3.eth.block_number)))
        order = sortition.leader_order(scores)
        by_address: dict[str, LocalAccount] = {n.address: n for n in self.nodes}
        if not order:  # nobody drew a seat: the round fails once its claim window is over
            c.finalize_round(self.owner, round_id)
            return round_id
        passing, _rejected = check_submissions(self.store, round_id, submissions, previous, gates=self.spec.gates,
                                               privacy=self.spec.privacy,
                                               model_dir=self.model_dir, params=self.params, probe_seed=claim_seed,
                                               max_sample_count=c.max_sample_count())
        cid, accepted = (proposer or SimulatedFederation.honest_proposal)(self, round_id, previous, passing)
        counts = [len(order)] if approvals is None else [approvals] if isinstance(approvals, int) else list(approvals)
        # The same proposal from each rank in turn: a rejection falls back to the next rank (the
        # contract's rule) until one commits or no rank is left.
        for proposer_rank in range(min(len(order), sortition.PROPOSER_RANKS)):
            now = c.round_info(round_id)
            if now.status != RoundStatus.OPEN or now.first_rank > proposer_rank:
                break
            yes = counts[min(proposer_rank, len(counts) - 1)]
            c.propose_aggregate(by_address[order[proposer_rank]], round_id, cid_to_bytes(cid), list(accepted))
            for rank, member in enumerate(order):
                if c.round_info(round_id).status != RoundStatus.PROPOSED:
                    break
                c.vote(by_address[member], round_id, rank < yes)
        final = c.round_info(round_id)
        if not final.status.is_final:
            closes = RoundSchedule.for_round(final, c).finalizable_from(final.status, final.committee_weight)
            advance_blocks(w3, max(0, (closes or 0) - int(w3.eth.block_number)))
            c.finalize_round(self.owner, round_id)
        return round_id

    def _current_cid(self) -> str:
        from flare_chain.ipfs import cid_from_bytes

        return cid_from_bytes(self.coordinator.global_adapter_cid())


def _deploy_artifact(w3: Any, owner: LocalAccount, artifact: ContractArtifact, *, threshold_bps: int) -> CoordinatorClient:
    factory = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode)
    data = factory.constructor(threshold_bps, 2, 2, 10**15, DEFAULT_MAX_SAMPLE_COUNT).data_in_transaction
    result = send_transaction(w3, owner, to=None, data=data, label=f"deploy {artifact.name}",
                              decoder=ErrorDecoder(artifact.abi))
    address = result.receipt["contractAddress"]
    if address is None:
        raise ChainError(f"deploying {artifact.name} produced no contract address")
    return CoordinatorClient(w3, address, deployment_block=result.block_number, artifact=artifact)


def simulate(
    store_dir: Path,
    model_dir: Path,
    params: LoraTrainParams,
    *,
    nodes: int = 4,
    expected_committee_size: int | None = None,
    threshold_bps: int = 6666,
    artifact: ContractArtifact | None = None,
    probe_corpus: bool = False,
    spec: FederationSpec | None = None,
) -> SimulatedFederation:
    """Deploy (the coordinator, or ``artifact``), register ``nodes`` equal stakes, pin the round-0 adapter.

    ``expected_committee_size`` defaults to ``5·nodes``: each node's weight is Poisson(5), so it
    misses a seat with probability e^-5 (0.7%). ``probe_corpus`` pins the
    reference probe corpus and names it in the round-0 manifest (the probe-loss gate runs from 5 nodes).
    ``spec`` is pinned and fixed on the coordinator; the honest members then gate and aggregate by it.
    """
    w3 = audit_ready_chain()
    owner = Account.from_key(keccak(text="flare-chain audit owner"))
    accounts = [Account.from_key(keccak(text=f"flare-chain audit node {i}")) for i in range(nodes)]
    fund_accounts(w3, [owner, *accounts], 10**21)
    if artifact is None:
        coordinator = deploy_coordinator(w3, owner, approval_threshold_bps=threshold_bps, leader_blocks=2)
    else:
        coordinator = _deploy_artifact(w3, owner, artifact, threshold_bps=threshold_bps)
    for account in accounts:
        coordinator.register_node(account, STAKE_WEI)
    store = ContentStore(store_dir, durable=False)
    start = initial_adapter(model_dir, params, seed=0)
    probe_cid = pin_probe_corpus(store, reference_probe_texts(bytes_per_domain=2048)) if probe_corpus else None
    cid = pin_global_bundle(store, start, initial_global_manifest(model_dir, params, start, probe_cid=probe_cid),
                            model_dir, params)
    coordinator.initialize_global_adapter(owner, cid_to_bytes(cid))
    if spec is not None:
        coordinator.set_federation_spec(owner, cid_to_bytes(pin_spec(store, spec)))
    return SimulatedFederation(coordinator=coordinator, owner=owner, nodes=accounts, store=store,
                               model_dir=model_dir, params=params, initial_cid=cid,
                               expected_committee_size=expected_committee_size or 5 * nodes,
                               spec=spec if spec is not None else FederationSpec())
