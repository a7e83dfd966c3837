"""``node status``: a node's rounds read from its own files, for a stopped node and beside a running one."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from eth_utils import keccak
from safetensors.numpy import save_file
from web3 import HTTPProvider, Web3

from flare_chain.chain import advance_blocks, deploy_coordinator, sort_addresses
from flare_chain.chain.devrpc import DevChainServer
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
    assert "  voted to approve; residual 0.781 of the update held back; adapter pulled: bafyglobal1 -> " \
           "data/adapters/round-1" in text
    assert "32 windows, held-out loss 1.7386 -> 1.6012" in text and "57,568" in text
    assert "not selected" in text
    assert "  no vote;" in text and "holds 0 ETH but needs 0.0001 ETH" in text
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


# ---------------------------------------------------------------- what the chain adds: outcome and acceptance


@dataclass
class Federation:
    """A chain at ``url`` with three rounds, seen from node ``me``: accepted and committed; submitted but
    left out of the committed set; not submitted, proposal still being voted on."""

    url: str
    contract: str
    chain_id: int
    me: str


def _seat_and_propose(coordinator, members, round_id: int, accepted) -> None:
    head = lambda: int(coordinator.w3.eth.block_number)  # noqa: E731
    info = coordinator.round_info(round_id)
    advance_blocks(coordinator.w3, max(0, info.submission_deadline + 1 - head()))  # calls simulate at the head
    for member in members:
        draw = coordinator.draw_seat(member, round_id)
        assert draw.selected
        coordinator.claim_seat(member, round_id, draw.proof)
    advance_blocks(coordinator.w3, max(0, info.claim_deadline + 1 - head()))
    leader = next(m for m in members if m.address == coordinator.proposer_order(round_id)[0])
    coordinator.propose_aggregate(leader, round_id, _cid(f"aggregate {round_id}"),
                                  sort_addresses(a.address for a in accepted))


def _cid(label: str) -> bytes:
    return b"\x01\x55\x12\x20" + keccak(text=label)


@pytest.fixture(scope="module")
def federation() -> Iterator[Federation]:
    with DevChainServer(port=0, accounts=4) as server:
        w3 = Web3(HTTPProvider(server.url))
        owner, *members = server.accounts
        coordinator = deploy_coordinator(w3, owner, min_committee_size=2, min_stake_wei=10**9)
        for member in members:
            coordinator.register_node(member, 10**18)
        coordinator.initialize_global_adapter(owner, _cid("initial"))
        me, others = members[0], members[1:]
        for round_id, submitters, accepted, commit in ((1, members, members, True),
                                                        (2, members, others, True),
                                                        (3, others, others, False)):
            # k = 60 over three equal stakes: Poisson(20) seat weight each, unseated with p = e^-20 (k = 20 left
            # one of the nine draws at weight 0 about once in a hundred runs, failing the fixture)
            assert coordinator.open_round(owner, 8, 10, 8, 6, expected_committee_size=60)[0] == round_id
            for i, node in enumerate(submitters):
                coordinator.submit_update(node, round_id, _cid(f"update {round_id} {i}"), 10 + i,
                                          keccak(text=f"manifest {i}"))
            _seat_and_propose(coordinator, members, round_id, accepted)
            for voter in members if commit else members[:1]:
                if coordinator.round_info(round_id).status.is_final:
                    break
                coordinator.vote(voter, round_id, True)
            assert coordinator.round_info(round_id).status.is_final == commit
        yield Federation(server.url, coordinator.address, int(w3.eth.chain_id), me.address)


def _chain_config(tmp_path: Path, url: str) -> Path:
    path = tmp_path / "node.toml"
    path.write_text(_config(tmp_path).read_text().replace("http://127.0.0.1:9", url), encoding="utf-8")
    return path


def _node_history(state: NodeState, fed: Federation) -> None:
    """What node ``me`` recorded: rounds 1 and 2 submitted and pulled; round 3 missed (a late start)."""
    state.bind(chain_id=fed.chain_id, contract=fed.contract, node=fed.me)
    for round_id in (1, 2):
        state.record_done(round_id, "train", {"sample_count": 10, "val_loss_before": 1.7, "val_loss_after": 1.6})
        state.record_done(round_id, "pin", {"cid": f"bafyupdate{round_id}", "sample_count": 10})
        state.record_done(round_id, "submit", {"gas_used": 57_568, "tx_hash": TX})
        state.record_done(round_id, "pull", {"cid": f"bafyglobal{round_id}", "dir": f"data/adapters/round-{round_id}"})
    state.record_skipped(3, "submit", "submission window closed at block 40")


def test_status_shows_from_the_chain_which_rounds_took_the_nodes_update_for_a_stopped_node(
        tmp_path: Path, federation: Federation, capsys) -> None:
    config = _chain_config(tmp_path, federation.url)
    with NodeState(tmp_path / "data" / "state.sqlite") as state:
        _node_history(state, federation)
    before = (tmp_path / "data" / "state.sqlite").read_bytes()

    assert cli_main(["node", "status", "--config", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chain"].startswith(f"chain {federation.url} at block ")
    rounds = {r["round_id"]: r for r in doc["rounds"]}
    assert {k: (r["outcome"], r["update_accepted"], r["source"]) for k, r in rounds.items()} == {
        1: ("committed", True, "chain"), 2: ("committed", False, "chain"), 3: ("proposed", False, "chain")}
    assert rounds[1]["update"] == "accepted: in the committed proposal's accepted set (3 updates)"
    assert rounds[2]["update"].startswith("left out: submitted, but not in the committed proposal's accepted set")
    assert rounds[3]["update"] == "not submitted; the proposed proposal accepted 2 other updates"

    assert cli_main(["node", "status", "--config", str(config)]) == 0
    text = capsys.readouterr().out
    assert f"outcomes from: chain {federation.url} at block" in text
    assert "round 1: committed (chain); own update: accepted: in the committed proposal's accepted set" in text
    assert "round 2: committed (chain); own update: left out: submitted, but not in the committed" in text
    assert "round 3: proposed (chain); own update: not submitted;" in text
    assert (tmp_path / "data" / "state.sqlite").read_bytes() == before  # read-only: nothing written


def test_status_beside_a_running_node_reads_the_chain_while_the_node_writes(tmp_path: Path, federation: Federation,
                                                                            capsys) -> None:
    config = _chain_config(tmp_path, federation.url)
    state = NodeState(tmp_path / "data" / "state.sqlite")  # held open, as the running daemon holds it
    try:
        _node_history(state, federation)
        assert cli_main(["node", "status", "--config", str(config), "--json", "--rounds", "2"]) == 0
        doc = json.loads(capsys.readouterr().out)
        assert [(r["round_id"], r["update_accepted"]) for r in doc["rounds"]] == [(2, False), (3, False)]
        state.record_done(3, "pull", {"cid": "bafyglobal3", "dir": "x"})  # the daemon goes on writing
    finally:
        state.close()


def test_status_of_another_chain_at_the_url_is_not_taken_for_the_nodes(tmp_path: Path, federation: Federation,
                                                                       capsys) -> None:
    config = _chain_config(tmp_path, federation.url)
    with NodeState(tmp_path / "data" / "state.sqlite") as state:
        state.bind(chain_id=federation.chain_id + 1, contract=federation.contract, node=federation.me)
        state.record_done(1, "submit", {"gas_used": 1})
    assert cli_main(["node", "status", "--config", str(config), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["chain"].startswith(f"chain unreachable: {federation.url} is chain {federation.chain_id}")
    assert doc["rounds"][0]["source"] == "state folder" and doc["rounds"][0]["update_accepted"] is None


def test_status_with_the_chain_unreachable_answers_at_once_from_the_state_folder(tmp_path: Path, capsys) -> None:
    config = _config(tmp_path)  # rpc_url http://127.0.0.1:9: nothing listens there
    with NodeState(tmp_path / "data" / "state.sqlite") as state:
        _history(state)
        state.record_done(1, "pull", {"cid": "bafyglobal1", "dir": "d", "update_accepted": True})
    began = time.monotonic()
    assert cli_main(["node", "status", "--config", str(config), "--json", "--chain-timeout", "1"]) == 0
    assert time.monotonic() - began < 10
    doc = json.loads(capsys.readouterr().out)
    assert doc["chain"].startswith("chain unreachable: the RPC endpoint http://127.0.0.1:9 does not answer")
    r1, r2 = doc["rounds"]
    assert (r1["outcome"], r1["update_accepted"], r1["source"]) == ("committed", True, "state folder")
    assert (r2["outcome"], r2["update_accepted"]) == ("unknown", None)
    assert r2["update"] == "not submitted yet (chain unreachable)"

    assert cli_main(["node", "status", "--config", str(config), "--chain-timeout", "1"]) == 0
    text = capsys.readouterr().out
    assert "outcomes from: chain unreachable: " in text
    assert "round 1: committed (state folder); own update: accepted (in the committed round's accepted set)" in text
    assert "round 2: unknown (state folder); own update: not submitted yet (chain unreachable)" in text

    assert cli_main(["node", "status", "--config", str(config), "--chain-timeout", "0"]) == ConfigError.exit_code
    assert "use --no-chain to skip the chain" in capsys.readouterr().err
    assert cli_main(["node", "status", "--config", str(config), "--json", "--no-chain"]) == 0
    assert json.loads(capsys.readouterr().out)["chain"] == "the state folder only (--no-chain)"


def test_status_with_a_chain_that_accepts_connections_but_never_answers_gives_up_within_its_timeout(
        tmp_path: Path, capsys) -> None:
    with socket.socket() as silent:  # listens, never replies: the hang an unhealthy RPC proxy causes
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        config = tmp_path / "node.toml"
        config.write_text(_config(tmp_path).read_text().replace(
            "http://127.0.0.1:9", f"http://127.0.0.1:{silent.getsockname()[1]}"), encoding="utf-8")
        with NodeState(tmp_path / "data" / "state.sqlite") as state:
            _history(state)
        began = time.monotonic()
        assert cli_main(["node", "status", "--config", str(config), "--json", "--chain-timeout", "0.5"]) == 0
        took = time.monotonic() - began
    assert took < 5, f"node status took {took:.1f} s against a chain that never answers"
    assert json.loads(capsys.readouterr().out)["chain"].startswith("chain unreachable: ")
