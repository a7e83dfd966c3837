"""Build a round's global adapter from the chain's record of it.

The leader, every committee member and (later) the auditor call the same
function on the same inputs: the previous global adapter, the round's
on-chain submissions and, for members, the proposal's accepted list. Each
update is fetched from IPFS (blocks verified against their CIDs), its
manifest checked against the on-chain hash, decoded (PowerSGD factors
decompressed), passed through the manifest policy gate and then the tensor
gate pipeline (:mod:`flare_chain.aggregation.pipeline`: tensor policy,
duplicates, norm and direction anomaly, mutual-information filter), and the
survivors are aggregated deterministically. Same inputs and gate settings,
same accepted set, same adapter bytes, same CID.

The MI filter needs a model to run the candidates: it is enabled when the
caller passes ``model_dir`` and ``params``. Its probe is ``probe`` when given,
else the first ``probe_windows`` of the round's probe-corpus windows (below)
when the federation has a corpus, else windows derived from ``probe_seed``
(the round's on-chain seed; see
:func:`~flare_chain.aggregation.mi_filter.seed_probe_windows`), else from the
round number alone, so every member derives the same probe without sharing
any data.

The probe-loss gate runs when, in addition, the previous global adapter's
manifest names a public probe corpus (``probe_cid``): the corpus is fetched
(verified against its CID) and the round's windows are drawn from it with
the same seed (:func:`~flare_chain.lora.probe_corpus.probe_windows`). A
records corpus (instruction or chat) is scored on its response tokens only,
at the federation's training ``seq_len``; a text corpus on every token of
``gates.probe_loss_seq_len``-token windows.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from flare_chain.aggregation import Aggregator, ClientUpdate, FedAvg, apply_delta
from flare_chain.aggregation.candidate_model import CandidateModel
from flare_chain.aggregation.exact_lora import (
    ExactLoraAggregator,
    ExactResult,
    approximation_gap,
    check_residual,
)
from flare_chain.aggregation.gates import policy_gate
from flare_chain.aggregation.mi_filter import model_predictor, seed_probe_windows
from flare_chain.aggregation.pipeline import GateSettings, Settle, build_gates, run_gates
from flare_chain.aggregation.privacy import l2_norm, local_dp_norm_bound
from flare_chain.chain import Submission
from flare_chain.committee.verdict import FollowLeader, SetVerdict
from flare_chain.errors import ConfigError, GateRejection, IntegrityError, StoreError, UpdateError
from flare_chain.ipfs import cid_from_bytes
from flare_chain.ipfs.content import PinningStore
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.lora.probe_corpus import probe_example_len, probe_windows
from flare_chain.lora.tokenizer import load_tokenizer
from flare_chain.node.bundles import (
    EXACT_RESIDUAL_FILE,
    GLOBAL_MANIFEST_FILE,
    GlobalAdapter,
    fetch_global_bundle,
    fetch_probe_corpus,
    fetch_update_bundle,
    pin_global_bundle,
)
from flare_chain.protocol.accepted import canonical_accepted
from flare_chain.protocol.spec import PrivacySpec

__all__ = ["AggregateResult", "CheckedUpdate", "Rejection", "Strategy", "aggregation_weight", "build_aggregate",
           "check_submissions", "reproduce_aggregate", "require_local_dp", "review_accepted_set"]


def aggregation_weight(sample_count: int, max_sample_count: int) -> int:
    """The FedAvg weight of an update: its sample count clipped to the deployment's cap.

    The contract refuses a submission above the cap, so on a sound chain this
    is the count itself; clipping here as well keeps one update from
    outweighing the rest when the cap was changed, read wrong, or a count
    reached the aggregator by another path.
    """
    if max_sample_count < 1:
        raise ConfigError(f"the sample-count cap must be at least 1, got {max_sample_count}; read maxSampleCount()")
    return min(int(sample_count), int(max_sample_count))

log = logging.getLogger("flare_chain.committee")


@dataclass(frozen=True)
class CheckedUpdate:
    """A submission whose bytes, manifest and policy all checked out."""

    submission: Submission
    delta: dict[str, torch.Tensor]
    manifest: Manifest


@dataclass(frozen=True)
class Rejection:
    """Why a submission was left out of the aggregate; ``gate`` names the check (``fetch`` for bytes)."""

    node: str
    cid: str
    reason: str
    gate: str = "fetch"


def check_submissions(
    store: PinningStore,
    round_id: int,
    submissions: Sequence[Submission],
    previous: GlobalAdapter,
    *,
    gates: GateSettings | None = None,
    model_dir: Path | None = None,
    params: LoraTrainParams | None = None,
    probe: torch.Tensor | None = None,
    probe_seed: bytes | int | None = None,
    privacy: PrivacySpec | None = None,
    device: str = "cpu",
    settle: Settle | None = None,
    max_sample_count: int | None = None,
) -> tuple[list[CheckedUpdate], list[Rejection]]:
    """Fetch and gate every submission, in node order; never raises for one bad update.

    ``max_sample_count`` (the contract's cap) clips the sample counts the
    weighted gates see, as ``build_aggregate`` does; None passes them as the
    chain recorded them (which the contract already bounds by the cap).
    ``gates`` selects and tunes the gates (default :class:`GateSettings`);
    every committee member must use the same settings. The MI filter runs
    when ``model_dir`` and ``params`` are given (see the module docstring for
    its probe); its model runs on ``device``. With ``privacy`` enabled, an update whose L2 norm exceeds
    what clipping plus the spec's noise allows is refused (gate ``privacy``). ``settle`` decides who leaves
    the round after each gate (default: whom the gate rejects; a reviewing
    member passes :class:`~flare_chain.committee.verdict.FollowLeader`).
    """
    settings = gates or GateSettings()
    fetched: list[CheckedUpdate] = []
    rejected: list[Rejection] = []
    for sub in sorted(submissions, key=lambda s: s.node.lower()):
        cid = "<unparseable>"
        try:
            cid = cid_from_bytes(sub.cid)
            delta, manifest = fetch_update_bundle(store, cid, sub.manifest_hash, expected_shapes=previous.shapes)
            policy_gate(manifest, previous.manifest, round_id=round_id, node=sub.node,
                        onchain_sample_count=sub.sample_count)
            if privacy is not None and privacy.enabled:
                require_local_dp(delta, privacy, round_id=round_id, node=sub.node)
        except (IntegrityError, StoreError, UpdateError) as exc:
            log.warning("round %d: leaving out %s's update %s: %s", round_id, sub.node, cid, exc)
            gate = exc.gate if isinstance(exc, GateRejection) else "fetch"
            rejected.append(Rejection(node=sub.node, cid=cid, reason=str(exc), gate=gate))
            continue
        fetched.append(CheckedUpdate(submission=sub, delta=delta, manifest=manifest))

    predictor, window_losses = None, None
    # Loading the model costs seconds; skip it when the model-based gates would pass everyone anyway.
    want_mi = settings.mutual_information and len(fetched) >= max(4, settings.min_candidates - 1)
    want_probe_loss = settings.probe_loss and len(fetched) >= settings.min_candidates
    probe_cid = previous.manifest.probe_cid if (want_probe_loss or want_mi) else None
    seed = probe_seed if probe_seed is not None else round_id
    if model_dir is not None and params is not None and (want_mi or (want_probe_loss and probe_cid)):
        model = CandidateModel(Path(model_dir), params, device=device)
        corpus = None
        if probe_cid is not None:
            published = fetch_probe_corpus(store, probe_cid)
            width = probe_example_len(published, window_len=settings.probe_loss_seq_len, train_seq_len=params.seq_len)
            corpus = probe_windows(published, seed, tokenizer=load_tokenizer(model_dir),
                                   count=settings.probe_loss_windows, seq_len=width)
        if want_mi:
            # On the task's public text a LoRA update moves the argmax; on random bytes it hardly does.
            windows = probe if probe is not None else (
                corpus.input_ids[: settings.probe_windows] if corpus is not None else
                seed_probe_windows(seed, count=settings.probe_windows, seq_len=settings.probe_seq_len))
            predictor = model_predictor(Path(model_dir), params, windows, model=model)
        if want_probe_loss and corpus is not None:
            probe_corpus = corpus

            def window_losses(adapter: Mapping[str, torch.Tensor]) -> np.ndarray:
                return model.window_losses(adapter, probe_corpus)
    by_node = {u.submission.node: u for u in fetched}
    outcome = run_gates(
        [ClientUpdate(node=u.submission.node, delta=u.delta,
                      sample_count=u.submission.sample_count if max_sample_count is None
                      else aggregation_weight(u.submission.sample_count, max_sample_count)) for u in fetched],
        previous.tensors, build_gates(settings, predictor=predictor, window_losses=window_losses), settle=settle,
    )
    for verdict in outcome.rejections:
        sub = by_node[verdict.node].submission
        cid = cid_from_bytes(sub.cid)
        log.warning("round %d: %s gate leaves out %s's update %s: %s", round_id, verdict.gate, sub.node, cid,
                    verdict.reason)
        rejected.append(Rejection(node=sub.node, cid=cid, reason=verdict.reason, gate=verdict.gate))
    accepted = [by_node[node] for node in outcome.accepted_nodes]
    rejected.sort(key=lambda r: r.node.lower())
    return accepted, rejected


def require_local_dp(delta: Mapping[str, torch.Tensor], privacy: PrivacySpec, *, round_id: int, node: str) -> None:
    """GateRejection when ``delta`` is larger than a clipped-and-noised update can honestly be."""
    dimension = sum(int(t.numel()) for t in delta.values())
    bound = local_dp_norm_bound(privacy.clip_norm, privacy.noise_multiplier, dimension)
    norm = l2_norm(delta)
    if norm > bound:
        reason = (f"update norm {norm:.4g} exceeds {bound:.4g}, the most a delta clipped to {privacy.clip_norm:g} "
                  f"with noise multiplier {privacy.noise_multiplier:g} can have")
        raise GateRejection(f"update from {node} for round {round_id} rejected by privacy gate: {reason}",
                            gate="privacy", reason=reason)
def review_accepted_set(
    store: PinningStore,
    round_id: int,
    submissions: Sequence[Submission],
    previous: GlobalAdapter,
    accepted: Sequence[str],
    *,
    gates: GateSettings | None = None,
    model_dir: Path | None = None,
    params: LoraTrainParams | None = None,
    probe_seed: bytes | int | None = None,
    device: str = "cpu",
    privacy: PrivacySpec | None = None,
    max_sample_count: int | None = None,
) -> tuple[SetVerdict, list[CheckedUpdate]]:
    """Judge a proposal's ``accepted`` set by the tolerance-band rule (:mod:`flare_chain.committee.verdict`).

    Runs the same fetch, policy and gates as :func:`check_submissions`,
    following ``accepted`` where a statistic lies within its band. Returns
    the verdict and, in node order, the checked updates of the accepted nodes
    this machine could fetch and decode (what the member aggregates when the
    set is defensible).
    """
    settings = gates or GateSettings()
    follower = FollowLeader(accepted, settings.bands)
    passing, rejected = check_submissions(store, round_id, submissions, previous, gates=settings,
                                          model_dir=model_dir, params=params, probe_seed=probe_seed, device=device,
                                          settle=follower, privacy=privacy, max_sample_count=max_sample_count)
    # Rejections the follower never saw came before the gates (bytes, manifest policy): exact, not banded.
    early = {r.node: f"{r.gate}: {r.reason}" for r in rejected if not follower.saw(r.node)}
    verdict = follower.verdict([u.submission.node for u in passing], early)
    chosen = {a.lower() for a in accepted}
    return verdict, [u for u in passing if u.submission.node.lower() in chosen]


@dataclass(frozen=True)
class AggregateResult:
    """The new global adapter, the CID its bundle has and, for ``exact_lora``, the residual pinned with it."""

    cid: str
    adapter: dict[str, torch.Tensor]
    manifest: Manifest
    accepted: list[str] = field(default_factory=list)
    residual: dict[str, torch.Tensor] | None = None
    """``exact_lora``: what rank r could not hold, carried in the bundle into the next round; else None."""


Strategy = Aggregator | ExactLoraAggregator
"""What a federation spec's aggregator builds: a delta aggregator, or exact LoRA (which returns whole adapters)."""


def _client_updates(updates: Sequence[CheckedUpdate], max_sample_count: int) -> list[ClientUpdate]:
    return [ClientUpdate(node=u.submission.node, delta=u.delta,
                         sample_count=aggregation_weight(u.submission.sample_count, max_sample_count))
            for u in updates]


def build_aggregate(
    store: PinningStore,
    round_id: int,
    previous: GlobalAdapter,
    updates: Sequence[CheckedUpdate],
    base_model_dir: Path,
    params: LoraTrainParams,
    *,
    max_sample_count: int,
    aggregator: Strategy | None = None,
    pin: bool = True,
) -> AggregateResult:
    """Aggregate ``updates`` onto ``previous`` and bundle the result (pinned, or only hashed).

    Each update weighs ``aggregation_weight(sample_count, max_sample_count)``:
    pass the coordinator's ``maxSampleCount()``. A delta aggregator's result
    is added to the previous adapter; :class:`ExactLoraAggregator` re-factors
    the exact mean of the products plus ``previous.residual`` and its new
    residual is pinned in the bundle (:data:`~flare_chain.node.bundles.EXACT_RESIDUAL_FILE`).
    """
    strategy = aggregator or FedAvg()
    clients = _client_updates(updates, max_sample_count)
    residual: dict[str, torch.Tensor] | None = None
    if isinstance(strategy, ExactLoraAggregator):
        exact = strategy.aggregate_adapters(previous.tensors, clients, previous.residual)
        adapter, residual = exact.adapter, exact.residual
    else:
        adapter = apply_delta(previous.tensors, strategy.aggregate(clients))
    accepted = canonical_accepted(u.submission.node for u in updates)
    manifest = previous.manifest.model_copy(update={
        "kind": "adapter",
        "round": round_id,
        "node": None,
        "sample_count": sum(c.sample_count for c in clients),
        "shapes": tensor_shapes(adapter),
        "metrics": {"accepted_updates": float(len(updates))},
        "accepted": accepted,  # published here; the proposal puts only its root and count on chain
    })
    cid = pin_global_bundle(store, adapter, manifest, base_model_dir, params, residual=residual, only_hash=not pin)
    return AggregateResult(cid=cid, adapter=adapter, manifest=manifest, accepted=accepted, residual=residual)


def reproduce_aggregate(
    store: PinningStore,
    round_id: int,
    previous: GlobalAdapter,
    updates: Sequence[CheckedUpdate],
    base_model_dir: Path,
    params: LoraTrainParams,
    *,
    proposed_cid: str,
    max_sample_count: int,
    aggregator: Strategy | None = None,
) -> tuple[AggregateResult, str | None]:
    """Rebuild a proposed aggregate and judge it: ``(rebuilt, None)`` when it stands, else the reason it does not.

    What members (``Participant.review``) and the auditor (``aggregate-cid``)
    both call. A delta aggregator's result is the same bytes on every CPU
    (elementwise float64 in node order), so its CID must match. Exact LoRA
    runs SVDs, whose signs, rotations inside near-equal singular values and
    last bits depend on the CPU's LAPACK, so for it a different CID still
    stands when the proposed bundle is the canonical encoding of its own
    contents (no extra or altered file), its manifest is the rebuilt one,
    its residual keeps within the spec's rank bound, and its adapter and
    residual approximate the exact mean as well as the rebuilt ones, within
    the spec's tolerance (:func:`~flare_chain.aggregation.exact_lora.approximation_gap`).
    """
    strategy = aggregator or FedAvg()
    rebuilt = build_aggregate(store, round_id, previous, updates, base_model_dir, params, pin=False,
                              max_sample_count=max_sample_count, aggregator=strategy)
    if rebuilt.cid == proposed_cid:
        return rebuilt, None
    differs = f"recomputed aggregate is {rebuilt.cid}, proposal says {proposed_cid}"
    if not isinstance(strategy, ExactLoraAggregator):
        return rebuilt, differs
    try:
        proposal = fetch_global_bundle(store, proposed_cid)
    except (IntegrityError, StoreError, UpdateError) as exc:
        return rebuilt, f"{differs}, and the proposed bundle cannot be read: {exc}"
    if proposal.manifest != rebuilt.manifest:
        return rebuilt, f"{differs}: its {GLOBAL_MANIFEST_FILE} differs from the rebuilt one"
    if not proposal.residual:
        return rebuilt, f"{differs}: it carries no {EXACT_RESIDUAL_FILE}"
    try:
        canonical = pin_global_bundle(store, proposal.tensors, proposal.manifest, base_model_dir, params,
                                      residual=proposal.residual, only_hash=True)
        check_residual(proposal.tensors, proposal.residual, max_rank=strategy.max_residual_rank)
    except UpdateError as exc:
        return rebuilt, f"{differs}: {exc}"
    if canonical != proposed_cid:
        return rebuilt, f"{differs}: the bundle is not the canonical encoding of its contents ({canonical})"
    assert rebuilt.residual is not None
    own = ExactResult(adapter=rebuilt.adapter, residual=rebuilt.residual)
    module, gap = approximation_gap(previous.tensors, _client_updates(updates, max_sample_count), previous.residual,
                                    own, proposal.tensors, proposal.residual)
    if gap > strategy.tolerance:
        return rebuilt, (f"{differs}: its {module or 'adapter'} approximates the exact mean worse than the rebuilt "
                         f"one by {gap:.3g} of its squared norm (tolerance {strategy.tolerance:g})")
    return rebuilt, None
