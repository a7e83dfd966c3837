"""``flare-chain rounds drive`` end to end over HTTP: round-0 adapter pinned, a round driven, a summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_utils import keccak
from web3 import HTTPProvider, Web3

from flare_chain.chain import fund_accounts
from flare_chain.chain.deployment import ConstructorParams, deploy, write_deployment
from flare_chain.chain.devrpc import DevChainServer
from flare_chain.cli.main import main as cli_main
from flare_chain.ipfs import ContentStore, KuboClient, cid_from_bytes, serve_in_thread
from flare_chain.node.keys import create_keystore, load_account


@pytest.fixture()
def setup(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("OWNER_PW", "password-123")
    keystore = tmp_path / "owner.json"
    create_keystore(keystore, "password-123", kdf_iterations=2)
    owner = load_account(keystore, "password-123")
    with DevChainServer(port=0, accounts=1) as chain:
        w3 = Web3(HTTPProvider(chain.url))
        nodes = [Account.from_key(keccak(text=f"rounds cli node {i}")) for i in range(2)]
        fund_accounts(w3, [owner, *nodes], 10**20)
        record, client = deploy(w3, owner, ConstructorParams(), rpc_url=chain.url)
        for node in nodes:  # nodes that never claim a seat: the round fails, not the driver
            client.register_node(node, 10**18)
        deployment = write_deployment(record, tmp_path / "deployment.json")
        ipfs = serve_in_thread(ContentStore(tmp_path / "ipfs"))
        try:
            yield client, deployment, keystore, ipfs.url
        finally:
            ipfs.close()


def test_drive_pins_round0_and_prints_the_summary(setup, tiny_model_dir, capsys) -> None:
    client, deployment, keystore, ipfs_url = setup
    code = cli_main(["rounds", "drive", "--deployment", str(deployment), "--keystore", str(keystore),
                     "--password-env", "OWNER_PW", "--ipfs", ipfs_url, "--model-dir", str(tiny_model_dir),
                     "--rounds", "1", "--submission-blocks", "2", "--claim-blocks", "3", "--proposal-blocks", "2",
                     "--voting-blocks", "2", "--poll", "0.01", "--mine"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "0 of 1 rounds committed" in out and "committee too small" in out
    round0 = cid_from_bytes(client.global_adapter_cid())
    with KuboClient(ipfs_url) as ipfs:
        assert round0 in ipfs.pin_ls()  # the round-0 bundle is on the endpoint the nodes read from
        assert b"adapter" in ipfs.cat(f"{round0}/flare_manifest.json")


def test_bad_options_name_the_flag(setup, capsys) -> None:
    _, deployment, keystore, ipfs_url = setup
    base = ["rounds", "drive", "--deployment", str(deployment), "--keystore", str(keystore),
            "--password-env", "OWNER_PW", "--ipfs", ipfs_url]
    assert cli_main([*base, "--rounds", "0"]) == 2
    assert "--rounds" in capsys.readouterr().err
    assert cli_main([*base[:2], "--deployment", str(deployment.parent / "none.json"), *base[4:]]) == 2
    assert "does not exist" in capsys.readouterr().err


@pytest.fixture()
def spec_setup(tmp_path: Path, monkeypatch):
    """A deployment whose coordinator fixes a spec (rank 2, naming a probe corpus) pinned on the served store."""
    from flare_chain.lora.params import LoraTrainParams
    from flare_chain.node.bundles import probe_corpus_cid
    from flare_chain.protocol.spec import FederationSpec, pin_spec

    monkeypatch.setenv("OWNER_PW", "password-123")
    keystore = tmp_path / "owner.json"
    create_keystore(keystore, "password-123", kdf_iterations=2)
    owner = load_account(keystore, "password-123")
    spec = FederationSpec(name="drive", lora=LoraTrainParams(rank=2),
                          probe_corpus_cid=probe_corpus_cid(["the federation's public probe text"]))
    store = ContentStore(tmp_path / "ipfs")
    spec_cid = pin_spec(store, spec)
    with DevChainServer(port=0, accounts=1) as chain:
        w3 = Web3(HTTPProvider(chain.url))
        nodes = [Account.from_key(keccak(text=f"rounds cli node {i}")) for i in range(2)]
        fund_accounts(w3, [owner, *nodes], 10**20)
        record, client = deploy(w3, owner, ConstructorParams(), rpc_url=chain.url, federation_spec_cid=spec_cid)
        for node in nodes:  # nodes that never claim a seat: the round fails, not the driver
            client.register_node(node, 10**18)
        deployment = write_deployment(record, tmp_path / "deployment.json")
        ipfs = serve_in_thread(store)
        try:
            yield client, deployment, keystore, ipfs.url, spec
        finally:
            ipfs.close()


def test_drive_builds_round0_from_the_onchain_spec_and_its_probe_corpus(spec_setup, tiny_model_dir, tmp_path,
                                                                          capsys) -> None:
    client, deployment, keystore, ipfs_url, spec = spec_setup
    base = ["rounds", "drive", "--deployment", str(deployment), "--keystore", str(keystore), "--password-env",
            "OWNER_PW", "--ipfs", ipfs_url, "--model-dir", str(tiny_model_dir), "--rounds", "1",
            "--submission-blocks", "2", "--claim-blocks", "3", "--proposal-blocks", "2", "--voting-blocks", "2",
            "--poll", "0.01", "--mine"]
    assert cli_main([*base, "--no-probe-corpus"]) == 2  # the spec names a corpus: round 0 must name it too
    assert f"names probe corpus {spec.probe_corpus_cid}, but this round-0 adapter would name none" in \
        capsys.readouterr().err
    assert not client.global_adapter_cid()
    corpus = tmp_path / "probe.txt"
    corpus.write_text("the federation's public probe text")
    assert cli_main([*base, "--probe-corpus", str(corpus)]) == 0, capsys.readouterr().err
    round0 = cid_from_bytes(client.global_adapter_cid())
    with KuboClient(ipfs_url) as ipfs:
        manifest = json.loads(ipfs.cat(f"{round0}/flare_manifest.json"))
        config = json.loads(ipfs.cat(f"{round0}/adapter_config.json"))
    assert manifest["probe_cid"] == spec.probe_corpus_cid
    assert config["r"] == spec.lora.rank == 2  # the spec's LoRA rank, not the default the flags would give
