"""Deployment files: deploy over HTTP, write, read back, and each way a file can be wrong."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from flare_chain.chain import fund_accounts
from flare_chain.chain.deployment import (
    ConstructorParams,
    Deployment,
    connect_rpc,
    deploy,
    load_deployment,
    open_address,
    open_deployment,
    verify_binding,
    verify_deployment,
    write_deployment,
)
from flare_chain.chain.devrpc import DevChainServer
from flare_chain.cli.main import main as cli_main
from flare_chain.errors import ChainError, ConfigError, IntegrityError
from flare_chain.node.keys import create_keystore

PARAMS = ConstructorParams(approval_threshold_bps=5000, min_committee_size=3, leader_blocks=3, min_stake_wei=10**16,
                           max_sample_count=5000)


@pytest.fixture(scope="module")
def chain():
    with DevChainServer(port=0, accounts=2) as server:
        yield server, Web3(HTTPProvider(server.url))


@pytest.fixture(scope="module")
def deployed(chain):
    server, w3 = chain
    record, client = deploy(w3, server.accounts[0], PARAMS, rpc_url=server.url)
    return record, client


def test_deploy_records_what_nodes_need(chain, deployed) -> None:
    server, w3 = chain
    record, client = deployed
    assert record.chain_id == server.chain_id
    assert record.coordinator == client.address and record.deployer == server.accounts[0].address
    assert record.constructor == PARAMS
    assert w3.eth.get_transaction_receipt(record.deployment_tx)["contractAddress"] == record.coordinator
    assert client.owner() == server.accounts[0].address
    assert client.min_committee_size() == 3 and client.min_stake() == 10**16


def test_file_round_trip_and_open(tmp_path: Path, chain, deployed) -> None:
    _, w3 = chain
    record, _ = deployed
    path = write_deployment(record, tmp_path / "deployment.json")
    assert load_deployment(path) == record
    loaded, client = open_deployment(w3, path)
    assert loaded == record and client.deployment_block == record.deployment_block
    with pytest.raises(ConfigError, match="already exists"):
        write_deployment(record, path)


def test_the_base_model_cid_travels_in_the_file_and_older_files_have_none(tmp_path: Path, deployed) -> None:
    # Prepare: the record as deployed names no base model; one naming it, written and read back
    record, _ = deployed
    cid = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"
    named = record.model_copy(update={"base_model_cid": cid})
    path = write_deployment(named, tmp_path / "named.json")
    # Assert
    assert load_deployment(path).base_model_cid == cid and record.base_model_cid is None
    raw = record.model_dump(mode="json")
    raw.pop("base_model_cid")  # a file written before the field existed
    (tmp_path / "old.json").write_text(json.dumps(raw))
    assert load_deployment(tmp_path / "old.json").base_model_cid is None


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"does not exist.*flare-chain deploy"):
        load_deployment(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.pop("coordinator"), "coordinator: missing"),
        (lambda d: d.update(chain_id="mainnet"), "chain_id"),
        (lambda d: d.update(coordinator="0x1234"), "coordinator"),
        (lambda d: d["constructor"].update(approval_threshold_bps=0), "constructor.approval_threshold_bps"),
        (lambda d: d.update(format="something-else"), "format"),
        (lambda d: d.update(base_model_cid="not-a-cid"), "base_model_cid: Value error, not a CID"),
    ],
)
def test_malformed_files_name_the_key(tmp_path: Path, deployed, mutate, message: str) -> None:
    raw = deployed[0].model_dump(mode="json")
    mutate(raw)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match=message):
        load_deployment(path)
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_deployment(path)


def test_wrong_chain_id_is_refused(chain, deployed) -> None:
    _, w3 = chain
    other = deployed[0].model_copy(update={"chain_id": 31337})
    with pytest.raises(ConfigError, match=r"chain id 31337.*serves chain"):
        verify_deployment(w3, other)


def test_address_without_code_is_refused(chain, deployed) -> None:
    _, w3 = chain
    empty = deployed[0].model_copy(update={"coordinator": "0x" + "ab" * 20})
    with pytest.raises(IntegrityError, match="no contract there"):
        verify_deployment(w3, empty)


def test_other_code_at_the_address_is_refused(chain, deployed) -> None:
    server, w3 = chain
    from flare_chain.chain.artifacts import load_artifact

    harness = load_artifact("VRFVerifierHarness", Path(__file__).resolve().parents[2] / "contracts/artifacts/test")
    factory = w3.eth.contract(abi=harness.abi, bytecode=harness.bytecode)
    tx = factory.constructor().build_transaction({"from": server.accounts[0].address})
    receipt = w3.eth.wait_for_transaction_receipt(w3.eth.send_transaction(tx))
    wrong = deployed[0].model_copy(update={"coordinator": receipt["contractAddress"]})
    with pytest.raises(IntegrityError, match="not FlareCoordinator's deployed bytecode"):
        verify_deployment(w3, wrong)


def test_constructor_params_must_match_the_chain(chain, deployed) -> None:
    _, w3 = chain
    lie = deployed[0].model_copy(update={"constructor": PARAMS.model_copy(update={"leader_blocks": 9})})
    with pytest.raises(IntegrityError, match="was built with"):
        verify_deployment(w3, lie)


def test_recompiled_artifact_is_refused(chain, deployed) -> None:
    _, w3 = chain
    record: Deployment = deployed[0]
    stale = record.model_copy(update={"artifact": record.artifact.model_copy(update={"abi_sha256": "0" * 64})})
    with pytest.raises(ConfigError, match="local artifact"):
        verify_deployment(w3, stale)


def test_unfunded_deployer_and_unreachable_rpc_are_clear(chain) -> None:
    _, w3 = chain
    broke = Account.from_key(keccak(text="broke deployer"))
    with pytest.raises(ChainError, match=rf"{broke.address} holds 0 ETH \(0 wei\) but needs (at least )?[0-9.]+ ETH .*"
                                         rf"flare-chain chain fund {broke.address}") as err:
        deploy(w3, broke)
    assert err.value.error_name == "InsufficientFunds" and err.value.error_args[1] > 0
    with pytest.raises(ChainError, match="does not answer"):
        connect_rpc("http://127.0.0.1:9", timeout_s=2)


def test_reverting_constructor_is_a_chain_error(chain) -> None:
    server, w3 = chain
    # Constructor arguments the contract itself refuses (threshold above 100%) bypassing the Python checks.
    from flare_chain.chain.artifacts import load_artifact
    from flare_chain.chain.revert import ErrorDecoder
    from flare_chain.chain.transactions import send_transaction

    artifact = load_artifact("FlareCoordinator")
    data = w3.eth.contract(abi=artifact.abi, bytecode=artifact.bytecode).constructor(20_000, 2, 5, 1, 1).data_in_transaction
    with pytest.raises(ChainError, match="deploy"):
        send_transaction(w3, server.accounts[1], to=None, data=data, label="deploy FlareCoordinator",
                         decoder=ErrorDecoder(artifact.abi))


def test_cli_deploy_writes_a_file_that_opens(tmp_path: Path, chain, capsys, monkeypatch) -> None:
    server, w3 = chain
    keystore = tmp_path / "owner.json"
    owner = create_keystore(keystore, "password-123", kdf_iterations=2)
    fund_accounts(w3, [owner], 10**19)
    monkeypatch.setenv("OWNER_PW", "password-123")
    out = tmp_path / "deployment.json"
    argv = ["deploy", "--rpc", server.url, "--keystore", str(keystore), "--password-env", "OWNER_PW",
            "--min-committee", "2", "--out", str(out)]
    assert cli_main(argv) == 0
    record, client = open_deployment(w3, out)
    assert record.deployer == owner and client.owner() == owner
    assert record.coordinator in capsys.readouterr().out
    assert cli_main(argv) == ConfigError.exit_code  # refuses to overwrite before spending gas
    assert "already exists" in capsys.readouterr().err
    assert cli_main([*argv[:-2], "--threshold-bps", "0", "--out", str(tmp_path / "x.json")]) == 2
    assert "--threshold-bps" in capsys.readouterr().err
    assert cli_main([*argv[:-2], "--base-model-cid", "Qmnope", "--out", str(tmp_path / "y.json")]) == 2
    assert "--base-model-cid 'Qmnope' is not a CID" in capsys.readouterr().err and not (tmp_path / "y.json").exists()
    cid = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"
    assert cli_main([*argv[:-2], "--base-model-cid", cid, "--out", str(tmp_path / "z.json")]) == 0
    assert load_deployment(tmp_path / "z.json").base_model_cid == cid


def test_scripts_deploy_uses_the_same_options(tmp_path: Path, chain) -> None:
    import subprocess
    import sys

    server, _ = chain
    root = Path(__file__).resolve().parents[2]
    result = subprocess.run([sys.executable, str(root / "scripts/deploy.py"), "--rpc", server.url, "--keystore",
                             str(tmp_path / "missing.json"), "--password-env", "X", "--out", str(tmp_path / "d.json")],
                            capture_output=True, text=True, env={"X": "password-123", "PATH": "/usr/bin"}, timeout=120)
    assert result.returncode == ConfigError.exit_code
    assert "keystore" in result.stderr and "does not exist" in result.stderr


# ---------------------------------------------------------------- twin chains: same id, same address


def _twin(funding_wei: int):
    """An in-process chain on which the same owner deploys at nonce 0: the same chain id and address every time."""
    from flare_chain.chain import in_process_chain

    w3 = in_process_chain()
    owner = Account.from_key(keccak(text="twin chain owner"))
    fund_accounts(w3, [owner], funding_wei)
    return w3, deploy(w3, owner, PARAMS)[0]


def test_a_twin_chain_with_the_same_id_and_address_is_refused_naming_the_block_hash() -> None:
    w3_a, record_a = _twin(10**19)
    w3_b, record_b = _twin(2 * 10**19)  # another history: the funding block differs, so every later hash does
    assert (record_a.chain_id, record_a.coordinator, record_a.deployment_block) == (
        record_b.chain_id, record_b.coordinator, record_b.deployment_block)
    assert record_a.deployment_block_hash != record_b.deployment_block_hash

    verify_deployment(w3_a, record_a)
    with pytest.raises(IntegrityError, match=r"deployment block \d+ has hash 0x[0-9a-f]+ on this chain.*twin"):
        verify_deployment(w3_b, record_a)


def test_a_fresh_chain_with_the_same_id_lacks_the_deployment_transaction() -> None:
    from flare_chain.chain import in_process_chain

    _, record = _twin(10**19)
    with pytest.raises(IntegrityError, match=r"deployment transaction 0x[0-9a-f]+ is not on the chain"):
        verify_binding(in_process_chain(), record.coordinator, record.deployment_tx, record.deployment_block)


def test_a_file_from_before_block_hashes_were_recorded_still_opens(tmp_path: Path, chain, deployed) -> None:
    _, w3 = chain
    raw = deployed[0].model_dump(mode="json")
    del raw["deployment_block_hash"], raw["code_hash"]
    path = tmp_path / "old.json"
    path.write_text(json.dumps(raw))
    record, _ = open_deployment(w3, path)
    assert record.deployment_block_hash is None
    with pytest.raises(IntegrityError, match="is in block"):
        verify_deployment(w3, record.model_copy(update={"deployment_block": record.deployment_block + 1}))


def test_a_bare_address_without_code_is_refused_before_any_call(chain) -> None:
    _, w3 = chain
    with pytest.raises(IntegrityError, match=r"no contract there.*chain\.deployment"):
        open_address(w3, "0x" + "cd" * 20, source="node config chain.contract")


def test_cli_deploy_with_a_spec_pins_it_and_fixes_its_cid(tmp_path: Path, chain, capsys, monkeypatch) -> None:
    from flare_chain.ipfs import ContentStore, cid_to_bytes
    from flare_chain.protocol.spec import FederationSpec, fetch_spec

    server, w3 = chain
    keystore = tmp_path / "owner.json"
    owner = create_keystore(keystore, "password-123", kdf_iterations=2)
    fund_accounts(w3, [owner], 10**19)
    monkeypatch.setenv("OWNER_PW", "password-123")
    spec_file = tmp_path / "spec.toml"
    spec_file.write_text('name = "cli"\n[aggregator]\nname = "median"\n[committee]\nmax_sample_count = 777\n')
    repo, out = tmp_path / "repo", tmp_path / "deployment.json"
    argv = ["deploy", "--rpc", server.url, "--keystore", str(keystore), "--password-env", "OWNER_PW",
            "--spec", str(spec_file), "--spec-repo", str(repo), "--out", str(out)]
    assert cli_main([*argv, "--max-sample-count", "5"]) == ConfigError.exit_code  # contradicts the spec, no gas spent
    assert "contradicts the spec" in capsys.readouterr().err and not out.exists()
    assert cli_main(argv) == 0
    record, client = open_deployment(w3, out)
    spec = fetch_spec(ContentStore(repo), record.federation_spec_cid)
    assert spec.name == "cli" and spec.aggregator.name == "median"
    assert client.federation_spec_cid() == cid_to_bytes(record.federation_spec_cid)
    assert client.max_sample_count() == 777 == record.constructor.max_sample_count
    assert FederationSpec.from_toml(spec_file) == spec

    base = "QmSAhs94AVqqmp6ZXz45Q4kprE9tTuc87ehGxBgUkKP9qc"  # the published base model is recorded in the spec
    assert cli_main([*argv, "--overwrite", "--base-model-cid", base]) == 0
    record, _ = open_deployment(w3, out)
    assert fetch_spec(ContentStore(repo), record.federation_spec_cid).base_model.cid == base == record.base_model_cid
    spec_file.write_text(f'name = "cli"\n[base_model]\ncid = "{base}"\n')  # a spec for another base model
    other = "bafybeigdyrzt5sfp7udm7hu76uh7y26nf3efuylqabf3oclgtqy55fbzdi"
    assert cli_main([*argv, "--overwrite", "--base-model-cid", other]) == ConfigError.exit_code
    assert f"base_model.cid = '{base}', but this deployment publishes {other}" in capsys.readouterr().err
