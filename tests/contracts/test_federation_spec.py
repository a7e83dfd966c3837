"""setFederationSpec: the owner fixes the spec's CID once, before the first round, with an event."""

from __future__ import annotations

from flare_chain.errors import ChainError


def test_the_owner_sets_the_spec_once_with_an_event(network, reverts) -> None:
    coordinator, owner = network.coordinator, network.owner
    assert coordinator.federation_spec_cid() == b""
    spec = network.cid("spec")
    tx = coordinator.set_federation_spec(owner, spec)
    assert coordinator.federation_spec_cid() == spec
    events = coordinator.contract.events.FederationSpecSet().process_receipt(
        network.w3.eth.get_transaction_receipt(tx.tx_hash))
    assert [bytes(e["args"]["cid"]) for e in events] == [spec]
    with reverts("CoordinatorFederationSpecAlreadySet", spec):
        coordinator.set_federation_spec(owner, network.cid("another spec"))
    assert coordinator.federation_spec_cid() == spec


def test_only_the_owner_and_only_before_round_one(network, reverts) -> None:
    coordinator = network.coordinator
    try:
        coordinator.set_federation_spec(network.validators[0], network.cid("spec"))
        raise AssertionError("a non-owner set the spec")
    except ChainError as exc:
        assert exc.error_name == "OwnableUnauthorizedAccount", str(exc)
    round_id = network.open_round()
    with reverts("CoordinatorFederationSpecAfterFirstRound", round_id):
        coordinator.set_federation_spec(network.owner, network.cid("spec"))
    assert coordinator.federation_spec_cid() == b""


def test_a_cid_of_the_wrong_length_is_refused(network, reverts) -> None:
    with reverts("CoordinatorInvalidCidLength", 1, 2, 64):
        network.coordinator.set_federation_spec(network.owner, b"\x01")
