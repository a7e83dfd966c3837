"""Gates an update must pass before it is aggregated, and the interface they share.

Two kinds of check live here. :func:`policy_gate` looks at an update's
*manifest*: the same base model, LoRA rank, alpha, target modules and tensor
shapes as the global adapter, every tensor on a layer its target modules select, made for this round by the node that submitted
it, with the sample count it declared on-chain. :class:`TensorPolicyGate`
looks at the decoded *tensors*: names, shapes, dtype, size bounds and finite
values. Both reject with a reason that is recorded.

Every gate implements :class:`Gate`: it screens a whole set of candidate
updates at once (anomaly gates need the others to judge one) and returns a
reason per rejected node. Gates are pure and deterministic: candidates are
seen in canonical node order and every statistic is computed in float64, so a
committee member or an auditor that re-runs the gates on the same inputs
reaches the same accepted set. :mod:`flare_chain.aggregation.pipeline` chains
them.

Statistical gates also say what each decision rests on
(:meth:`Gate.assess`): a :class:`GateDecision` per candidate listing the
:class:`Comparison` s (statistic, value, threshold, which side rejects). A
member computing on another CPU or device gets the same statistics up to the
last bits, so it judges the leader's accepted set by those comparisons with a
tolerance band (:mod:`flare_chain.aggregation.tolerance`,
:mod:`flare_chain.committee.verdict`), not by re-deriving the set bit for bit.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch

from flare_chain.aggregation.base import ClientUpdate
from flare_chain.errors import ConfigError, GateRejection
from flare_chain.ipfs.multiformats import parse_cid
from flare_chain.lora.files import Manifest

__all__ = [
    "Comparison",
    "Gate",
    "GateContext",
    "GateDecision",
    "TensorPolicyGate",
    "base_model_mismatch",
    "policy_gate",
    "reasons_of",
]


def policy_gate(
    update: Manifest, reference: Manifest, *, round_id: int, node: str, onchain_sample_count: int
) -> None:
    """Raise GateRejection naming the first field where ``update`` departs from ``reference``."""

    def reject(reason: str) -> None:
        raise GateRejection(f"update from {node} for round {round_id} rejected by policy gate: {reason}",
                            gate="policy", reason=reason)

    if update.kind != "delta":
        reject(f"manifest kind is {update.kind!r}, expected 'delta'")
    base_reason = base_model_mismatch(update, reference)
    if base_reason is not None:
        reject(base_reason)
    for field in ("rank", "alpha", "target_modules"):
        if getattr(update, field) != getattr(reference, field):
            reject(f"{field} is {getattr(update, field)!r}, the global adapter has {getattr(reference, field)!r}")
    if update.shapes != reference.shapes:
        reject("tensor names or shapes differ from the global adapter's")
    untargeted = untargeted_tensor(update)
    if untargeted is not None:
        reject(f"tensor {untargeted!r} adapts a layer outside target_modules {update.target_modules!r}")
    if update.round != round_id:
        reject(f"manifest says round {update.round}")
    if (update.node or "").lower() != node.lower():
        reject(f"manifest names node {update.node!r}, but {node} submitted it")
    if update.sample_count != onchain_sample_count:
        reject(f"manifest claims {update.sample_count} samples, the chain records {onchain_sample_count}")


def base_model_mismatch(update: Manifest, reference: Manifest) -> str | None:
    """Why ``update`` was not trained on ``reference``'s base model, or None when it was.

    When the federation names its base by CID (``reference.base_model_cid``),
    the CID is the identity: it covers weights, config and tokenizer, so an
    update must name the same one. The weights' sha256 must agree in every
    case (a manifest naming the right CID with other weights contradicts itself).
    """
    if reference.base_model_cid is not None:
        if update.base_model_cid is None:
            return f"names no base model CID, the federation's base model is {reference.base_model_cid}"
        if parse_cid(update.base_model_cid) != parse_cid(reference.base_model_cid):
            return f"trained on base model {update.base_model_cid}, the federation's is {reference.base_model_cid}"
    if update.base_model_sha256 != reference.base_model_sha256:
        return (f"trained on base model weights {update.base_model_sha256[:12]}…, the round uses "
                f"{reference.base_model_sha256[:12]}…")
    return None


def untargeted_tensor(manifest: Manifest) -> str | None:
    """The first tensor of ``manifest`` whose layer no name in its ``target_modules`` selects, else None.

    PEFT's rule (a target is a layer name or a dotted suffix of it) decides, so
    the targets a manifest records are the ones its tensors were trained on.
    """
    for key in sorted(manifest.shapes):
        layer = key.split(".lora_", 1)[0]
        if not any(layer == t or layer.endswith("." + t) for t in manifest.target_modules):
            return key
    return None


@dataclass(frozen=True)
class GateContext:
    """What every gate may compare a candidate with: the current global adapter's tensors."""

    global_tensors: Mapping[str, torch.Tensor]

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: tuple(v.shape) for k, v in sorted(self.global_tensors.items())}

    def candidate(self, delta: Mapping[str, torch.Tensor], sign: float = 1.0) -> dict[str, torch.Tensor]:
        """The adapter ``global + sign·delta`` (summed in float64, float32 out), for gates that run the model."""
        return {k: (self.global_tensors[k].to(torch.float64) + sign * delta[k].to(torch.float64)).to(torch.float32)
                for k in sorted(self.global_tensors)}


