"""``flare-chain node run``: what stops a node before it writes any state."""

from __future__ import annotations

import concurrent.futures
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from flare_chain.chain.anvil import REPO_ROOT, free_port
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


class _InstantStop(threading.Event):
    """A stop event whose waits return at once and are added up: minutes of backoff in no time."""

    def __init__(self) -> None:
        super().__init__()
        self.waited: list[float] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.waited.append(float(timeout or 0))
        return self.is_set()


def test_a_node_started_before_its_chain_keeps_waiting_with_backoff_until_it_answers(caplog) -> None:
    from flare_chain.cli.node import connect_with_retry
    from flare_chain.errors import ChainError

    failures = 60
    calls: list[str] = []

    def connect(url: str) -> str:
        calls.append(url)
        if len(calls) <= failures:
            raise ChainError(f"the RPC endpoint {url} does not answer (ConnectionError)")
        return "web3"

    stop = _InstantStop()
    with caplog.at_level("WARNING", logger="flare_chain"):
        assert connect_with_retry("http://127.0.0.1:9", stop, connect=connect) == "web3"
    assert len(calls) == failures + 1 and sum(stop.waited) > 20 * 60  # far past the old 56 s give-up
    assert max(stop.waited) == 30.0 and stop.waited[:3] == [0.5, 1.0, 2.0]
    assert len([r for r in caplog.records if "waiting for it (attempt" in r.getMessage()]) == failures


def test_sigterm_while_waiting_for_the_chain_exits_0_with_a_line_in_the_log_file(tmp_path: Path) -> None:
    create_keystore(tmp_path / "node.json", "password-123", kdf_iterations=2)
    config = tmp_path / "node.toml"
    port = free_port()
    config.write_text(f'[node]\nname = "node-9"\ndata_dir = "data"\nkeystore = "node.json"\n'
                      f'password_env = "NODE_PW"\n[chain]\nrpc_url = "http://127.0.0.1:{port}"\n'
                      f'contract = "{NO_CODE}"\n[data]\ndomain = "email"\n', encoding="utf-8")
    log_file = tmp_path / "logs" / "node-9.log"
    env = {**os.environ, "NODE_PW": "password-123", "PYTHONPATH": str(REPO_ROOT)}
    process = subprocess.Popen([sys.executable, "-m", "flare_chain.cli.main", "node", "run", "--config", str(config),
                                "--log-file", str(log_file)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180  # generous: the CLI imports slowly on a loaded machine
        while time.monotonic() < deadline and process.poll() is None:
            text = log_file.read_text() if log_file.exists() else ""
            if text.count("waiting for it (attempt") >= 2:
                break
            time.sleep(0.2)
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        process.send_signal(signal.SIGTERM)
        _out, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, err
    text = log_file.read_text()
    assert "node-9: SIGTERM received" in text and "stopped cleanly before it reached its chain" in text
    assert "node-9: SIGTERM received" in err  # stderr keeps every line too
    assert not (tmp_path / "data" / "state.sqlite").exists()


def _unreachable_chain_config(tmp_path: Path) -> Path:
    create_keystore(tmp_path / "node.json", "password-123", kdf_iterations=2)
    config = tmp_path / "node.toml"
    config.write_text(f'[node]\nname = "node-9"\ndata_dir = "data"\nkeystore = "node.json"\n'
                      f'password_env = "NODE_PW"\n[chain]\nrpc_url = "http://127.0.0.1:{free_port()}"\n'
                      f'contract = "{NO_CODE}"\n[data]\ndomain = "email"\n', encoding="utf-8")
    return config


def _catches_sigterm(pid: int) -> bool:
    """Whether process ``pid`` has a handler installed for SIGTERM (Linux: the SigCgt mask in /proc)."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    mask = next(int(line.split()[1], 16) for line in text.splitlines() if line.startswith("SigCgt:"))
    return bool(mask >> (signal.SIGTERM - 1) & 1)


def _sigterm_after(config: Path, delay_s: float, env: dict[str, str], *,
                   signum: signal.Signals = signal.SIGTERM) -> tuple[int, str, set[str]]:
    """Start ``node run`` as a service manager would, SIGTERM it ``delay_s`` after its handler is in place.

    Returns (exit status, stderr, the site-packages libraries (torch, pydantic, web3's) already loaded when
    the handler appeared: there should be none, the handler comes before anything heavy). The delay
    counts from the handler, not from the start: before it, the interpreter is starting (the residual
    window the README states), which takes 30 ms on an idle machine and several hundred under load.
    """
    process = subprocess.Popen([sys.executable, "-m", "flare_chain.cli.main", "node", "run", "--config", str(config)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not _catches_sigterm(process.pid) and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        loaded = {line.split()[-1] for line in Path(f"/proc/{process.pid}/maps").read_text().splitlines()
                  if "site-packages" in line}
        time.sleep(delay_s)
        process.send_signal(signum)
        _out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    return process.returncode, err, loaded


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="reads signal masks from Linux's /proc")
def test_sigterm_at_any_point_of_start_up_exits_0_with_a_line(tmp_path: Path) -> None:
    """From the CLI's first statement on, SIGTERM is recorded and honoured, also mid-import of torch and web3."""
    config = _unreachable_chain_config(tmp_path)
    env = {**os.environ, "NODE_PW": "password-123", "PYTHONPATH": str(REPO_ROOT)}

    results = {0.0: _sigterm_after(config, 0.0, env)}  # alone: the moment the handler appears
    later = (0.05, 0.2, 0.5, 1.0, 2.0)
    with concurrent.futures.ThreadPoolExecutor(len(later)) as pool:
        results.update(zip(later, pool.map(lambda d: _sigterm_after(config, d, env), later), strict=True))

    for delay, (code, err, loaded) in results.items():
        assert not loaded, f"the SIGTERM handler came after these libraries were loaded: {sorted(loaded)[:5]}"
        assert code == 0, f"SIGTERM {delay:.2f} s after the handler: exit {code}, stderr: {err[-2000:]}"
        assert ("node-9: stopped before start (SIGTERM)" in err
                or "stopped cleanly before it reached its chain" in err), f"after {delay:.2f} s: {err[-2000:]}"
    assert "stopped before start (SIGTERM)" in results[0.0][1]  # it came while Python was still importing
    code, err, _loaded = _sigterm_after(config, 0.0, env, signum=signal.SIGINT)  # Ctrl-C: the same, not a traceback
    assert code == 0 and "node-9: stopped before start (SIGINT)" in err and "Traceback" not in err, err[-2000:]
    assert not (tmp_path / "data" / "state.sqlite").exists()


def test_a_command_that_does_not_keep_the_stop_request_gets_the_default_signal_action_back() -> None:
    """Arming early changes nothing for other commands: a SIGTERM that came meanwhile still ends them as before."""
    code = ("import os, signal, sys\n"
            "import flare_chain.cli.parser as parser\n"
            "from flare_chain.cli.main import main\n"
            "real = parser.build_parser\n"
            "def build():\n"
            "    os.kill(os.getpid(), signal.SIGTERM)  # arrives while armed, before the command runs\n"
            "    return real()\n"
            "parser.build_parser = build\n"
            "main(['keys', 'address', '/nonexistent.json'])\n"
            "sys.exit(0)\n")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == -signal.SIGTERM, done.stderr


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
