"""``node status``: a node's rounds read from its own files, for a stopped node and beside a running one."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from flare_chain.cli.main import main as cli_main
from flare_chain.errors import ConfigError
from flare_chain.node.state import NodeState
from flare_chain.node.status import read_status, resume_point

TX = "0x" + "ab" * 32
NODE = "0x" + "12" * 20


def _config(tmp_path: Path) -> Path:
    path = tmp_path / "node.toml"
    path.write_text('[node]\nname = "node-7"\ndata_dir = "data"\nkeystore = "k.json"\npassword_env = "UNSET_PW"\n'
                    '[chain]\nrpc_url = "http://127.0.0.1:9"\ncontract = "0x' + "cd" * 20 + '"\n'
                    '[data]\ndomain = "email"\n', encoding="utf-8")
    return path


def _history(state: NodeState) -> None:
    """Round 1 committed with this node voting yes; round 2 stuck at submit with an error."""
    state.bind(chain_id=31337, contract="0x" + "cd" * 20, node=NODE)
    state.record_signed(0, "register", b"raw", TX, 0)
    state.record_done(0, "register", {"block": 3, "gas_used": 100_980, "tx_hash": TX})
    state.record_done(1, "train", {"sample_count": 32, "val_loss_before": 1.7386, "val_loss_after": 1.6012,
                                   "powersgd_rel_error": 0.781})
    state.record_done(1, "pin", {"cid": "bafyupdate1", "manifest_hash": "00" * 32, "sample_count": 32})
    state.record_done(1, "submit", {"block": 9, "gas_used": 57_568, "tx_hash": "0x" + "cc" * 32})
    state.record_skipped(1, "claim", "not selected (VRF output 0x3f… over the threshold)")
    state.record_done(1, "vote", {"approve": True, "reason": "reproduced bafyglobal1", "gas_used": 58_855,
                                  "tx_hash": "0x" + "dd" * 32})
    state.record_done(1, "pull", {"cid": "bafyglobal1", "dir": "data/adapters/round-1"})
    state.record_done(2, "train", {"sample_count": 32, "val_loss_before": 1.6012, "val_loss_after": 1.5500})
    state.record_done(2, "pin", {"cid": "bafyupdate2", "manifest_hash": "00" * 32, "sample_count": 32})
    state.record_error(2, "submit", "submit: 0x12… holds 0 ETH but needs 0.0001 ETH", give_up_after=5)


def _residual(data: Path) -> float:
    folder = data / "compressor"
    folder.mkdir(parents=True)
    tensors = {"a": np.full((4, 4), 0.5, dtype=np.float32), "b": np.ones(9, dtype=np.float32)}
    save_file(tensors, str(folder / "state-round-1.safetensors"))
    (folder / "state.json").write_text(json.dumps({"round": 1, "file": "state-round-1.safetensors",
                                                   "sha256": "0" * 64}))
    return float(np.sqrt(16 * 0.25 + 9))


def test_status_of_a_stopped_node_in_text_and_json(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    with NodeState(tmp_path / "data" / "state.sqlite") as state:
        _history(state)
    norm = _residual(tmp_path / "data")

    assert cli_main(["node", "status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"registration: done, tx {TX}, gas 100,980" in text
    assert "round 1: voted to approve; residual 0.781 of the update held back; adapter pulled: bafyglobal1 -> " \
           "data/adapters/round-1" in text
    assert "32 windows, held-out loss 1.7386 -> 1.6012" in text and "57,568" in text
    assert "not selected" in text
    assert "round 2: no vote;" in text and "holds 0 ETH but needs 0.0001 ETH" in text
    assert "resumes at: round 2, step submit (intent)" in text
    assert f"L2 norm {norm:.6g}" in text

    assert cli_main(["node", "status", "--config", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["node"] == NODE and doc["chain_id"] == "31337"
    r1, r2 = doc["rounds"]
    assert (r1["round_id"], r1["accepted"], r1["residual_rel_error"]) == (1, True, 0.781)
    steps = {s["step"]: s for s in r1["steps"]}
    assert [s["step"] for s in r1["steps"]] == ["train", "pin", "submit", "claim", "vote", "pull"]
    assert steps["submit"]["gas_used"] == 57_568 and steps["submit"]["tx_hash"] == "0x" + "cc" * 32
    assert steps["claim"]["status"] == "skipped"
    sub2 = next(s for s in r2["steps"] if s["step"] == "submit")
    assert sub2["status"] == "intent" and sub2["attempts"] == 1 and "needs 0.0001 ETH" in sub2["last_error"]
    assert doc["residual"]["committed_round"] == 1 and doc["residual"]["l2_norm"] == pytest.approx(norm)


def test_status_beside_a_running_node_sees_its_writes_and_leaves_it_writing(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    state = NodeState(tmp_path / "data" / "state.sqlite")  # held open, as the daemon holds it
    try:
        _history(state)
        assert cli_main(["node", "status", "--config", str(config), "--json"]) == 0
        assert len(json.loads(capsys.readouterr().out)["rounds"]) == 2
        state.record_signed(2, "submit", b"raw2", "0x" + "ee" * 32, 4)  # the daemon goes on after the read
        status = read_status(tmp_path / "data")
        assert status.resume == f"round 2, step submit (stored transaction {'0x' + 'ee' * 32} to re-send or confirm)"
        state.record_done(2, "submit", {"gas_used": 57_568, "tx_hash": "0x" + "ee" * 32})
    finally:
        state.close()
    assert read_status(tmp_path / "data").resume == "round 2, step claim (not started)"


def test_status_before_the_node_ever_ran_says_so_and_creates_nothing(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)
    assert cli_main(["node", "status", "--config", str(config)]) == ConfigError.exit_code
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "has not started with this data_dir" in line
    assert not (tmp_path / "data").exists()


def test_resume_point_names_registration_then_rounds() -> None:
    assert resume_point([]) == "no round recorded yet; registration first"
