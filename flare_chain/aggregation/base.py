"""The one interface every aggregation strategy implements.

A strategy turns the accepted updates of a round into one delta. It is pure:
tensors in, tensors out, no chain, no IPFS, no clock. Determinism is part of
the contract: committee members recompute the aggregate independently and
compare its content identifier with the leader's proposal, so the same updates
must give the same bytes regardless of the order they arrive in.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from flare_chain.errors import UpdateError

__all__ = ["Aggregator", "ClientUpdate", "apply_delta", "canonical_order", "check_compatible"]


@dataclass(frozen=True)
class ClientUpdate:
    """One node's contribution to a round: its delta and how many samples it saw."""

    node: str
    delta: Mapping[str, torch.Tensor]
    sample_count: int


def canonical_order(updates: Sequence[ClientUpdate]) -> list[ClientUpdate]:
    """Sort updates by node address (case-insensitive) so arrival order never matters."""
    nodes = [u.node.lower() for u in updates]
    if len(set(nodes)) != len(nodes):
        raise UpdateError("two updates come from the same node; a node may contribute once per round")
    return sorted(updates, key=lambda u: u.node.lower())


def check_compatible(updates: Sequence[ClientUpdate]) -> None:
    """Refuse to aggregate updates whose tensor names or shapes disagree."""
    if not updates:
        raise UpdateError("no updates to aggregate; a round needs at least one accepted update")
    reference = updates[0]
    ref_shapes = {k: tuple(v.shape) for k, v in reference.delta.items()}
    for update in updates:
        if update.sample_count <= 0:
            raise UpdateError(f"update from {update.node} claims {update.sample_count} samples; must be > 0")
        shapes = {k: tuple(v.shape) for k, v in update.delta.items()}
        if shapes.keys() != ref_shapes.keys():
            missing = sorted(ref_shapes.keys() - shapes.keys())
            extra = sorted(shapes.keys() - ref_shapes.keys())
            raise UpdateError(
                f"update from {update.node} has different tensors than {reference.node} "
                f"(missing {missing[:3]}, extra {extra[:3]}); all nodes must train the same LoRA targets"
            )
        for key, shape in shapes.items():
            if shape != ref_shapes[key]:
                raise UpdateError(
                    f"update from {update.node}: tensor {key} has shape {shape}, expected {ref_shapes[key]}"
                )
            if not torch.isfinite(update.delta[key]).all():
                raise UpdateError(f"update from {update.node}: tensor {key} contains NaN or Inf")


def apply_delta(base: Mapping[str, torch.Tensor], delta: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Return ``base + delta`` key by key, in the base tensors' dtype and key order."""
    if base.keys() != delta.keys():
        missing = sorted(base.keys() - delta.keys())
        extra = sorted(delta.keys() - base.keys())
        raise UpdateError(f"aggregate does not match the global adapter (missing {missing[:3]}, extra {extra[:3]})")
    out: dict[str, torch.Tensor] = {}
    for key in sorted(base):
        b = base[key]
        if tuple(b.shape) != tuple(delta[key].shape):
            raise UpdateError(f"aggregate tensor {key} has shape {tuple(delta[key].shape)}, global has {tuple(b.shape)}")
        out[key] = (b.to(torch.float64) + delta[key].to(torch.float64)).to(b.dtype).contiguous()
    return out


class Aggregator(ABC):
    """Combine accepted deltas into one delta. Subclasses change only ``combine``."""

    name: str = "abstract"

    def aggregate(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        """Validate, order canonically, and combine; the result is float32, keys sorted."""
        ordered = canonical_order(updates)
        check_compatible(ordered)
        combined = self.combine(ordered)
        return {k: combined[k].to(torch.float32).contiguous() for k in sorted(combined)}

    @abstractmethod
    def combine(self, updates: Sequence[ClientUpdate]) -> dict[str, torch.Tensor]:
        """Combine updates already validated and in canonical order."""
