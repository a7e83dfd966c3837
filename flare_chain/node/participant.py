"""One participant's work in a round: pull, train, pin, submit; draw a seat; lead or review; vote.

A ``Participant`` composes the pure parts (training, aggregation, gates, VRF)
with the I/O it is handed (a coordinator client, a content store). It holds no
global state. The node engine, :class:`~flare_chain.node.daemon.Daemon` (run by
``flare-chain node run`` and, in process, by the demo), builds one per node and
uses its helpers: ``release``/``crafted``/the base and target checks when it
trains, ``gate_submissions``/``aggregate`` when it proposes, ``review`` when it
votes, ``evaluate`` when it pulls. The one-transaction stepping methods
(``train_and_submit``, ``claim_seat``, ``propose_if_turn``, ``vote_if_member``)
drive a single node by hand in unit tests; no round engine calls them.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount

from flare_chain.attacks.behaviour import craft_alone, daemon_behaviour
from flare_chain.basemodel import model_cid
from flare_chain.chain import CoordinatorClient, RoundStatus, SeatDraw, Submission, TxResult
from flare_chain.committee import sortition
from flare_chain.committee.aggregate import (
    AggregateResult,
    CheckedUpdate,
    Rejection,
    build_aggregate,
    check_submissions,
    reproduce_aggregate,
    review_accepted_set,
)
from flare_chain.compression import PowerSGDCompressor
from flare_chain.errors import ChainError, ConfigError, IntegrityError
from flare_chain.ipfs import cid_from_bytes, cid_to_bytes, parse_cid
from flare_chain.ipfs.content import PinningStore
from flare_chain.lora.base import base_model_id, model_fingerprint
from flare_chain.lora.datasets import NodeData
from flare_chain.lora.device import resolve_device
from flare_chain.lora.evaluate import evaluate_loss, held_out_examples
from flare_chain.lora.examples import TokenExamples
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.targets import resolve_params
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import (
    MANIFEST_FILE,
    GlobalAdapter,
    fetch_global_bundle,
    pin_update_bundle,
    with_accepted_list,
)
from flare_chain.protocol import RoundSchedule
from flare_chain.protocol.spec import FederationSpec

__all__ = ["Participant", "Review", "SubmissionRecord", "initial_global_manifest", "loss_within_tolerance"]

log = logging.getLogger("flare_chain.node")


@dataclass(frozen=True)
class SubmissionRecord:
    """What a node did in a round's training phase."""

    round_id: int
    cid: str
    sample_count: int
    loss_before: float
    loss_local: float
    train_seconds: float
    tx: TxResult
    compression: dict[str, float] = field(default_factory=dict)
    """The manifest's ``powersgd_*`` metrics (rank, relative error, byte counts); empty when sent uncompressed."""


@dataclass(frozen=True)
class Review:
    """A committee member's verdict on a proposal, with the reason it gives."""

    approve: bool
    reason: str
    loss_before: float
    loss_after: float | None
    tx: TxResult | None