@dataclass(frozen=True)
class Comparison:
    """One threshold test a gate's decision rests on.

    ``statistic`` names the kind of number (``"norm_z"``, ``"probe_z"``, …;
    the tolerance band is chosen by it), ``value`` is what this machine
    computed, ``threshold`` what it was compared with, and ``rejects`` whether
    ``value`` lies on the side that votes for rejection. The gate sets
    ``rejects`` itself, so the comparison's direction (``>``, ``≥``, ``<``,
    two-sided) is written once, in the gate.
    """

    statistic: str
    value: float
    threshold: float
    rejects: bool


@dataclass(frozen=True)
class GateDecision:
    """One gate's decision on one candidate: ``reason`` when rejected (None when passed).

    With ``comparisons`` the candidate is rejected exactly when every one of
    them is on its rejecting side (a gate's conditions are a conjunction: a
    round-wide precondition, then the candidate's own statistic). Without any,
    the decision is exact (policy, duplicates, a count too small for
    statistics) and every machine reaches it bit for bit.
    """

    gate: str
    node: str
    reason: str | None
    comparisons: tuple[Comparison, ...] = ()

    @property
    def rejected(self) -> bool:
        return self.reason is not None


def reasons_of(decisions: Sequence[GateDecision]) -> dict[str, str]:
    """``{node: reason}`` of the rejecting decisions (what :meth:`Gate.screen` returns)."""
    return {d.node: d.reason for d in decisions if d.reason is not None}


class Gate(ABC):
    """Screens a round's candidate updates; returns ``{node: reason}`` for each one it rejects.

    ``candidates`` arrive in canonical node order and have passed every
    earlier gate. A gate must not depend on anything but its inputs and its
    settings (no clock, no randomness), so its verdicts can be reproduced.
    """

    name: str = "abstract"

    @abstractmethod
    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        """Reasons for the candidates this gate rejects, keyed by node; empty when all pass."""

    def assess(self, candidates: Sequence[ClientUpdate], context: GateContext) -> list[GateDecision]:
        """Every candidate's decision with the comparisons it rests on, in candidate order.

        The default wraps :meth:`screen` into exact decisions (no
        comparisons); gates whose decisions compare a float statistic with a
        threshold override it and derive :meth:`screen` from it.
        """
        reasons = self.screen(candidates, context)
        return [GateDecision(gate=self.name, node=u.node, reason=reasons.get(u.node)) for u in candidates]


_ALLOWED_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


class TensorPolicyGate(Gate):
    """Names, shapes, dtype, size bounds and finite values of each update's tensors.

    ``max_update_bytes`` bounds the decoded update (an update the size of the
    adapter is expected; a much larger one is a resource attack);
    ``max_abs_value`` bounds every entry (None: no bound) — LoRA deltas of one
    round are small, so a huge entry is a scaling attack or an overflow.
    """

    name = "policy"

    def __init__(self, *, max_update_bytes: int = 256 * 2**20, max_abs_value: float | None = None) -> None:
        if max_update_bytes < 1:
            raise ConfigError(f"max_update_bytes must be >= 1, got {max_update_bytes}")
        if max_abs_value is not None and not max_abs_value > 0:
            raise ConfigError(f"max_abs_value must be > 0 or None, got {max_abs_value}")
        self.max_update_bytes = int(max_update_bytes)
        self.max_abs_value = max_abs_value

    def check(self, update: ClientUpdate, context: GateContext) -> str | None:
        """The reason ``update`` fails, or None."""
        expected = context.shapes
        got = set(update.delta)
        missing = sorted(set(expected) - got)
        extra = sorted(got - set(expected))
        if missing:
            return f"missing tensor {missing[0]!r} ({len(missing)} missing in all)"
        if extra:
            return f"unexpected tensor {extra[0]!r} ({len(extra)} extra in all)"
        if update.sample_count <= 0:
            return f"claims {update.sample_count} samples; must be > 0"
        size = 0
        for key in sorted(expected):
            t = update.delta[key]
            if t.dtype not in _ALLOWED_DTYPES:
                return f"tensor {key!r} has dtype {t.dtype}; updates must be float32, float16 or bfloat16"
            if tuple(t.shape) != expected[key]:
                return f"tensor {key!r} has shape {tuple(t.shape)}, the global adapter has {expected[key]}"
            size += t.numel() * t.element_size()
        if size > self.max_update_bytes:
            return f"update holds {size} bytes, over the bound of {self.max_update_bytes}"
        for key in sorted(expected):
            t = update.delta[key]
            if bool(torch.isnan(t).any()):
                return f"tensor {key!r} contains NaN"
            if bool(torch.isinf(t).any()):
                return f"tensor {key!r} contains Inf"
            if self.max_abs_value is not None and t.numel():
                peak = float(t.abs().max())
                if peak > self.max_abs_value:
                    return f"tensor {key!r} has an entry of magnitude {peak:.3g}, over the bound {self.max_abs_value:g}"
        return None

    def screen(self, candidates: Sequence[ClientUpdate], context: GateContext) -> dict[str, str]:
        out: dict[str, str] = {}
        for update in candidates:
            reason = self.check(update, context)
            if reason is not None:
                out[update.node] = reason
        return out
