"""One participant's work in a round: pull, train, pin, submit; draw a seat; lead or review; vote.

A ``Participant`` composes the pure parts (training, aggregation, gates, VRF)
with the I/O it is handed (a coordinator client, a content store). It holds no
global state, so the in-process demo runs several side by side and the daemon
runs one per process. Each committee step is its own method with at most one
transaction, so a daemon can call them one at a time as blocks arrive:
``claim_seat`` in the claim window, ``propose_if_turn`` after it, ``vote_if_member``
once a proposal is on-chain.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from eth_account.signers.local import LocalAccount

from flare_chain.chain import CoordinatorClient, RoundStatus, SeatDraw, Submission, TxResult
from flare_chain.committee import sortition
from flare_chain.committee.aggregate import (
    AggregateResult,
    CheckedUpdate,
    Rejection,
    build_aggregate,
    check_submissions,
)
from flare_chain.compression import PowerSGDCompressor
from flare_chain.errors import ChainError, ConfigError
from flare_chain.ipfs import ContentStore, cid_from_bytes, cid_to_bytes
from flare_chain.lora.base import base_model_id, model_fingerprint
from flare_chain.lora.datasets import NodeData
from flare_chain.lora.evaluate import evaluate_loss, held_out_examples
from flare_chain.lora.examples import TokenExamples
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.targets import resolve_params
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.lora.train import train_lora
from flare_chain.node.bundles import MANIFEST_FILE, GlobalAdapter, fetch_global_bundle, pin_update_bundle
from flare_chain.protocol import RoundSchedule

__all__ = ["Participant", "Review", "SubmissionRecord"]

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
        store: ContentStore,
        show_progress: bool = True,
        compressor: PowerSGDCompressor | None = None,
    ) -> None:
        self.name = name
        self.account = account
        self.address: str = account.address
        self.model_dir = Path(model_dir)
        self.params = resolve_params(self.model_dir, params)
        """The node's LoRA params with the target modules resolved against its base (what manifests record)."""
        self.coordinator = coordinator
        self.store = store
        self.show_progress = show_progress
        self.compressor = compressor
        """Kept for the node's life: its error-feedback residual and warm starts carry from round to round."""
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
        return evaluate_loss(self.model_dir, adapter, self.val_windows, self.params)

    def check_targets(self, global_adapter: GlobalAdapter) -> None:
        """Refuse to train when this node's LoRA targets are not the global adapter's (the policy gate would
        reject the update): ConfigError naming both lists."""
        ours, theirs = list(self.params.targets), sorted(global_adapter.manifest.target_modules)
        if ours != theirs:
            raise ConfigError(
                f"{self.name}: LoRA target_modules {ours} (resolved against {self.model_dir}) differ from the global "
                f"adapter's {theirs}; set [training] target_modules to the federation's list"
            )

    def train_and_submit(self, round_id: int, global_adapter: GlobalAdapter) -> SubmissionRecord:
        """Train from the global adapter, pin the delta and send the one submission of this round."""
        self.check_targets(global_adapter)
        result = train_lora(self.model_dir, self._texts, self.params, start_adapter=global_adapter.tensors,
                            progress_desc=f"round {round_id} {self.name}", show_progress=self.show_progress)
        manifest = Manifest(
            kind="delta",
            base_model_id=global_adapter.manifest.base_model_id,
            base_model_sha256=model_fingerprint(self.model_dir),
            rank=self.params.rank,
            alpha=self.params.alpha,
            target_modules=list(self.params.targets),
            sample_count=result.sample_count,
            shapes=tensor_shapes(result.delta),
            metrics={k: float(v) for k, v in result.metrics.items() if k != "seconds"},
            round=round_id,
            node=self.address,
        )
        # The compressor advances when the bundle is encoded; if the submission then fails, the residual
        # it folded in was never sent, so the state goes back to what it was.
        saved = self.compressor.state_bytes() if self.compressor is not None else None
        try:
            cid, digest = pin_update_bundle(self.store, result.delta, manifest, compressor=self.compressor)
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

        The MI filter's probe windows come from the round's on-chain seed, fixed
        when the round opened, so every member draws the same probe.
        """
        seed = self.coordinator.round_info(round_id).seed
        return check_submissions(self.store, round_id, submissions, previous,
                                 model_dir=self.model_dir, params=self.params, probe_seed=seed,
                                 max_sample_count=self.coordinator.max_sample_count())

    def propose(self, round_id: int, previous: GlobalAdapter) -> tuple[AggregateResult, list[Rejection], TxResult]:
        """As leader: gate every submission, aggregate the survivors, pin and propose the result."""
        submissions = self.coordinator.submissions(round_id)
        accepted, rejected = self.gate_submissions(round_id, submissions, previous)
        if not accepted:
            raise ChainError(f"round {round_id}: no submission passed the gates ({len(rejected)} rejected); "
                             "nothing to propose, the round will fail at its proposal deadline")
        aggregate = build_aggregate(self.store, round_id, previous, accepted, self.model_dir, self.params,
                                    max_sample_count=self.coordinator.max_sample_count())
        tx = self.coordinator.propose_aggregate(self.account, round_id, cid_to_bytes(aggregate.cid),
                                                aggregate.accepted)
        log.info("round %d %s: proposed %s from %d updates (%d rejected, gas %d)", round_id, self.name,
                 aggregate.cid, len(accepted), len(rejected), tx.gas_used)
        return aggregate, rejected, tx

    def review(self, round_id: int, previous: GlobalAdapter, *, tolerance: float) -> tuple[bool, str, float, float | None]:
        """Recompute the proposal independently and judge it; returns (approve, reason, loss before, after).

        Approve only if the accepted set is exactly the submissions that pass
        the gates, the recomputed bundle has the proposed CID, and the new
        adapter's held-out loss on this node's data is no worse than the
        previous global's by more than ``tolerance`` (relative).
        """
        loss_before = self.evaluate(previous.tensors)
        proposal = self.coordinator.proposal(round_id)
        if proposal is None:
            return False, "no proposal on-chain", loss_before, None
        passing, _rejected = self.gate_submissions(round_id, self.coordinator.submissions(round_id), previous)
        passing_nodes = sorted(u.submission.node.lower() for u in passing)
        proposed_nodes = sorted(a.lower() for a in proposal.accepted)
        if passing_nodes != proposed_nodes:
            return False, f"accepted set {proposed_nodes} differs from the updates that pass the gates {passing_nodes}", \
                loss_before, None
        recomputed = build_aggregate(self.store, round_id, previous, passing, self.model_dir, self.params, pin=False,
                                     max_sample_count=self.coordinator.max_sample_count())
        proposed_cid = cid_from_bytes(proposal.global_cid)
        if recomputed.cid != proposed_cid:
            return False, f"recomputed aggregate is {recomputed.cid}, proposal says {proposed_cid}", loss_before, None
        loss_after = self.evaluate(recomputed.adapter)
        if loss_after > loss_before * (1 + tolerance):
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


def initial_global_manifest(
    model_dir: Path, params: LoraTrainParams, tensors: dict[str, torch.Tensor], *, probe_cid: str | None = None
) -> Manifest:
    """The manifest of the round-0 global adapter every node starts from.

    ``probe_cid`` names the federation's public probe corpus (see
    :mod:`flare_chain.lora.probe_corpus`); every later global manifest
    carries it on, and the committee's probe-loss gate runs only when it is set.
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
    )
