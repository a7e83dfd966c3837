"""hardhat-free-devnet/start and stop: chain and IPFS up, contract deployed, nodes funded and registered.

Runs with ``--no-daemons --rounds 0`` (the daemons and rounds are the e2e tests' business), once on the
eth-tester JSON-RPC server and once on anvil (skipped only when its npm package is not installed).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from flare_chain.basemodel import model_cid
from flare_chain.chain.anvil import anvil_available, rpc_answers
from flare_chain.chain.deployment import connect_rpc, open_deployment
from flare_chain.ipfs import KuboClient
from tests.basemodel._folders import write_model_folder

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.e2e


def _devnet(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(REPO / "hardhat-free-devnet" / args[0]), *args[1:]], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


def _pids(run: Path) -> dict[str, int]:
    return {p.stem: json.loads(p.read_text())["pid"] for p in (run / "pids").glob("*.pid")}


@pytest.mark.parametrize("chain", [
    "eth-tester",
    pytest.param("anvil", marks=pytest.mark.skipif(not anvil_available(), reason="anvil npm package not installed")),
])
def test_start_sets_everything_up_and_stop_ends_it(tmp_path: Path, chain: str) -> None:
    run = tmp_path / "run"
    # A small model folder stands in for the reference model (nothing trains here: no daemons, no rounds).
    model = write_model_folder(tmp_path / "model", weight_bytes=100_000)
    started = _devnet("start", "--run-dir", str(run), "--chain", chain, "--chain-port", "0", "--ipfs-port", "0",
                      "--block-time", "0", "--no-daemons", "--rounds", "0", "--model-dir", str(model))
    try:
        assert started.returncode == 0, started.stderr[-2000:]
        state = json.loads((run / "devnet.json").read_text())
        assert state["chain"] == chain and not state["daemons"]
        assert set(_pids(run)) == {"chain", "ipfs"}
        w3 = connect_rpc(state["rpc_url"])
        deployment, coordinator = open_deployment(w3, run / "deployment.json")  # verified against the chain
        assert coordinator.owner() == state["owner"] == deployment.deployer
        nodes = state["nodes"]
        assert sorted(nodes) == ["node-1", "node-2", "node-3", "node-4"]
        for info in nodes.values():
            assert coordinator.is_registered(info["address"])
            assert w3.eth.get_balance(info["address"]) > 10**19
            assert (run / "keys" / f"{Path(info['config']).stem}.json").is_file()
        with KuboClient(state["ipfs_url"], retries=0) as ipfs:
            assert ipfs.version()
            # The owner published the base model before deploying; the deployment names it for the nodes.
            assert deployment.base_model_cid == model_cid(model)
            assert ipfs.pin_ls(deployment.base_model_cid) == {deployment.base_model_cid: "recursive"}
        again = _devnet("start", "--run-dir", str(run), "--chain", chain, "--chain-port", "0", "--ipfs-port", "0",
                        "--no-daemons", "--rounds", "0", timeout=60)
        assert again.returncode != 0 and "stop first" in again.stderr
    finally:
        pids = _pids(run) if (run / "pids").is_dir() else {}
        stopped = _devnet("stop", "--run-dir", str(run), timeout=60)
    assert stopped.returncode == 0 and "stopped 2 process(es)" in stopped.stdout
    assert not any(Path(f"/proc/{pid}").exists() and _zombie_free(pid) for pid in pids.values())
    assert not rpc_answers(state["rpc_url"])
    assert list((run / "pids").glob("*.pid")) == []


def _zombie_free(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False


def test_stop_never_signals_a_pid_that_now_runs_something_else(tmp_path: Path) -> None:
    run = tmp_path / "run"
    (run / "pids").mkdir(parents=True)
    # a pid file whose pid is this test process, recorded with another command line (a reused pid)
    (run / "pids" / "chain.pid").write_text(json.dumps({"pid": os.getpid(), "cmdline": ["anvil", "--port", "1"]}))
    stopped = _devnet("stop", "--run-dir", str(run), timeout=60)
    assert stopped.returncode == 0 and "nothing was running" in stopped.stdout
    assert not (run / "pids" / "chain.pid").exists()


def test_start_without_node_configs_says_so(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, str(REPO / "hardhat-free-devnet" / "devnet.py"), "start", "--run-dir",
                             str(tmp_path / "run"), "--nodes-dir", str(tmp_path)], capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0 and "no node configs" in result.stderr


def test_a_spec_the_node_configs_contradict_stops_the_start_before_anything_runs(tmp_path: Path) -> None:
    spec = tmp_path / "spec.toml"  # the shipped exact-LoRA example with another rank than the node templates
    spec.write_text((REPO / "specs" / "devnet-exact-lora.toml").read_text().replace("rank = 4\n", "rank = 8\n"))
    run = tmp_path / "run"
    result = subprocess.run([sys.executable, str(REPO / "hardhat-free-devnet" / "devnet.py"), "start", "--run-dir",
                             str(run), "--spec", str(spec), "--chain-port", "0", "--ipfs-port", "0"],
                            capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode != 0
    assert "node-1.toml would refuse --spec" in result.stderr and "training.rank = 4" in result.stderr, result.stderr
    assert "lora.rank = 8" in result.stderr
    assert not run.exists()  # no chain, IPFS or daemon was started
