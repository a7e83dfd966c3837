"""Build a round's global adapter from the chain's record of it.

The leader, every committee member and (later) the auditor call the same
function on the same inputs: the previous global adapter, the round's
on-chain submissions and, for members, the proposal's accepted list. Each
update is fetched from IPFS (blocks verified against their CIDs), its
manifest checked against the on-chain hash, decoded, passed through the
gates, and the survivors are aggregated deterministically. Same inputs, same
adapter bytes, same CID.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from flare_chain.aggregation import Aggregator, ClientUpdate, FedAvg, apply_delta
from flare_chain.aggregation.gates import policy_gate
from flare_chain.chain import Submission
from flare_chain.errors import IntegrityError, StoreError, UpdateError
from flare_chain.ipfs import ContentStore, cid_from_bytes
from flare_chain.lora.files import Manifest, tensor_shapes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.node.bundles import GlobalAdapter, fetch_update_bundle, pin_global_bundle

__all__ = ["AggregateResult", "CheckedUpdate", "Rejection", "build_aggregate", "check_submissions"]

log = logging.getLogger("flare_chain.committee")


@dataclass(frozen=True)
class CheckedUpdate:
    """A submission whose bytes, manifest and policy all checked out."""

    submission: Submission
    delta: dict[str, torch.Tensor]
    manifest: Manifest


@dataclass(frozen=True)
class Rejection:
    """Why a submission was left out of the aggregate."""

    node: str
    cid: str
    reason: str


def check_submissions(
    store: ContentStore, round_id: int, submissions: Sequence[Submission], previous: GlobalAdapter
) -> tuple[list[CheckedUpdate], list[Rejection]]:
    """Fetch and gate every submission, in node order; never raises for one bad update."""
    accepted: list[CheckedUpdate] = []
    rejected: list[Rejection] = []
    for sub in sorted(submissions, key=lambda s: s.node.lower()):
        cid = "<unparseable>"
        try:
            cid = cid_from_bytes(sub.cid)
            delta, manifest = fetch_update_bundle(store, cid, sub.manifest_hash, expected_shapes=previous.shapes)
            policy_gate(manifest, previous.manifest, round_id=round_id, node=sub.node,
                        onchain_sample_count=sub.sample_count)
        except (IntegrityError, StoreError, UpdateError) as exc:
            log.warning("round %d: leaving out %s's update %s: %s", round_id, sub.node, cid, exc)
            rejected.append(Rejection(node=sub.node, cid=cid, reason=str(exc)))
            continue
        accepted.append(CheckedUpdate(submission=sub, delta=delta, manifest=manifest))
    return accepted, rejected


@dataclass(frozen=True)
class AggregateResult:
    """The new global adapter and the CID its bundle has."""

    cid: str
    adapter: dict[str, torch.Tensor]
    manifest: Manifest
    accepted: list[str] = field(default_factory=list)


def build_aggregate(
    store: ContentStore,
    round_id: int,
    previous: GlobalAdapter,
    updates: Sequence[CheckedUpdate],
    base_model_dir: Path,
    params: LoraTrainParams,
    *,
    aggregator: Aggregator | None = None,
    pin: bool = True,
) -> AggregateResult:
    """Aggregate ``updates`` onto ``previous`` and bundle the result (pinned, or only hashed)."""
    strategy = aggregator or FedAvg()
    combined = strategy.aggregate(
        [ClientUpdate(node=u.submission.node, delta=u.delta, sample_count=u.submission.sample_count) for u in updates]
    )
    adapter = apply_delta(previous.tensors, combined)
    manifest = previous.manifest.model_copy(update={
        "kind": "adapter",
        "round": round_id,
        "node": None,
        "sample_count": sum(u.submission.sample_count for u in updates),
        "shapes": tensor_shapes(adapter),
        "metrics": {"accepted_updates": float(len(updates))},
    })
    cid = pin_global_bundle(store, adapter, manifest, base_model_dir, params, only_hash=not pin)
    return AggregateResult(cid=cid, adapter=adapter, manifest=manifest,
                           accepted=sorted(u.submission.node for u in updates))
