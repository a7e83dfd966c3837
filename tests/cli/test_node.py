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
