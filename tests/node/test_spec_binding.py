"""A node follows the spec its coordinator names and refuses its own settings where they differ."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.errors import ConfigError, SpecMismatch
from flare_chain.ipfs import ContentStore, cid_to_bytes
from flare_chain.node.spec_binding import bind_spec
from flare_chain.protocol import spec as spec_module
from flare_chain.protocol.spec import (
    RULES_VERSION,
    AggregatorSpec,
    CommitteeSpec,
    FederationSpec,
    pin_spec,
    spec_cid,
)

SPEC = FederationSpec(name="bound", aggregator=AggregatorSpec(name="median"),
                      committee=CommitteeSpec(vote_tolerance=0.01))


@pytest.fixture
def pinned(tmp_path: Path) -> tuple[ContentStore, bytes]:
    store = ContentStore(tmp_path / "repo")
    return store, cid_to_bytes(pin_spec(store, SPEC))


def test_a_node_adopts_the_pinned_spec(pinned) -> None:
    store, onchain = pinned
    bound = bind_spec(onchain, store, expected_cid=None, training={"num_threads": 1}, vote_tolerance=None)
    assert bound.spec == SPEC and bound.cid == spec_cid(SPEC)
    params = bound.train_params({"num_threads": 1})
    assert params.num_threads == 1 and params.rank == SPEC.lora.rank  # local-only key kept, the rest from the spec


def test_settings_equal_to_the_spec_are_accepted(pinned) -> None:
    store, onchain = pinned
    bound = bind_spec(onchain, store, expected_cid=spec_cid(SPEC), training={"rank": SPEC.lora.rank},
                      vote_tolerance=0.01)
    assert bound.spec == SPEC


@pytest.mark.parametrize(("expected_cid", "training", "tolerance", "message"), [
    ("bafkreiaaaa", {}, None, r"expects federation spec bafkreiaaaa, but the coordinator fixed"),
    (None, {"rank": 4}, None, r"training\.rank = 4, but federation spec .* sets lora\.rank = 8; remove the key"),
    (None, {"learning_rate": 0.1}, None, r"training\.learning_rate"),
    (None, {}, 0.05, r"committee\.vote_tolerance = 0\.05, but federation spec .* sets .* = 0\.01"),
])
def test_a_differing_local_setting_stops_the_node(pinned, expected_cid, training, tolerance, message: str) -> None:
    store, onchain = pinned
    with pytest.raises(SpecMismatch, match=message):
        bind_spec(onchain, store, expected_cid=expected_cid, training=training, vote_tolerance=tolerance)


def test_no_spec_on_chain_keeps_the_node_config(tmp_path: Path) -> None:
    store = ContentStore(tmp_path / "repo")
    bound = bind_spec(b"", store, expected_cid=None, training={"rank": 4}, vote_tolerance=None)
    assert bound.cid is None and bound.spec.lora.rank == 4
    with pytest.raises(SpecMismatch, match="coordinator has none set"):
        bind_spec(b"", store, expected_cid=spec_cid(SPEC), training={}, vote_tolerance=None)


def test_a_node_keeps_its_own_seed_and_thread_count(pinned) -> None:
    """Per-node keys: a node on seed 3 joins a spec written with seed 0 and trains with seed 3."""
    store, onchain = pinned
    local = {"seed": SPEC.lora.seed + 3, "num_threads": 2}
    bound = bind_spec(onchain, store, expected_cid=None, training=local, vote_tolerance=None)
    params = bound.train_params(local)
    assert (params.seed, params.num_threads) == (SPEC.lora.seed + 3, 2)
    assert params.model_copy(update={"seed": SPEC.lora.seed, "num_threads": SPEC.lora.num_threads}) == SPEC.lora


def test_a_node_on_other_verdict_rules_refuses_the_federations_spec(pinned, monkeypatch: pytest.MonkeyPatch) -> None:
    # Prepare: this node runs a later release whose gate rules moved on
    store, onchain = pinned
    monkeypatch.setattr(spec_module, "RULES_VERSION", RULES_VERSION + 1)
    # Act / Assert: it stops at binding, before it trains or judges anything, and says what to run
    with pytest.raises(ConfigError, match=rf"written for verdict rules version {RULES_VERSION}; this build "
                                          rf"implements version {RULES_VERSION + 1}.*a release that implements"):
        bind_spec(onchain, store, expected_cid=None, training={}, vote_tolerance=None)
