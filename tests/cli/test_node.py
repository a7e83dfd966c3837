"""``flare-chain node run``: what stops a node before it writes any state."""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.chain.devrpc import DevChainServer
from flare_chain.cli.main import main as cli_main
from flare_chain.cli.node import build_daemon
from flare_chain.errors import IntegrityError
from flare_chain.node.config import load_node_config
from flare_chain.node.keys import create_keystore

NO_CODE = "0x" + "ab" * 20


def _config(tmp_path: Path, rpc_url: str, model_dir: Path) -> Path:
    create_keystore(tmp_path / "node.json", "password-123", kdf_iterations=2)
    path = tmp_path / "node.toml"
    path.write_text(f"""
[node]
name = "node-1"
data_dir = "data"
keystore = "node.json"
password_env = "NODE_PW"

[chain]
rpc_url = "{rpc_url}"
contract = "{NO_CODE}"

[model]
model_dir = "{model_dir}"

[data]
domain = "email"
""", encoding="utf-8")
    return path


def test_a_contract_address_without_code_stops_the_node_before_it_writes_state(tmp_path, tiny_model_dir,
                                                                              monkeypatch, capsys) -> None:
    monkeypatch.setenv("NODE_PW", "password-123")
    with DevChainServer(port=0, accounts=1) as chain:
        path = _config(tmp_path, chain.url, tiny_model_dir)

        with pytest.raises(IntegrityError, match=rf"chain\.contract names {NO_CODE}.*no contract there"):
            build_daemon(load_node_config(path), show_progress=False)
        assert not (tmp_path / "data" / "state.sqlite").exists()

        assert cli_main(["node", "run", "--config", str(path), "--max-rounds", "1"]) == IntegrityError.exit_code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "no contract there" in line and "chain.deployment" in line
    assert not (tmp_path / "data" / "state.sqlite").exists()


def test_a_node_whose_folder_is_not_the_deployments_base_model_fetches_it_by_cid(tmp_path, tiny_model_dir,
                                                                                 monkeypatch) -> None:
    import shutil

    from web3 import HTTPProvider, Web3

    from flare_chain.basemodel import model_cid, publish_model
    from flare_chain.chain.deployment import deploy, write_deployment
    from flare_chain.ipfs import ContentStore, serve_in_thread

    # Prepare: the owner pins its model to an IPFS endpoint and deploys naming the CID; the node's own
    # folder is another build (here: the same weights with another config, which makes it another model)
    monkeypatch.setenv("NODE_PW", "password-123")
    mine = tmp_path / "my-build"
    shutil.copytree(tiny_model_dir, mine)
    (mine / "generation_config.json").write_text("{}", encoding="utf-8")
    served = ContentStore(tmp_path / "owner-ipfs", durable=False)
    cid = publish_model(tiny_model_dir, served, show_progress=False)
    with DevChainServer(port=0, accounts=1) as chain, serve_in_thread(served) as ipfs:
        record, _ = deploy(Web3(HTTPProvider(chain.url)), chain.accounts[0], rpc_url=chain.url, base_model_cid=cid)
        write_deployment(record, tmp_path / "deployment.json")
        text = _config(tmp_path, chain.url, mine).read_text(encoding="utf-8")
        text = text.replace(f'contract = "{NO_CODE}"', 'deployment = "deployment.json"')
        text = text.replace("[model]", f'[ipfs]\nendpoint = "{ipfs.url}"\nretries = 0\n\n[model]')
        (tmp_path / "node.toml").write_text(text, encoding="utf-8")
        # Execute
        daemon = build_daemon(load_node_config(tmp_path / "node.toml"), show_progress=False)
    try:
        # Assert: the node loads the published model from its cache, and its manifests will name that CID
        assert daemon.model_dir == tmp_path / "data" / "models" / cid
        assert model_cid(daemon.model_dir) == cid != model_cid(mine)
        assert daemon.participant.base_manifest_fields()["base_model_cid"] == cid
    finally:
        daemon.state.close()
