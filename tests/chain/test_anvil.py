"""The anvil launcher: find the npm binary, start on a free port, deploy over HTTP, stop.

Skipped only when the npm package @foundry-rs/anvil-linux-amd64 is not installed (`npm ci`).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from flare_chain.chain import advance_blocks
from flare_chain.chain.anvil import AnvilProcess, anvil_available, find_anvil, rpc_answers
from flare_chain.chain.deployment import connect_rpc, deploy, open_deployment, write_deployment
from flare_chain.chain.devrpc import dev_accounts
from flare_chain.errors import ConfigError

needs_anvil = pytest.mark.skipif(not anvil_available(), reason="anvil npm package not installed (run `npm ci`)")


def test_missing_binary_says_how_to_install(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("FLARE_ANVIL", raising=False)
    with pytest.raises(ConfigError, match="npm ci"):
        find_anvil(tmp_path)
    monkeypatch.setenv("FLARE_ANVIL", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="FLARE_ANVIL"):
        find_anvil()


@needs_anvil
def test_start_deploy_and_stop(tmp_path: Path) -> None:
    log = tmp_path / "anvil.log"
    with AnvilProcess(log_path=log) as anvil:
        assert rpc_answers(anvil.url)
        w3 = connect_rpc(anvil.url)
        assert w3.eth.chain_id == 31337
        assert w3.eth.accounts[0] == dev_accounts(1)[0].address  # same dev accounts as `chain serve`
        record, _ = deploy(w3, dev_accounts(1)[0], rpc_url=anvil.url)
        _, client = open_deployment(w3, write_deployment(record, tmp_path / "deployment.json"))
        assert client.owner() == dev_accounts(1)[0].address
        head = w3.eth.block_number
        assert advance_blocks(w3, 3) == head + 3
        url, pid = anvil.url, anvil.pid
    assert pid is not None and not rpc_answers(url)
    assert log.stat().st_size > 0


@needs_anvil
def test_block_time_mines_without_transactions() -> None:
    import time

    with AnvilProcess(block_time_s=1) as anvil:
        w3 = connect_rpc(anvil.url)
        start = w3.eth.block_number
        time.sleep(2.5)
        assert w3.eth.block_number >= start + 2


@needs_anvil
def test_taken_port_fails_with_its_number() -> None:
    from flare_chain.errors import ChainError

    with AnvilProcess() as first, pytest.raises(ChainError, match=str(first.port)):
        AnvilProcess(port=first.port).start(timeout_s=5)
