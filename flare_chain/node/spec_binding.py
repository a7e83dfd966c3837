"""Bind a node to its federation's spec: adopt the pinned one, refuse a local copy that differs.

A member whose gate threshold, aggregator or LoRA setting differs from the
others' recomputes a different aggregate and votes against an honest leader.
So when the coordinator names a spec CID the node loads that spec (bytes
verified against the CID) and takes every protocol parameter from it. Its
own config may still set them, but only to the spec's values: a key that
disagrees stops the node with one line naming the key, both values and the
fix, before it trains, pins or sends anything.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from flare_chain.errors import SpecMismatch
from flare_chain.ipfs import cid_from_bytes
from flare_chain.lora.params import LoraTrainParams
from flare_chain.protocol.spec import FederationSpec, SpecStore, fetch_spec

__all__ = ["LOCAL_TRAINING_KEYS", "BoundSpec", "bind_spec", "require_config_agrees"]

log = logging.getLogger("flare_chain.node")

LOCAL_TRAINING_KEYS: frozenset[str] = frozenset({"num_threads", "seed"})
"""Training keys that are each node's own business, never what the committee or the auditor recomputes:
the thread count (speed only) and the seed (how the node splits and shuffles its own data; members judge a
proposal in eval mode, where it changes nothing). Federations give each node its own seed (the demo adds the
node's index, the devnet templates set 0..3), so binding it to one value would refuse all but one node."""


class BoundSpec:
    """The spec a node follows, and where it came from (``cid`` None: no spec on-chain, defaults)."""

    def __init__(self, spec: FederationSpec, cid: str | None) -> None:
        self.spec = spec
        self.cid = cid

    def train_params(self, training: Mapping[str, Any]) -> LoraTrainParams:
        """The spec's LoRA params, with the node's local-only keys (thread count) applied."""
        local = {k: v for k, v in training.items() if k in LOCAL_TRAINING_KEYS}
        return self.spec.lora.model_copy(update=local) if local else self.spec.lora


def bind_spec(
    onchain_cid: bytes,
    store: SpecStore,
    *,
    expected_cid: str | None,
    training: Mapping[str, Any],
    vote_tolerance: float | None,
) -> BoundSpec:
    """The spec this node must follow; SpecMismatch when its own settings disagree with it.

    ``expected_cid`` is the node config's ``chain.spec_cid`` (None: adopt what
    the coordinator names); ``training`` the config's explicit ``[training]``
    keys; ``vote_tolerance`` the config's value when set explicitly.
    """
    if not onchain_cid:
        if expected_cid is not None:
            raise SpecMismatch(f"the node config expects federation spec {expected_cid}, but the coordinator has "
                               "none set; point the node at the right deployment or remove chain.spec_cid")
        return BoundSpec(FederationSpec(lora=LoraTrainParams.from_mapping(dict(training))), None)
    cid = cid_from_bytes(onchain_cid)
    if expected_cid is not None and expected_cid != cid:
        raise SpecMismatch(f"the node config expects federation spec {expected_cid}, but the coordinator fixed "
                           f"{cid}; set chain.spec_cid = \"{cid}\" (check it with `flare-chain spec show {cid}`) "
                           "or point the node at the federation it meant to join")
    spec = fetch_spec(store, cid)
    require_config_agrees(spec, cid, training=training, vote_tolerance=vote_tolerance)
    log.info("following federation spec %s (%s; aggregator %s)", cid, spec.name, spec.aggregator.describe())
    return BoundSpec(spec, cid)


def require_config_agrees(
    spec: FederationSpec, cid: str, *, training: Mapping[str, Any], vote_tolerance: float | None,
) -> None:
    """SpecMismatch naming the first node setting that contradicts ``spec`` (pinned as ``cid``).

    The daemon calls it when it binds; the devnet calls it on every node config
    before it deploys, so a spec its nodes would refuse stops the start instead.
    """
    for key, value in sorted(training.items()):
        if key in LOCAL_TRAINING_KEYS:
            continue
        expected = getattr(spec.lora, key, None)
        given = getattr(LoraTrainParams.from_mapping({key: value}), key)
        if given != expected:
            raise SpecMismatch(f"node config training.{key} = {value!r}, but federation spec {cid} sets lora.{key} "
                               f"= {expected!r}; remove the key from [training] (the spec decides it)")
    if vote_tolerance is not None and vote_tolerance != spec.committee.vote_tolerance:
        raise SpecMismatch(f"node config committee.vote_tolerance = {vote_tolerance!r}, but federation spec {cid} "
                           f"sets committee.vote_tolerance = {spec.committee.vote_tolerance!r}; remove the key")
