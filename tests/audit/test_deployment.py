"""The auditor reads the deploy step's record or a minimal file, and names what is wrong with a bad one."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import Web3

from flare_chain.audit import load_target
from flare_chain.chain import deploy_coordinator, fund_accounts
from flare_chain.chain.artifacts import load_artifact
from flare_chain.chain.deployment import ConstructorParams, Deployment, artifact_hashes, write_deployment
from flare_chain.chain.tester_backend import audit_ready_chain
from flare_chain.errors import ConfigError

ADDRESS = "0x" + "ab" * 20


def test_minimal_file_and_its_aliases(tmp_path) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"chain_id": 31337, "address": ADDRESS, "block": 12}))
    assert load_target(path).block == 12
    path.write_text(json.dumps({"chain_id": 5, "coordinator": ADDRESS, "deployment_block": "0x10"}))
    target = load_target(path)
    assert (target.chain_id, target.block, target.address.lower()) == (5, 16, ADDRESS)


@pytest.mark.parametrize("doc, key", [({"chain_id": 1, "block": 1}, "address"),
                                      ({"chain_id": 1, "address": ADDRESS, "block": -1}, "block")])
def test_bad_file_names_the_key(tmp_path, doc, key) -> None:
    path = tmp_path / "d.json"
    path.write_text(json.dumps(doc))
    with pytest.raises(ConfigError, match=key):
        load_target(path)


def test_deploy_record_is_read_as_such(tmp_path) -> None:
    w3 = audit_ready_chain()
    owner = Account.from_key(keccak(text="audit deployment test"))
    fund_accounts(w3, [owner], 10**19)
    client = deploy_coordinator(w3, owner)
    tx = w3.eth.get_block(client.deployment_block)["transactions"][0]
    record = Deployment(chain_id=int(w3.eth.chain_id), coordinator=client.address,
                        deployment_block=client.deployment_block, deployment_tx=Web3.to_hex(tx),
                        deployer=owner.address, constructor=ConstructorParams(),
                        artifact=artifact_hashes(load_artifact("FlareCoordinator")), created_at=datetime.now(UTC))
    path = write_deployment(record, tmp_path / "deployment.json")

    target = load_target(path)

    assert (target.chain_id, target.address, target.block) == (int(w3.eth.chain_id), client.address,
                                                               client.deployment_block)