class Participant:
    """A registered node: its key, its private data and the endpoints it talks to."""

    def __init__(
        self,
        name: str,
        account: LocalAccount,
        texts: NodeData | Sequence[str],
        *,
        model_dir: Path,
        params: LoraTrainParams,
        coordinator: CoordinatorClient,
        store: PinningStore,
        show_progress: bool = True,
        compressor: PowerSGDCompressor | None = None,
        spec: FederationSpec | None = None,
        base_model_cid: str | None = None,
        device: str = "cpu",
        attack: str | None = None,
    ) -> None:
        self.name = name
        if attack is not None:
            daemon_behaviour(attack)  # an unknown kind, or one a lone node cannot craft, stops the node here
        self.attack = attack
        """A test/devnet attacker's behaviour (``[attack] kind``, the demo's ``--attack``): the update it submits
        is that behaviour's crafted one instead of the trained one. None for every real node."""
        self.spec = spec if spec is not None else FederationSpec()
        """The federation's rules this node gates, aggregates and votes by (defaults when the chain names none)."""
        resolve_device(device)  # "cuda" without a GPU stops the node here, before it trains or reviews anything
        self.device = device
        """Where this node trains and runs the committee's models (``"auto" | "cpu" | "cuda"``)."""
        self.account = account
        self.address: str = account.address
        self.model_dir = Path(model_dir)
        self.params = resolve_params(self.model_dir, params)
        """The node's LoRA params with the target modules resolved against its base (what manifests record)."""
        self.base_model_sha256 = model_fingerprint(self.model_dir)
        self.base_model_cid = base_model_cid or model_cid(self.model_dir)
        """The base model's identity, read once: its folder's CID (given when it was resolved by CID) and the
        sha256 of its weights, both recorded in every manifest this node writes."""
        self.coordinator = coordinator
        self.store = store
        self.show_progress = show_progress
        self.compressor = compressor if not self.spec.privacy.enabled else None
        """Kept for the node's life: its error-feedback residual and warm starts carry from round to round.
        None under local DP: the noise is full-rank, so the update goes dense, and the committee's norm bound
        holds exactly (an error-feedback residual would add last round's leftovers on top of the clip)."""
        self._texts = texts
        # Tokenizing the held-out split here checks the model's tokenizer and the data (chat template, record
        # lengths) before the node trains, pins or sends anything.
        self.val_windows: TokenExamples = held_out_examples(texts, self.params, load_tokenizer(self.model_dir))
        """This node's held-out windows (text) or examples (instruction/chat: only responses are scored)."""

    # ------------------------------------------------------------ training

    def pull_global(self) -> GlobalAdapter:
        """Fetch the global adapter whose CID the chain holds now; every byte verified."""
        cid = cid_from_bytes(self.coordinator.global_adapter_cid())
        return fetch_global_bundle(self.store, cid)

    def evaluate(self, adapter: dict[str, torch.Tensor] | None) -> float:
        """Mean token loss of ``adapter`` on this node's held-out windows."""
        return evaluate_loss(self.model_dir, adapter, self.val_windows, self.params, device=self.device)

    def check_targets(self, global_adapter: GlobalAdapter) -> None:
        """Refuse to train when this node's LoRA targets are not the global adapter's (the policy gate would
        reject the update): ConfigError naming both lists."""
        ours, theirs = list(self.params.targets), sorted(global_adapter.manifest.target_modules)
        if ours != theirs:
            raise ConfigError(
                f"{self.name}: LoRA target_modules {ours} (resolved against {self.model_dir}) differ from the global "
                f"adapter's {theirs}; set [training] target_modules to the federation's list"
            )

    def release(self, delta: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
        """What this node publishes of ``delta`` under the spec, and the manifest metrics that say so.

        Under local DP the delta is clipped to the spec's bound and Gaussian noise is added before it
        leaves the node; the noise seed is fresh randomness that is never recorded (a seed others could
        derive would let them subtract the noise).
        """
        return self.spec.privacy.release(delta, seed=secrets.randbits(63))
    def check_base_model(self, global_adapter: GlobalAdapter) -> None:
        """Refuse to train on another base model than the federation's (the policy gate would reject the
        update): ConfigError naming both and the fix."""
        named = global_adapter.manifest.base_model_cid
        if named is not None and parse_cid(named) != parse_cid(self.base_model_cid):
            raise ConfigError(
                f"{self.name}: the base model {self.model_dir} is {self.base_model_cid}, but the federation's is "
                f"{named}; deploy with --base-model-cid {named} (the node then fetches it) or point "
                "[model] model_dir at a copy of it"
            )

    def base_manifest_fields(self) -> dict[str, str]:
        """The manifest fields that say which base model an update was trained on."""
        return {"base_model_sha256": self.base_model_sha256, "base_model_cid": self.base_model_cid}

    def crafted(self, round_id: int, delta: dict[str, torch.Tensor],
                global_tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The update this node submits: ``delta`` itself, or for an attacker its behaviour's crafted update.

        Seeded by address and round, so a restarted attacker crafts the same bytes.
        """
        if self.attack is None:
            return delta
        seed = int.from_bytes(hashlib.sha256(f"{self.address}:{round_id}".encode()).digest()[:7], "big")
        log.warning("round %d %s: attacking: submitting a %s update instead of the trained one", round_id,
                    self.name, self.attack)
        return craft_alone(self.attack, delta, global_tensors, seed=seed)

    def train_and_submit(self, round_id: int, global_adapter: GlobalAdapter) -> SubmissionRecord:
        """Train from the global adapter, pin the delta and send the one submission of this round."""
        self.check_targets(global_adapter)
        self.check_base_model(global_adapter)
        result = train_lora(self.model_dir, self._texts, self.params, start_adapter=global_adapter.tensors,
                            progress_desc=f"round {round_id} {self.name}", show_progress=self.show_progress,
                            device=self.device)
        delta, dp_metrics = self.release(result.delta)
        delta = self.crafted(round_id, delta, global_adapter.tensors)
        manifest = Manifest(
            kind="delta",
            base_model_id=global_adapter.manifest.base_model_id,
            **self.base_manifest_fields(),
            rank=self.params.rank,
            alpha=self.params.alpha,
            target_modules=list(self.params.targets),
            sample_count=result.sample_count,
            shapes=tensor_shapes(delta),
            metrics={**{k: float(v) for k, v in result.metrics.items() if k != "seconds"}, **dp_metrics},
            round=round_id,
            node=self.address,
        )
        # The compressor advances when the bundle is encoded; if the submission then fails, the residual
        # it folded in was never sent, so the state goes back to what it was.
        saved = self.compressor.state_bytes() if self.compressor is not None else None
        try:
            cid, digest = pin_update_bundle(self.store, delta, manifest, compressor=self.compressor)
            tx = self.coordinator.submit_update(self.account, round_id, cid_to_bytes(cid), result.sample_count,
                                                digest)
        except Exception:
            if saved is not None:
                self.compressor = PowerSGDCompressor.from_state_bytes(saved)
            raise
        compression: dict[str, float] = {}
        if self.compressor is not None:
            pinned = Manifest.from_bytes(self.store.cat(f"{cid}/{MANIFEST_FILE}"))
            compression = {k: v for k, v in pinned.metrics.items() if k.startswith("powersgd_")}
        log.info("round %d %s: submitted %s (%d samples, held-out loss %.4f -> %.4f, gas %d%s)", round_id,
                 self.name, cid, result.sample_count, result.metrics["val_loss_before"],
                 result.metrics["val_loss_after"], tx.gas_used,
                 f", PowerSGD {compression['powersgd_encoded_bytes']:.0f} B, error "
                 f"{compression['powersgd_rel_error']:.3f}" if compression else "")
        return SubmissionRecord(
            round_id=round_id, cid=cid, sample_count=result.sample_count,
            loss_before=result.metrics["val_loss_before"], loss_local=result.metrics["val_loss_after"],
            train_seconds=result.metrics["seconds"], tx=tx, compression=compression,
        )

    # ----------------------------------------------------------- committee

    def register(self, stake_wei: int) -> TxResult:
        """Register this node once, depositing ``stake_wei``; its account key is its VRF key.

        The node takes part in rounds opened after this transaction.
        """
        tx = self.coordinator.register_node(self.account, stake_wei)
        log.info("%s registered %s with stake %d wei (gas %d)", self.name, self.address, stake_wei, tx.gas_used)
        return tx

    def draw_seat(self, round_id: int) -> SeatDraw:
        """This node's VRF draw for ``round_id`` (sends nothing): proof, output and whether it wins a seat."""
        return self.coordinator.draw_seat(self.account, round_id)

    def claim_seat(self, round_id: int, draw: SeatDraw | None = None) -> TxResult | None:
        """In the claim window: claim a seat if this node's draw wins one; None when not selected or seated.

        ``draw`` (from ``draw_seat``) saves recomputing the proof. The contract
        verifies the proof itself, so this only spares an unselected node a
        transaction that would revert with ``CoordinatorNotSelected``.
        """
        draw = draw if draw is not None else self.draw_seat(round_id)
        if not draw.selected or self.coordinator.is_committee_member(round_id, self.address):
            return None
        tx = self.coordinator.claim_seat(self.account, round_id, draw.proof)
        log.info("round %d %s: claimed a seat of weight %d with VRF output %s (gas %d)", round_id, self.name,
                 draw.weight, draw.output.hex()[:12], tx.gas_used)
        return tx

    def proposer_rank(self, round_id: int) -> int | None:
        """This member's proposer rank (0 = leader); None when it holds no seat.

        Meaningful after the claim deadline, when the committee, and so the
        rank, no longer changes.
        """
        scores = self.coordinator.leader_scores(round_id)
        if self.address not in scores:
            return None
        return sortition.rank_of(scores, self.address)

    def propose_if_turn(
        self, round_id: int, previous: GlobalAdapter
    ) -> tuple[AggregateResult, list[Rejection], TxResult] | None:
        """Propose when this member's turn has come and nobody has proposed yet; None otherwise.

        "Has come" means the next block (the one a transaction sent now lands
        in) is within this member's turn and the proposal deadline.
        """
        rank = self.proposer_rank(round_id)
        if rank is None:
            return None
        info = self.coordinator.round_info(round_id)
        schedule = RoundSchedule.for_round(info, self.coordinator)
        next_block = int(self.coordinator.w3.eth.block_number) + 1
        if info.status != RoundStatus.OPEN or not schedule.may_propose(rank, next_block):
            return None
        if info.committee_weight < schedule.min_committee_size:
            return None  # the contract would refuse any proposal; the round can only be finalized
        return self.propose(round_id, previous)

    def gate_submissions(
        self, round_id: int, submissions: Sequence[Submission], previous: GlobalAdapter
    ) -> tuple[list[CheckedUpdate], list[Rejection]]:
        """Run the committee's gates, MI filter included, exactly as every member and the auditor do.

        The MI filter's probe windows come from the round's claim seed, fixed by
        the submission deadline block (so unknown to anyone who submitted), and
        every member draws the same probe.
        """
        seed = self.coordinator.claim_seed(round_id)
        return check_submissions(self.store, round_id, submissions, previous, gates=self.spec.gates,
                                 privacy=self.spec.privacy, model_dir=self.model_dir, params=self.params,
                                 probe_seed=seed, device=self.device,
                                 max_sample_count=self.coordinator.max_sample_count())

    def aggregate(self, round_id: int, previous: GlobalAdapter, accepted: Sequence[CheckedUpdate], *,
                  pin: bool = True) -> AggregateResult:
        """Combine ``accepted`` onto ``previous`` with the spec's aggregator (pinned, or only hashed)."""
        return build_aggregate(self.store, round_id, previous, accepted, self.model_dir, self.params,
                               aggregator=self.spec.aggregator.build(), pin=pin,
                               max_sample_count=self.coordinator.max_sample_count())

    def propose(self, round_id: int, previous: GlobalAdapter) -> tuple[AggregateResult, list[Rejection], TxResult]:
        """As leader: gate every submission, aggregate the survivors, pin and propose the result."""
        submissions = self.coordinator.submissions(round_id)
        accepted, rejected = self.gate_submissions(round_id, submissions, previous)
        if not accepted:
            raise ChainError(f"round {round_id}: no submission passed the gates ({len(rejected)} rejected); "
                             "nothing to propose, the round will fail at its proposal deadline")
        aggregate = self.aggregate(round_id, previous, accepted)
        tx = self.coordinator.propose_aggregate(self.account, round_id, cid_to_bytes(aggregate.cid),
                                                aggregate.accepted)
        log.info("round %d %s: proposed %s from %d updates (%d rejected, gas %d)", round_id, self.name,
                 aggregate.cid, len(accepted), len(rejected), tx.gas_used)
        return aggregate, rejected, tx

    def review(self, round_id: int, previous: GlobalAdapter, *, tolerance: float) -> tuple[bool, str, float, float | None]:
        """Recompute the proposal independently and judge it; returns (approve, reason, loss before, after).

        Approve only if the accepted set is defensible on this machine (every
        gate statistic on the leader's side of its threshold or within its
        tolerance band: :mod:`flare_chain.committee.verdict`), the leader's
        accepted updates aggregate here to the proposed CID (for exact LoRA:
        to an adapter and residual as good within the spec's tolerance, see
        :func:`~flare_chain.committee.aggregate.reproduce_aggregate`), and the new
        adapter's held-out loss on this node's data is no worse than the
        previous global's by more than ``tolerance`` (relative; this node's
        own judgement).
        """
        loss_before = self.evaluate(previous.tensors)
        proposal = self.coordinator.proposal(round_id)
        if proposal is None:
            return False, "no proposal on-chain", loss_before, None
        try:  # the list is in the proposed bundle's manifest; the chain has its root and count
            proposal = with_accepted_list(self.store, proposal)
        except IntegrityError as exc:
            return False, f"accepted list does not match the proposal: {exc}", loss_before, None
        assert proposal.accepted is not None
        seed = self.coordinator.claim_seed(round_id)
        verdict, chosen = review_accepted_set(
            self.store, round_id, self.coordinator.submissions(round_id), previous, proposal.accepted,
            gates=self.spec.gates, privacy=self.spec.privacy, model_dir=self.model_dir, params=self.params,
            probe_seed=seed, device=self.device, max_sample_count=self.coordinator.max_sample_count())
        if not verdict.defensible:
            return False, verdict.summary(), loss_before, None
        if verdict.tolerated:
            log.info("round %d %s: %s", round_id, self.name, verdict.summary())
        proposed_cid = cid_from_bytes(proposal.global_cid)
        recomputed, mismatch = reproduce_aggregate(
            self.store, round_id, previous, chosen, self.model_dir, self.params, proposed_cid=proposed_cid,
            aggregator=self.spec.aggregator.build(), max_sample_count=self.coordinator.max_sample_count())
        if mismatch is not None:
            return False, mismatch, loss_before, None
        loss_after = self.evaluate(recomputed.adapter)
        if not loss_within_tolerance(loss_before, loss_after, tolerance):
            return False, f"held-out loss rises {loss_before:.4f} -> {loss_after:.4f}", loss_before, loss_after
        return True, f"reproduced {proposed_cid}; held-out loss {loss_before:.4f} -> {loss_after:.4f}", \
            loss_before, loss_after

    def review_and_vote(self, round_id: int, previous: GlobalAdapter, *, tolerance: float) -> Review:
        """Review the proposal and cast this member's one vote."""
        approve, reason, before, after = self.review(round_id, previous, tolerance=tolerance)
        tx = self.coordinator.vote(self.account, round_id, approve)
        log.info("round %d %s: votes %s (%s)", round_id, self.name, "yes" if approve else "no", reason)
        return Review(approve=approve, reason=reason, loss_before=before, loss_after=after, tx=tx)

    def vote_if_member(self, round_id: int, previous: GlobalAdapter, *, tolerance: float) -> Review | None:
        """Review and vote when this node holds a seat, a proposal awaits votes and it has not voted; else None."""
        if not self.coordinator.is_committee_member(round_id, self.address):
            return None
        info = self.coordinator.round_info(round_id)
        schedule = RoundSchedule.for_round(info, self.coordinator)
        next_block = int(self.coordinator.w3.eth.block_number) + 1
        if info.status != RoundStatus.PROPOSED or not schedule.accepts_vote(next_block):
            return None
        if self.coordinator.has_voted(round_id, self.address):
            return None
        return self.review_and_vote(round_id, previous, tolerance=tolerance)


def loss_within_tolerance(loss_before: float, loss_after: float, tolerance: float) -> bool:
    """A member's rule for its own held-out data: the new adapter may raise the loss by at most ``tolerance``
    (relative to the previous global adapter's loss); see ``node.config.DEFAULT_VOTE_TOLERANCE``."""
    return loss_after <= loss_before * (1 + tolerance)


def initial_global_manifest(
    model_dir: Path, params: LoraTrainParams, tensors: dict[str, torch.Tensor], *, probe_cid: str | None = None,
    base_model_cid: str | None = None,
) -> Manifest:
    """The manifest of the round-0 global adapter every node starts from.

    ``probe_cid`` names the federation's public probe corpus (see
    :mod:`flare_chain.lora.probe_corpus`); every later global manifest
    carries it on, and the committee's probe-loss gate runs only when it is set.
    ``base_model_cid`` names the published base model (``flare-chain model
    add``); every later global manifest carries it on too, and the policy gate
    then compares updates' base models by CID.
    """
    params = resolve_params(model_dir, params)
    return Manifest(
        kind="adapter",
        base_model_id=base_model_id(model_dir),
        base_model_sha256=model_fingerprint(model_dir),
        rank=params.rank,
        alpha=params.alpha,
        target_modules=list(params.targets),
        sample_count=0,
        shapes=tensor_shapes(tensors),
        round=0,
        probe_cid=probe_cid,
        base_model_cid=base_model_cid,
    )
