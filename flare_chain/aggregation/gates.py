"""Gates an update must pass before it is aggregated.

The policy gate checks that an update is what the round asked for: the same
base model, LoRA rank, alpha, target modules and tensor shapes as the global
adapter, made for this round by the node that submitted it, with the sample
count it declared on-chain. Every rejection carries the gate's name and a
reason that is recorded, so a committee member or an auditor that re-runs the
gates on the same inputs reaches the same accepted set.
"""

from __future__ import annotations

from flare_chain.errors import GateRejection
from flare_chain.lora.files import Manifest

__all__ = ["policy_gate"]


def policy_gate(
    update: Manifest, reference: Manifest, *, round_id: int, node: str, onchain_sample_count: int
) -> None:
    """Raise GateRejection naming the first field where ``update`` departs from ``reference``."""

    def reject(reason: str) -> None:
        raise GateRejection(f"update from {node} for round {round_id} rejected by policy gate: {reason}",
                            gate="policy", reason=reason)

    if update.kind != "delta":
        reject(f"manifest kind is {update.kind!r}, expected 'delta'")
    if update.base_model_sha256 != reference.base_model_sha256:
        reject(f"trained on base model {update.base_model_sha256[:12]}…, the round uses "
               f"{reference.base_model_sha256[:12]}…")
    for field in ("rank", "alpha", "target_modules"):
        if getattr(update, field) != getattr(reference, field):
            reject(f"{field} is {getattr(update, field)!r}, the global adapter has {getattr(reference, field)!r}")
    if update.shapes != reference.shapes:
        reject("tensor names or shapes differ from the global adapter's")
    if update.round != round_id:
        reject(f"manifest says round {update.round}")
    if (update.node or "").lower() != node.lower():
        reject(f"manifest names node {update.node!r}, but {node} submitted it")
    if update.sample_count != onchain_sample_count:
        reject(f"manifest claims {update.sample_count} samples, the chain records {onchain_sample_count}")
